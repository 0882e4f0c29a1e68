"""Shared fixtures for functional tests: real storage nodes on loopback.

- ``storage_node``: one node (two devices, one worker) for the whole module; tests use
  their own names, so they don't see each other's data.
- ``make_storage_node(**kwargs)``: a fresh node per call (``workers``, ``single_port``,
  ``extra`` config sections...), stopped after the test.

Both yield ``tests.functional.nodes.StorageNode`` objects: ``.host``, ``.ports``
(``{"object": ..., "container": ..., "account": ...}``), ``.devices``,
``.devices_root``, ``.request(kind, method, path, ...)``, ``.stop()``, ``.kill()``.
"""

import pytest

from tests.functional.nodes import StorageNode


@pytest.fixture(scope="module")
def storage_node(tmp_path_factory):
    node = StorageNode(tmp_path_factory.mktemp("node")).start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def make_storage_node(tmp_path):
    nodes = []

    def make(start=True, **kwargs):
        node = StorageNode(tmp_path / f"node{len(nodes)}", **kwargs)
        nodes.append(node)
        return node.start() if start else node

    yield make
    for node in nodes:
        node.stop()
