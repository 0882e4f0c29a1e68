"""The all-in-one cluster's layout: which ports, devices and files a cluster dir holds.

``haneul up`` writes everything under one directory::

    DIR/etc/haneul.conf             hash secrets (made once) and storage policies: 0 "gold"
                                    (replicated), 1 "ec42" (erasure coded 4+2)
    DIR/etc/proxy.conf              the proxy pipeline, tempauth users, their S3 key pairs
    DIR/etc/node<N>.conf            one storage.conf per node
    DIR/etc/{account,container,object,object-1}.builder and .ring.gz
    DIR/data/node<N>/<device>       device directories
    DIR/log/<process>.log           each process's stderr
    DIR/cluster.json                endpoint, credentials, processes (for scripts)

Node ``i`` (from 0) listens on ``base_port + 10*i`` (object), ``+1`` (container) and
``+2`` (account), so two clusters with other ports run side by side.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import secrets

from common.config import ConfigError
from common.fileops import atomic_write_bytes, makedirs
from common.hashing import load_hash_secrets

PART_POWER = 10
DEVICES_PER_NODE = 2
PORT_STRIDE = 10

# The erasure-coded policy every cluster with enough devices gets (added to the
# haneul.conf of a cluster made before it existed); its ring has one replica a fragment.
EC_POLICY_INDEX = 1
EC_FRAGMENTS = 6
EC_POLICY_TEXT = (
    f"[policy:{EC_POLICY_INDEX}]\n"
    "name = ec42\n"
    "type = erasure_coding\n"
    "ec_type = isa_l_rs_vand\n"
    "ec_num_data_fragments = 4\n"
    "ec_num_parity_fragments = 2\n"
    "ec_object_segment_size = 1048576\n"
)

# The users of a Swift all-in-one, so scripts written for Swift work unchanged.
TEST_USERS = [
    ("test", "tester", "testing", ".admin"),
    ("test2", "tester2", "testing2", ".admin"),
    ("test", "tester3", "testing3", ""),
]
RESELLER_ADMIN = ("admin", "admin", "admin", ".admin .reseller_admin")
# Every test user also has an S3 key pair (derived from the cluster's hash secrets, so
# the same on every `haneul up` of a cluster); virtual-hosted buckets are
# <bucket>.localhost.
S3_REGION = "us-east-1"
S3_STORAGE_DOMAIN = "localhost"
S3_KEY_CONTEXT = b"haneul-aio-s3-key-v1\x00"


class ClusterLayout:
    """Paths and ports of one all-in-one cluster."""

    def __init__(self, root, nodes=4, replicas=3, port=8080, base_port=6200):
        self.root = os.path.abspath(root)
        self.node_count = nodes
        self.replicas = replicas
        self.proxy_port = port
        self.base_port = base_port

    @property
    def etc(self):
        return os.path.join(self.root, "etc")

    @property
    def log_dir(self):
        return os.path.join(self.root, "log")

    @property
    def cluster_json(self):
        return os.path.join(self.root, "cluster.json")

    @property
    def proxy_conf(self):
        return os.path.join(self.etc, "proxy.conf")

    @property
    def haneul_conf(self):
        return os.path.join(self.etc, "haneul.conf")

    @property
    def proxy_url(self):
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def has_ec_policy(self):
        """Whether there are devices enough for the ec42 policy's six fragments."""
        return self.node_count * DEVICES_PER_NODE >= EC_FRAGMENTS

    def nodes(self):
        """One dict a node: name, ports, conf path and device paths."""
        result = []
        for i in range(self.node_count):
            name = f"node{i + 1}"
            port = self.base_port + PORT_STRIDE * i
            devices = {
                f"d{i * DEVICES_PER_NODE + j + 1}": os.path.join(
                    self.root, "data", name, f"d{i * DEVICES_PER_NODE + j + 1}"
                )
                for j in range(DEVICES_PER_NODE)
            }
            result.append(
                {
                    "name": name,
                    "ip": "127.0.0.1",
                    "zone": i + 1,
                    "object_port": port,
                    "container_port": port + 1,
                    "account_port": port + 2,
                    "metrics_port": port + 3,
                    "conf": os.path.join(self.etc, f"{name}.conf"),
                    "devices_root": os.path.join(self.root, "data", name),
                    "devices": devices,
                }
            )
        return result

    def ports(self):
        """Every port the cluster listens on."""
        ports = [self.proxy_port]
        for node in self.nodes():
            ports += [
                node["object_port"],
                node["container_port"],
                node["account_port"],
                node["metrics_port"],
            ]
        return ports


def agent_name(node_name):
    """The process name of a node's background agent."""
    return f"{node_name}-agent"


def write_text(path, text):
    """Write a config file atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def haneul_conf_text(old_text=None, with_ec=False):
    """haneul.conf with fresh secrets, or the existing file (secrets never change).

    ``with_ec`` adds the ec42 policy unless a ``[policy:1]`` is there already.
    """
    text = old_text or (
        "# Written by `haneul up`. The [hash] secrets are random per cluster and must never\n"
        "# change once data is stored.\n"
        "[hash]\n"
        f"prefix = {secrets.token_hex(8)}\n"
        f"suffix = {secrets.token_hex(8)}\n\n"
        "[policy:0]\n"
        "name = gold\n"
        "type = replication\n"
        "default = yes\n"
    )
    if with_ec and not re.search(rf"^\s*\[policy:{EC_POLICY_INDEX}\]", text, re.MULTILINE):
        text = text.rstrip("\n") + "\n\n" + EC_POLICY_TEXT
    return text


def storage_conf_text(layout, node):
    """A node's storage.conf: its devices root, ports and the cluster's files."""
    return (
        f"# {node['name']} of the all-in-one cluster in {layout.root} (written by haneul up)\n"
        "[DEFAULT]\n"
        f"devices = {node['devices_root']}\n"
        "mount_check = false\n"
        f"haneul_conf = {layout.haneul_conf}\n"
        f"ring_dir = {layout.etc}\n"
        "bind_ip = 127.0.0.1\n"
        "workers = 0\n"
        "log_level = info\n"
        "log_requests = false\n\n"
        "[object]\n"
        f"port = {node['object_port']}\n\n"
        "[container]\n"
        f"port = {node['container_port']}\n\n"
        "[account]\n"
        f"port = {node['account_port']}\n\n"
        "[agent]\n"
        "# Background daemons of this node (haneul serve agent); counters at /metrics.\n"
        "metrics_ip = 127.0.0.1\n"
        f"metrics_port = {node['metrics_port']}\n"
    )


def proxy_conf_text(layout):
    """The proxy's config: pipeline, rings and the test users."""
    users = [RESELLER_ADMIN, *TEST_USERS]
    user_lines = "\n".join(
        f"user_{account}_{user} = {key} {groups}".rstrip() for account, user, key, groups in users
    )
    return (
        f"# The proxy of the all-in-one cluster in {layout.root} (written by haneul up)\n"
        "[DEFAULT]\n"
        "bind_ip = 127.0.0.1\n"
        f"bind_port = {layout.proxy_port}\n"
        "workers = auto\n"
        f"haneul_conf = {layout.haneul_conf}\n"
        f"ring_dir = {layout.etc}\n"
        "log_level = info\n\n"
        "[pipeline:main]\n"
        "pipeline = catch_errors healthcheck proxy_logging s3api tempauth slo proxy\n\n"
        "[filter:catch_errors]\nuse = catch_errors\n\n"
        "[filter:healthcheck]\nuse = healthcheck\n\n"
        "[filter:proxy_logging]\nuse = proxy_logging\n\n"
        f"{s3api_section(layout)}\n"
        "[filter:tempauth]\nuse = tempauth\n"
        f"{user_lines}\n\n"
        "[filter:slo]\nuse = slo\n\n"
        "[app:proxy]\nuse = proxy\n"
    )


def s3_key_pairs(layout):
    """One S3 identity a test user: user, access/secret key, display name, id, email.

    The keys are HMACs of the user's name keyed with the cluster's hash secrets, so
    they differ between clusters and stay put across restarts of one.
    """
    from proxy.s3api.credentials import canonical_id

    try:
        hashes = load_hash_secrets(layout.haneul_conf)
        material = hashes.prefix + b"\x00" + hashes.suffix
    except ConfigError:
        material = b"no haneul.conf yet"
    pairs = []
    for account, user, _key, _groups in TEST_USERS:
        name = f"{account}:{user}".encode()
        digest = hmac.new(material, S3_KEY_CONTEXT + b"access\x00" + name, hashlib.sha256)
        access = "HN" + base64.b32encode(digest.digest()[:15]).decode("ascii")[:18]
        digest = hmac.new(material, S3_KEY_CONTEXT + b"secret\x00" + name, hashlib.sha256)
        secret = base64.b64encode(digest.digest()[:30]).decode("ascii")
        pairs.append(
            {
                "user": f"{account}:{user}",
                "access_key": access,
                "secret_key": secret,
                "display_name": user,
                "id": canonical_id(account, user),
                "email": f"{user}@example.com",
            }
        )
    return pairs


def s3api_section(layout):
    """The ``[filter:s3api]`` section: region, virtual-host domain, the key pairs."""
    lines = [
        "[filter:s3api]",
        "use = proxy.s3api",
        f"location = {S3_REGION}",
        f"storage_domain = {S3_STORAGE_DOMAIN}",
    ]
    for pair in s3_key_pairs(layout):
        account, user = pair["user"].split(":", 1)
        lines.append(
            f"s3_user_{account}_{user} = {pair['access_key']} {pair['secret_key']} "
            f"display_name={pair['display_name']} email={pair['email']} id={pair['id']}"
        )
    return "\n".join(lines) + "\n"


def cluster_info(layout, pids):
    """What ``cluster.json`` holds: endpoint, credentials, processes."""
    main_account, main_user, main_key, _ = TEST_USERS[0]
    s3_pairs = s3_key_pairs(layout)
    nodes = []
    for node in layout.nodes():
        nodes.append(
            {
                "name": node["name"],
                "ip": node["ip"],
                "object_port": node["object_port"],
                "container_port": node["container_port"],
                "account_port": node["account_port"],
                "pid": pids.get(node["name"]),
                "agent": {
                    "pid": pids.get(agent_name(node["name"])),
                    "metrics": f"http://127.0.0.1:{node['metrics_port']}/metrics",
                },
                "conf": node["conf"],
                "devices": node["devices"],
            }
        )
    return {
        "auth_url": f"{layout.proxy_url}/auth/v1.0",
        "user": f"{main_account}:{main_user}",
        "key": main_key,
        "users": [
            {"user": f"{account}:{user}", "key": key} for account, user, key, _ in TEST_USERS[1:]
        ],
        "s3": {
            "endpoint": layout.proxy_url,
            "region": S3_REGION,
            "storage_domain": S3_STORAGE_DOMAIN,
            **s3_pairs[0],
        },
        "s3_users": s3_pairs[1:],
        "etc": layout.etc,
        "proxy": {"url": layout.proxy_url, "pid": pids.get("proxy"), "conf": layout.proxy_conf},
        "nodes": nodes,
    }


def read_cluster_json(root):
    """The cluster.json of a cluster dir, or None if there is none."""
    try:
        with open(os.path.join(root, "cluster.json"), encoding="utf-8") as fp:
            return json.load(fp)
    except FileNotFoundError:
        return None


def write_cluster_json(layout, info):
    """Write cluster.json atomically."""
    makedirs(layout.root)
    write_text(layout.cluster_json, json.dumps(info, indent=2, sort_keys=True) + "\n")
