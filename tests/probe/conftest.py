"""Probe fixtures: a fresh all-in-one cluster of real processes per test.

``cluster`` is a ``tests.aio.AllInOne`` of 4 nodes (2 devices each), 3 replicas,
started with ``haneul up --no-agents``: no background daemon acts behind a test's
back, so each heal happens when the test runs ``cluster.agent_once(...)``. ``conn``
is a python-swiftclient Connection for ``test:tester`` that never retries (a failure
the proxy lets through must show). ``haneul up`` takes about two seconds, so each test
gets a cluster of its own and breaks it as it likes.
"""

import pytest
from swiftclient import client as swift

from tests.aio import AllInOne


@pytest.fixture
def cluster(tmp_path):
    aio = AllInOne(tmp_path / "aio", agents=False)
    aio.up()
    try:
        yield aio
    finally:
        aio.down()


@pytest.fixture
def conn(cluster):
    return swift.Connection(
        authurl=cluster.auth_url,
        user=cluster.info["user"],
        key=cluster.info["key"],
        retries=0,
        timeout=30,
    )


@pytest.fixture
def account(conn):
    """The account name of ``conn``'s user (``AUTH_test``)."""
    url, _token = conn.get_auth()
    return url.rstrip("/").rsplit("/", 1)[1]
