"""Container → account reporting over real HTTP on loopback, and the updater's retries."""

import json
import os
import socket
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from webob import Request

from account_server.server import AccountApp
from common.db import POOL
from common.hashing import HashSecrets
from container_server.broker import ContainerBroker
from container_server.server import ContainerApp
from container_server.updater import ContainerUpdater

SECRETS = HashSecrets("pre", "suf")


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *_args):
        pass


class Gate:
    """Wraps the account app; while ``fail`` is set it answers 503, as a sick node would."""

    def __init__(self, app):
        self.app = app
        self.fail = False
        self.requests = []

    def __call__(self, environ, start_response):
        self.requests.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
        if self.fail:
            start_response("503 Service Unavailable", [("Content-Length", "0")])
            return [b""]
        return self.app(environ, start_response)


class AccountNode:
    def __init__(self, root):
        os.makedirs(os.path.join(root, "sda"))
        self.app = AccountApp({"devices": root}, hash_secrets=SECRETS)
        self.gate = Gate(self.app)
        self.server = make_server(
            "127.0.0.1", 0, self.gate, server_class=WSGIServer, handler_class=QuietHandler
        )
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def headers(self):
        return {
            "X-Account-Host": f"127.0.0.1:{self.port}",
            "X-Account-Device": "sda",
            "X-Account-Partition": "3",
        }

    def node(self):
        return {"ip": "127.0.0.1", "port": self.port, "device": "sda"}

    def call(self, method, path, headers=None):
        return Request.blank(path, method=method, headers=headers or {}).get_response(self.app)

    def listing(self, account="a"):
        resp = self.call("GET", f"/sda/3/{account}?format=json")
        return {e["name"]: (e["count"], e["bytes"]) for e in json.loads(resp.body or b"[]")}

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def account(tmp_path):
    node = AccountNode(str(tmp_path / "account-node"))
    yield node
    node.stop()


@pytest.fixture
def devices(tmp_path):
    root = tmp_path / "container-node"
    (root / "sda").mkdir(parents=True)
    return str(root)


@pytest.fixture
def app(devices):
    return ContainerApp(
        {"devices": devices, "conn_timeout": "1", "node_timeout": "2"}, hash_secrets=SECRETS
    )


def call(app, method, path, headers=None):
    return Request.blank(path, method=method, headers=headers or {}).get_response(app)


def put_object(app, name, size, ts="2"):
    headers = {"X-Timestamp": ts, "X-Size": str(size), "X-Content-Type": "t", "X-Etag": "e"}
    assert call(app, "PUT", f"/sda/1/a/c/{name}", headers).status_int == 201


def container_info(app):
    broker = app.get_broker("sda", "1", "a", "c")
    with broker:
        return broker.get_info()


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_container_put_is_reported_over_http(app, account):
    assert account.call("PUT", "/sda/3/a", {"X-Timestamp": "1"}).status_int == 201
    resp = call(app, "PUT", "/sda/1/a/c", {"X-Timestamp": "1", **account.headers})
    assert resp.status_int == 201
    assert ("PUT", "/sda/3/a/c") in account.gate.requests
    assert account.listing() == {"c": (0, 0)}
    info = container_info(app)
    assert info["reported_put_timestamp"] == info["put_timestamp"]
    assert not ContainerBroker.needs_report(info)
    assert ContainerBroker.account_target(info) == {"partition": "3", "nodes": [account.node()]}


def test_missing_account_makes_the_container_put_404(app, account):
    resp = call(app, "PUT", "/sda/1/a/c", {"X-Timestamp": "1", **account.headers})
    assert resp.status_int == 404


def test_mismatched_account_headers_are_400(app, account):
    headers = {**account.headers, "X-Account-Device": "sda,sdb"}
    assert call(app, "PUT", "/sda/1/a/c", {"X-Timestamp": "1", **headers}).status_int == 400


def test_failed_report_stays_pending_until_the_updater_delivers_it(app, devices, account):
    account.call("PUT", "/sda/3/a", {"X-Timestamp": "1"})
    account.gate.fail = True
    resp = call(app, "PUT", "/sda/1/a/c", {"X-Timestamp": "1", **account.headers})
    assert resp.status_int == 201  # the container is fine; only the report is late
    assert ContainerBroker.needs_report(container_info(app))
    assert account.listing() == {}
    put_object(app, "o1", 10)
    put_object(app, "o2", 5)

    updater = ContainerUpdater({"devices": devices})
    stats = updater.run_once()
    assert stats["checked"] == 1 and stats["failed"] == 1  # still down: stays pending
    assert ContainerBroker.needs_report(container_info(app))

    account.gate.fail = False
    stats = updater.run_once()
    assert stats["reported"] == 1
    assert account.listing() == {"c": (2, 15)}
    assert not ContainerBroker.needs_report(container_info(app))
    sent = len(account.gate.requests)
    assert updater.run_once()["clean"] == 1
    assert len(account.gate.requests) == sent  # nothing new to say, nothing sent


def test_object_row_changes_reach_the_account_through_the_updater(app, devices, account):
    account.call("PUT", "/sda/3/a", {"X-Timestamp": "1"})
    call(app, "PUT", "/sda/1/a/c", {"X-Timestamp": "1", **account.headers})
    put_object(app, "o", 7)
    assert account.listing() == {"c": (0, 0)}  # object rows are not reported one by one
    ContainerUpdater({"devices": devices}).run_once(devices=["sda"])
    assert account.listing() == {"c": (1, 7)}
    resp = account.call("HEAD", "/sda/3/a")
    assert resp.headers["X-Account-Object-Count"] == "1"
    assert resp.headers["X-Account-Bytes-Used"] == "7"


def test_unreachable_account_then_ring_delivery(app, devices, account):
    account.call("PUT", "/sda/3/a", {"X-Timestamp": "1"})
    dead = {
        "X-Account-Host": f"127.0.0.1:{closed_port()}",
        "X-Account-Device": "sda",
        "X-Account-Partition": "3",
    }
    assert call(app, "PUT", "/sda/1/a/c", {"X-Timestamp": "1", **dead}).status_int == 201
    assert ContainerBroker.needs_report(container_info(app))
    assert ContainerUpdater({"devices": devices}).run_once()["failed"] == 1

    class FakeRing:
        def get_nodes(self, acct):
            assert acct == "a"
            return 3, [account.node()]

    stats = ContainerUpdater({"devices": devices}, account_ring=FakeRing()).run_once()
    assert stats["reported"] == 1
    assert account.listing() == {"c": (0, 0)}


def test_container_delete_is_reported_and_drops_out(app, account):
    account.call("PUT", "/sda/3/a", {"X-Timestamp": "1"})
    call(app, "PUT", "/sda/1/a/c", {"X-Timestamp": "1", **account.headers})
    call(app, "PUT", "/sda/1/a/c2", {"X-Timestamp": "1", **account.headers})
    assert set(account.listing()) == {"c", "c2"}
    resp = call(app, "DELETE", "/sda/1/a/c", {"X-Timestamp": "2", **account.headers})
    assert resp.status_int == 204
    assert set(account.listing()) == {"c2"}
    assert account.call("HEAD", "/sda/3/a").headers["X-Account-Container-Count"] == "1"


def test_updater_skips_corrupt_databases_and_unmounted_devices(app, devices, account):
    account.call("PUT", "/sda/3/a", {"X-Timestamp": "1"})
    account.gate.fail = True
    call(app, "PUT", "/sda/1/a/c", {"X-Timestamp": "1", **account.headers})
    call(app, "PUT", "/sda/1/a/c2", {"X-Timestamp": "1", **account.headers})
    account.gate.fail = False
    POOL.clear()
    bad = app.get_broker("sda", "1", "a", "c").db_file
    with open(bad, "r+b") as fp:
        fp.write(b"x" * 4096)
    stats = ContainerUpdater({"devices": devices}).run_once()
    assert (stats["errors"], stats["reported"]) == (1, 1)
    assert set(account.listing()) == {"c2"}
    stats = ContainerUpdater({"devices": devices, "mount_check": "yes"}).run_once()
    assert stats["checked"] == 0


def test_container_without_a_known_account_is_left_alone(app, devices):
    call(app, "PUT", "/sda/1/a/c", {"X-Timestamp": "1"})  # no X-Account-* headers
    assert ContainerUpdater({"devices": devices}).run_once()["no_target"] == 1
