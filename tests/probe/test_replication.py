"""Issue 6: the replicators heal a wiped device and bring handoffs home, byte for byte.

Each test breaks a real cluster, runs one ``haneul agent --once`` pass of the
replicators on every node (again, a bounded number of times, only where a second pass
is inherent: a handoff pushes in one pass and is removed once every primary has it),
and then checks the disks and what a client reads.
"""

import json
import os
import random

REPLICATORS = ("object-replicator", "container-replicator", "account-replicator")
MAX_PASSES = 3


def heal(cluster, healed, daemons=REPLICATORS):
    """Run replication passes until ``healed()`` is true (at most MAX_PASSES); passes run."""
    for passes in range(1, MAX_PASSES + 1):
        cluster.agent_once(*daemons)
        if healed():
            return passes
    return MAX_PASSES


def node_for(nodes, device):
    return next(node for node in nodes if node["device"] == device)


def devices_of(part_and_nodes):
    """The device names of a ``(partition, nodes)`` ring answer."""
    return {node["device"] for node in part_and_nodes[1]}


def listing(cluster, node, part, account, container=None):
    """A full JSON listing straight from one server (asserting it answered 200)."""
    result = cluster.direct(
        node, "GET", part, account, container, query_string="format=json&limit=10000"
    )
    assert result.status == 200, (node, result.status, result.body[:200])
    return json.loads(result.body)


def test_wiped_device_gets_every_object_and_database_back(cluster, conn, account):
    rng = random.Random(4)
    bodies = {}
    containers = [f"wipe-{i}" for i in range(6)]
    for container in containers:
        conn.put_container(container)
        for j in range(8):
            body = os.urandom(rng.choice((0, 1, 700, 4096, 65536, 300_000)))
            conn.put_object(container, f"obj/{j}", body)
            bodies[(container, f"obj/{j}")] = body

    # The device to wipe: one of the account's, also holding containers and objects.
    account_part, account_nodes = cluster.account_nodes(account)

    def held(device):
        dbs = [c for c in containers if device in devices_of(cluster.container_nodes(account, c))]
        objs = [k for k in bodies if device in devices_of(cluster.object_nodes(account, *k))]
        return dbs, objs

    device = max((n["device"] for n in account_nodes), key=lambda d: [len(x) for x in held(d)])
    on_device_dbs, on_device_objects = held(device)
    assert on_device_dbs and on_device_objects, "no device holds every kind of data"

    before = {}
    for key in on_device_objects:
        part, _nodes = cluster.object_nodes(account, *key)
        path = cluster.data_file(device, part, account, *key)
        before[key] = (os.path.basename(path), cluster.read_object_file(path))

    def objects_back():
        for key in on_device_objects:
            part, _nodes = cluster.object_nodes(account, *key)
            if cluster.data_file(device, part, account, *key) is None:
                return False
        return True

    cluster.wipe_device(device)
    assert os.listdir(cluster.device_path(device)) == []
    # The client sees nothing missing meanwhile: the other replicas answer.
    for (container, name), body in bodies.items():
        assert conn.get_object(container, name)[1] == body

    def databases_back():
        paths = [cluster.db_file(device, account_part, account)]
        for container in on_device_dbs:
            part, _nodes = cluster.container_nodes(account, container)
            paths.append(cluster.db_file(device, part, account, container))
        return all(map(os.path.exists, paths))

    heal(cluster, lambda: objects_back() and databases_back())

    # Every object the ring puts on the device is back: same file, bytes and metadata.
    for key in on_device_objects:
        part, nodes = cluster.object_nodes(account, *key)
        path = cluster.data_file(device, part, account, *key)
        assert path is not None, f"{key} not restored on {device}"
        assert (os.path.basename(path), cluster.read_object_file(path)) == before[key], key
        answer = cluster.direct(node_for(nodes, device), "GET", part, account, *key)
        assert answer.status == 200 and answer.body == bodies[key], key

    # Every database too, listing what the other replicas list.
    assert os.path.exists(cluster.db_file(device, account_part, account))
    for node in account_nodes:
        names = [entry["name"] for entry in listing(cluster, node, account_part, account)]
        assert names == sorted(containers), node["device"]
    for container in on_device_dbs:
        part, nodes = cluster.container_nodes(account, container)
        assert os.path.exists(cluster.db_file(device, part, account, container)), container
        restored = listing(cluster, node_for(nodes, device), part, account, container)
        assert [e["name"] for e in restored] == sorted(k[1] for k in bodies if k[0] == container)
        for other in nodes:
            assert listing(cluster, other, part, account, container) == restored
        head = cluster.direct(node_for(nodes, device), "HEAD", part, account, container)
        assert int(head.headers["X-Container-Object-Count"]) == 8
        assert int(head.headers["X-Container-Bytes-Used"]) == sum(
            len(b) for k, b in bodies.items() if k[0] == container
        )

    # And the client reads every object right.
    for (container, name), body in bodies.items():
        assert conn.get_object(container, name)[1] == body


def test_handoffs_go_home_after_a_node_comes_back(cluster, conn, account):
    container = "handoff"
    conn.put_container(container)
    old = {f"old/{i:02d}": os.urandom(500 + 91 * i) for i in range(16)}
    for name, body in old.items():
        conn.put_object(container, name, body)
    new = {f"new/{i:02d}": os.urandom(800 + 77 * i) for i in range(16)}

    def primaries_on(node_name, names):
        return [
            n
            for n in names
            if any(
                cluster.node_of(d["device"]) == node_name
                for d in cluster.object_nodes(account, container, n)[1]
            )
        ]

    names_of_nodes = sorted(n["name"] for n in cluster.info["nodes"])
    victim = max(names_of_nodes, key=lambda v: len(primaries_on(v, [*old, *new])))
    cluster.stop_node(victim)

    # While it is down: new objects, deletes and an overwrite, some of each on the victim.
    for name, body in new.items():
        conn.put_object(container, name, body)
    old_on_victim = primaries_on(victim, old)
    assert len(old_on_victim) >= 2 and primaries_on(victim, new)
    deleted = old_on_victim[1:]
    for name in deleted:
        conn.delete_object(container, name)
    overwritten = old_on_victim[0]
    old[overwritten] = os.urandom(4321)
    conn.put_object(container, overwritten, old[overwritten])
    live = {**{n: b for n, b in old.items() if n not in deleted}, **new}
    every_name = [*old, *new]

    def where(name):
        """{device: file names} of every device holding the object's hash dir."""
        part, _nodes = cluster.object_nodes(account, container, name)
        found = {}
        for device in cluster.devices():
            files = cluster.object_files(device, part, account, container, name)
            if files:
                found[device] = files
        return found

    # Handoffs took the writes for the victim's devices; note the newest state of each.
    newest = {}
    on_handoffs = 0
    for name in every_name:
        part, nodes = cluster.object_nodes(account, container, name)
        holders = where(name)
        newest[name] = max(f for files in holders.values() for f in files)
        on_handoffs += any(d not in {n["device"] for n in nodes} for d in holders)
        assert newest[name].endswith(".ts" if name in deleted else ".data"), name
    assert on_handoffs >= len(primaries_on(victim, new))

    cluster.start_node(victim)

    def healed():
        for name in every_name:
            part, nodes = cluster.object_nodes(account, container, name)
            primaries = {n["device"] for n in nodes}
            if where(name) != {device: [newest[name]] for device in primaries}:
                return False
            if any(part in cluster.partitions(d) for d in cluster.handoff_devices(nodes)):
                return False
        return True

    passes = heal(cluster, healed)
    for name in every_name:
        part, nodes = cluster.object_nodes(account, container, name)
        primaries = {n["device"] for n in nodes}
        assert where(name) == {device: [newest[name]] for device in primaries}, (name, passes)
        for device in cluster.handoff_devices(nodes):
            assert part not in cluster.partitions(device), (name, device)
        for node in nodes:
            answer = cluster.direct(node, "GET", part, account, container, name)
            if name in live:
                assert answer.status == 200 and answer.body == live[name], (name, node)
            else:
                assert answer.status == 404, (name, node)

    # The container replicas agree too (the victim's missed the updates while down).
    part, nodes = cluster.container_nodes(account, container)
    for node in nodes:
        rows = listing(cluster, node, part, account, container)
        assert {e["name"]: e["bytes"] for e in rows} == {n: len(b) for n, b in live.items()}
    for name, body in live.items():
        assert conn.get_object(container, name)[1] == body
