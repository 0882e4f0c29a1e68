"""The container updater: brings the account server up to date with each container.

A container's stat row remembers what the account last acknowledged (``reported_*``).
Object rows change the totals without telling the account, and a report sent during a
container PUT/DELETE may have failed; ``run_once`` walks every container database on the
node's devices and, for each whose current values differ from the reported ones, sends
the report: to the account ring's nodes when a ring is given, else to the account nodes
recorded from the last proxy request. Once a majority accepts, the values are recorded
as reported, so a container is only sent again when it changes again.
"""

import logging
import os

from common.config import config_float, config_true
from common.db import DatabaseError
from common.devices import list_devices
from container_server import reporting
from container_server.broker import ContainerBroker


class ContainerUpdater:
    """One pass (``run_once``) of container-to-account reporting; the agent loops it."""

    def __init__(self, conf, account_ring=None, logger=None):
        conf = conf or {}
        self.logger = logger or logging.getLogger("container-updater")
        self.devices = conf.get("devices", "/srv/node")
        self.mount_check = config_true(conf.get("mount_check", "false"))
        self.node_timeout = config_float(conf.get("node_timeout", "3"), "node_timeout", 0)
        self.conn_timeout = config_float(conf.get("conn_timeout", "0.5"), "conn_timeout", 0)
        self.db_lock_timeout = config_float(
            conf.get("db_lock_timeout", "25"), "db_lock_timeout", minimum=0
        )
        self._ring = account_ring

    @property
    def account_ring(self):
        """The account ring, if any: a Ring, or a ring file path loaded on first use."""
        if isinstance(self._ring, str):
            from ring.ring import Ring  # the ring is only needed when one is configured

            self._ring = Ring(self._ring)
        return self._ring

    def run_once(self, devices=None):
        """Report every container whose totals changed; returns counts of what happened."""
        stats = {"checked": 0, "clean": 0, "reported": 0, "failed": 0, "no_target": 0, "errors": 0}
        for device in devices if devices is not None else list_devices(self.devices):
            dev_path = os.path.join(self.devices, device)
            if self.mount_check and not os.path.ismount(dev_path):
                self.logger.warning("skipping %s: not mounted", dev_path)
                continue
            for db_file in self._db_files(os.path.join(dev_path, ContainerBroker.datadir)):
                stats["checked"] += 1
                stats[self.process_container(db_file)] += 1
        return stats

    @staticmethod
    def _db_files(datadir):
        """Every ``<part>/<suffix>/<hash>/<hash>.db`` under a device's containers dir."""
        for level in _subdirs(datadir):
            for suffix in _subdirs(level):
                for hash_dir in _subdirs(suffix):
                    db_file = os.path.join(hash_dir, os.path.basename(hash_dir) + ".db")
                    if os.path.isfile(db_file):
                        yield db_file

    def process_container(self, db_file):
        """Report one container if needed.

        Returns ``clean`` (nothing to do), ``reported``, ``failed``, ``no_target`` or ``errors``.
        """
        broker = ContainerBroker(db_file, timeout=self.db_lock_timeout, logger=self.logger)
        with broker:
            try:
                info = broker.get_info()
                if not ContainerBroker.needs_report(info):
                    return "clean"
                targets = self._targets(info)
                if targets is None:
                    self.logger.warning("no account to report %s to", db_file)
                    return "no_target"
                partition, nodes = targets
                statuses = reporting.report(
                    nodes,
                    partition,
                    info["account"],
                    info["container"],
                    info,
                    self.conn_timeout,
                    self.node_timeout,
                )
                if not reporting.succeeded(statuses):
                    self.logger.info(
                        "report of /%s/%s failed (statuses %s); will retry",
                        info["account"],
                        info["container"],
                        statuses,
                    )
                    return "failed"
                broker.reported(
                    info["put_timestamp"],
                    info["delete_timestamp"],
                    info["object_count"],
                    info["bytes_used"],
                )
                return "reported"
            except DatabaseError as err:
                self.logger.error("cannot update from %s: %s", db_file, err)
                return "errors"

    def _targets(self, info):
        ring = self.account_ring
        if ring is not None:
            partition, nodes = ring.get_nodes(info["account"])
            return str(partition), list(nodes)
        target = ContainerBroker.account_target(info)
        if not target or not target.get("nodes"):
            return None
        return str(target["partition"]), target["nodes"]


def _subdirs(path):
    try:
        with os.scandir(path) as entries:
            return sorted(e.path for e in entries if e.is_dir(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError):
        return []
