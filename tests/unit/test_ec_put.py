"""The proxy's erasure-coded PUT against fake nodes: each archive's CRC32 is taken as it
is sent, a node that stored other bytes is not counted (nor committed), and the commit
carries the whole object's MD5 and each archive's CRC32."""

import hashlib
import os
from types import SimpleNamespace

import pytest

from common.crc32 import CRC32
from common.http import HTTPError
from common.policies import policy_from_section
from common.timestamp import Timestamp
from proxy.controllers.ec_put import ECPut, chunk_segments
from proxy.controllers.streaming import Putter

pytest.importorskip("pyeclib.ec_iface")

SEGMENT = 4096
POLICY = policy_from_section(
    1,
    {
        "name": "ec42",
        "type": "erasure_coding",
        "ec_type": "isa_l_rs_vand",
        "ec_num_data_fragments": "4",
        "ec_num_parity_fragments": "2",
        "ec_object_segment_size": str(SEGMENT),
    },
)


class FakeNodeConn:
    """One node's PUT: keeps what it is sent and answers the checksum of what it
    "stored" (``damage`` flips a byte of it first, as a bad NIC or disk would)."""

    def __init__(self, damage=False):
        self.received = bytearray()
        self.damage = damage

    def send(self, chunk):
        self.received += chunk

    def finish(self):
        pass

    def getresponse(self):
        stored = bytearray(self.received)
        if self.damage and stored:
            stored[len(stored) // 2] ^= 0x01
        return SimpleNamespace(status=201, msg={"ETag": f'"{CRC32(stored).hexdigest()}"'})

    def read(self, _size):
        return b""

    def close(self):
        pass


class FakeController:
    """The parts of an ECObjectController that ECPut uses, with nodes that never fail."""

    trans_id = "tx-test"

    def __init__(self, damaged=()):
        self.conns = {slot: FakeNodeConn(slot in damaged) for slot in range(6)}
        self.commits = {}

    def _path(self, part):
        return f"/{part}/a/c/o"

    def _connect(self, ring, part, primaries, slot_headers, expect):
        putters = [Putter(slot, node, self.conns[slot]) for slot, node in enumerate(primaries)]
        return putters, []

    def backend_headers(self, timestamp=None, **extra):
        return {"X-Timestamp": Timestamp(timestamp).internal, **extra}

    def call_node(self, node, method, path, headers):
        self.commits[int(headers["X-Backend-Ec-Frag-Index"])] = headers
        return SimpleNamespace(status=201, node=node)

    def note_node_result(self, node, status=None, error=None):
        pass

    def _putter_failed(self, putter):
        pass


class FakeRing:
    def get_part_nodes(self, part):
        return [
            {"ip": "127.0.0.1", "port": 6000 + i, "device": f"d{i}", "index": i} for i in range(6)
        ]


def put(controller, body):
    writer = ECPut(controller, POLICY, FakeRing(), 0, Timestamp(1000))
    segments = chunk_segments([body], SEGMENT)
    return writer.run({}, segments, len(body), None, {i: {} for i in range(6)}, None)


def test_each_archive_is_committed_with_the_crc32_of_what_was_sent():
    body = os.urandom(3 * SEGMENT + 5)
    controller = FakeController()
    resp = put(controller, body)
    assert resp.status_int == 201
    assert resp.headers["ETag"] == hashlib.md5(body).hexdigest()
    assert sorted(controller.commits) == list(range(6))
    for slot, headers in controller.commits.items():
        sent = bytes(controller.conns[slot].received)
        assert headers["X-Object-Sysmeta-Ec-Frag-Archive-Etag"] == CRC32(sent).hexdigest()
        assert headers["X-Object-Sysmeta-Ec-Etag"] == hashlib.md5(body).hexdigest()
        assert headers["X-Object-Sysmeta-Ec-Content-Length"] == str(len(body))


def test_a_node_that_stored_other_bytes_is_not_committed():
    controller = FakeController(damaged={2})
    assert put(controller, os.urandom(2 * SEGMENT)).status_int == 201
    assert sorted(controller.commits) == [0, 1, 3, 4, 5]  # still k + 1


def test_too_few_intact_archives_is_503_and_nothing_is_committed():
    controller = FakeController(damaged={0, 4})
    with pytest.raises(HTTPError) as caught:
        put(controller, os.urandom(SEGMENT))
    assert caught.value.status == 503
    assert controller.commits == {}
