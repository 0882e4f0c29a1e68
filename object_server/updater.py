"""The object updater: delivers the container updates the object server could not send.

One pass (``run_once``) walks ``<dev>/async_pending[-N]/<suffix>/<hash>-<timestamp>`` on
every device under ``devices`` (object_server.async_pending has the record format) and
sends each update to its container servers:

- With a container ring in ``ring_dir`` the update goes to the container's current
  primaries (the ring may have changed since the write); without one, to the hosts
  recorded in the file.
- A file is deleted once every target acknowledged (2xx). Targets that did acknowledge
  are remembered in the file (``successes``, as ``ip:port/device``), so a retry only
  goes to the others.
- Anything else keeps the file for the next pass, 404 included: a container server
  answers 404 when it has no database for the container, which is also what a new
  primary says before container replication has reached it, and dropping the update
  then would lose the object's row for good. (Swift makes the same choice.)
- Several pendings for one object: only the newest is sent; the older ones are deleted,
  as each container replica got the newer write directly or through the newer pending.
- A damaged file is moved to ``<dev>/quarantined/async_pending[-N]/``.
"""

import errno
import logging
import os
import time

from common import daemon as agent_helpers
from common.config import ConfigError, config_float, config_true
from common.devices import list_devices
from common.fileops import makedirs
from common.timestamp import InvalidTimestamp, Timestamp
from object_server import layout
from object_server.async_pending import AsyncPendingError, read_async_pending, write_async_pending
from object_server.container_update import send_update

HASH_LENGTH = layout.HASH_LENGTH


def new_counters():
    return {
        "successes": 0,
        "failures": 0,
        "unlinks": 0,
        "superseded": 0,
        "quarantined": 0,
        "errors": 0,
        "duration": 0.0,
    }


def parse_pending_name(name):
    """``(hash, Timestamp)`` of an async pending's file name, or None if it is not one."""
    obj_hash, dash, stamp = name[:HASH_LENGTH], name[HASH_LENGTH : HASH_LENGTH + 1], name[33:]
    if dash != "-" or not layout.is_hash(obj_hash):
        return None
    try:
        timestamp = Timestamp(stamp)
    except InvalidTimestamp:
        return None
    if timestamp.internal != stamp:
        return None
    return obj_hash, timestamp


def _host(ip, port):
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


class ObjectUpdater:
    """One pass (``run_once``) over this node's async pendings; the agent loops it."""

    name = "object-updater"

    def __init__(self, conf, logger=None, container_ring=None):
        conf = dict(conf or {})
        self.conf = conf
        self.logger = logger or logging.getLogger("haneul.object-updater")
        self.devices = conf.get("devices", "/srv/node")
        self.mount_check = config_true(conf.get("mount_check", "false"))
        self.conn_timeout = config_float(conf.get("conn_timeout", "0.5"), "conn_timeout", 0)
        self.node_timeout = config_float(conf.get("node_timeout", "10"), "node_timeout", 0)
        self._ring = container_ring

    @property
    def container_ring(self):
        """The container ring, or None when ``ring_dir`` has none (recorded hosts are used)."""
        if self._ring is None:
            try:
                secrets = agent_helpers.hash_secrets_of(self.conf)
                self._ring = agent_helpers.load_ring(self.conf, "container", secrets)
            except ConfigError as err:
                self.logger.debug("no container ring, using recorded hosts: %s", err)
                self._ring = False
        return self._ring or None

    def run_once(self, devices=None):
        """Send every async pending (of the named devices only, if given); counters."""
        stats = new_counters()
        started = time.monotonic()
        for device in devices if devices is not None else list_devices(self.devices):
            dev_path = os.path.join(self.devices, device)
            if self.mount_check and not os.path.ismount(dev_path):
                self.logger.warning("skipping %s: not mounted", dev_path)
                continue
            for index in layout.policy_indexes(dev_path, "async_pending"):
                self._sweep(dev_path, index, stats)
        stats["duration"] = round(time.monotonic() - started, 3)
        self.logger.info(
            "object update pass: %d sent, %d failed, %d files removed, %d errors in %.2fs",
            stats["successes"],
            stats["failures"],
            stats["unlinks"],
            stats["errors"],
            stats["duration"],
        )
        return stats

    def _sweep(self, dev_path, policy_index, stats):
        pending_dir = layout.async_pending_dir(dev_path, policy_index)
        for suffix in sorted(_listdir(pending_dir)):
            suffix_dir = os.path.join(pending_dir, suffix)
            if not layout.is_suffix(suffix) or not os.path.isdir(suffix_dir):
                continue
            seen = set()
            # Newest first, so an object's older pendings come after the one that counts.
            for name in sorted(_listdir(suffix_dir), reverse=True):
                parsed = parse_pending_name(name)
                if parsed is None:
                    continue  # a temp file or a stranger: not ours to touch
                path = os.path.join(suffix_dir, name)
                if parsed[0] in seen:
                    if self._unlink(path, stats):
                        stats["superseded"] += 1
                    continue
                seen.add(parsed[0])
                self.process(dev_path, path, parsed, stats)
            try:
                os.rmdir(suffix_dir)
            except OSError as err:
                if err.errno not in (errno.ENOTEMPTY, errno.ENOENT):
                    raise

    def process(self, dev_path, path, parsed, stats):
        """Send one async pending; delete it if every target took it."""
        try:
            record = read_async_pending(path)
        except FileNotFoundError:
            return
        except AsyncPendingError as err:
            self._quarantine(dev_path, path, err, stats)
            return
        except OSError as err:
            stats["errors"] += 1
            self.logger.error("cannot read %s: %s", path, err)
            return
        partition, targets = self._targets(record)
        done = set(record.get("successes") or ())
        headers = {str(k): str(v) for k, v in record["headers"].items()}
        headers["X-Backend-Server-Type"] = "container"
        obj_path = f"/{record['account']}/{record['container']}/{record['obj']}"
        acknowledged = set()
        for host, device in targets:
            key = f"{host}/{device}"
            if key in done:
                continue
            if send_update(
                host,
                device,
                partition,
                record["op"],
                obj_path,
                headers,
                self.conn_timeout,
                self.node_timeout,
            ):
                acknowledged.add(key)
        if all(f"{host}/{device}" in done | acknowledged for host, device in targets):
            stats["successes"] += 1
            self._unlink(path, stats)
            return
        stats["failures"] += 1
        if acknowledged:
            record["successes"] = sorted(done | acknowledged)
            obj_hash, timestamp = parsed
            try:
                write_async_pending(dev_path, obj_hash, timestamp, record)
            except OSError as err:
                stats["errors"] += 1
                self.logger.error("cannot record progress in %s: %s", path, err)

    def _targets(self, record):
        """(partition, [(host, device)]) to send a record to."""
        ring = self.container_ring
        if ring is not None:
            partition, nodes = ring.get_nodes(record["account"], record["container"])
            return str(partition), [(_host(n["ip"], n["port"]), n["device"]) for n in nodes]
        hosts = [h.strip() for h in str(record["container_host"]).split(",") if h.strip()]
        devices = [d.strip() for d in str(record["container_device"]).split(",")]
        return str(record["container_partition"]), list(zip(hosts, devices, strict=False))

    def _unlink(self, path, stats):
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        stats["unlinks"] += 1
        return True

    def _quarantine(self, dev_path, path, err, stats):
        name = os.path.basename(os.path.dirname(os.path.dirname(path)))  # async_pending[-N]
        target_dir = os.path.join(dev_path, "quarantined", name)
        try:
            makedirs(target_dir)
            os.rename(path, os.path.join(target_dir, os.path.basename(path)))
            stats["quarantined"] += 1
            self.logger.warning("quarantined damaged async pending %s: %s", path, err)
        except OSError as move_err:
            stats["errors"] += 1
            self.logger.error("cannot quarantine %s (%s): %s", path, err, move_err)


def _listdir(path):
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []
