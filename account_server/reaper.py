"""The account reaper: empties accounts that a reseller admin has deleted.

An account DELETE only marks the account database DELETED. Each pass, the reaper looks
at the account databases on this node's devices whose partition has this device as its
first primary (so one node in the cluster does the work, not every replica), and for
every one marked DELETED at least ``delay_reaping`` seconds ago:

- lists its containers (from the local account database);
- for each container, lists the objects (from the container servers, through the
  container ring) and deletes every one on every node of its policy's object ring,
  with ``X-Container-*`` headers so that the container rows go as well;
- then deletes the container on its container servers, with ``X-Account-*`` headers so
  that the account hears of it (the account server records a deleted container even in
  a deleted account).

Whatever fails is tried again next pass. Once no container is left the account is
reaped; its database is removed by the account replicator after ``reclaim_age``.
"""

import logging
import os
import time

from account_server.broker import AccountBroker
from common.concurrency import Pile
from common.config import config_float, config_int
from common.daemon import (
    RingCache,
    direct_delete_everywhere,
    direct_listing,
    direct_timeouts,
    local_devices,
    object_ring_name,
)
from common.db import DatabaseError
from common.db_replicator import iter_db_files
from common.listing import ListingParams, Subdir
from common.timestamp import Timestamp

PAGE = 1000


def _success(status):
    return status is not None and (200 <= status < 300 or status == 404)


class AccountReaper:
    """One pass (``run_once``) of emptying deleted accounts; the agent loops it."""

    name = "account-reaper"

    def __init__(self, conf, logger=None, rings=None):
        conf = conf or {}
        self.conf = conf
        self.logger = logger or logging.getLogger("haneul.account-reaper")
        self.devices = conf.get("devices", "/srv/node")
        self.timeouts = direct_timeouts(conf)
        self.delay_reaping = config_float(conf.get("delay_reaping", "0"), "delay_reaping", 0)
        self.concurrency = config_int(conf.get("concurrency", "4"), "concurrency", 1)
        self.db_lock_timeout = config_float(conf.get("db_lock_timeout", "25"), "db_lock_timeout", 0)
        self.ring = RingCache(conf, rings)

    def run_once(self, devices=None):
        """Reap every deleted account this node is first primary for; the counters."""
        stats = dict.fromkeys(
            (
                "accounts_checked",
                "accounts_reaped",
                "accounts_waiting",
                "containers_deleted",
                "containers_remaining",
                "objects_deleted",
                "objects_failed",
                "errors",
            ),
            0,
        )
        account_ring = self.ring("account")
        for dev_name, dev in local_devices(account_ring, self.conf, devices).items():
            dev_path = os.path.join(self.devices, dev_name)
            for part, db_file in iter_db_files(dev_path, AccountBroker.datadir):
                nodes = account_ring.get_part_nodes(part)
                if nodes and nodes[0]["id"] == dev["id"]:
                    self.reap_db(db_file, stats)
        return stats

    def reap_db(self, db_file, stats):
        """Empty one account database's account if it is marked deleted."""
        try:
            with AccountBroker(db_file, timeout=self.db_lock_timeout) as broker:
                info = broker.get_info()
                if not broker.is_status_deleted(info):
                    return
                stats["accounts_checked"] += 1
                deleted_at = Timestamp(info["delete_timestamp"]).timestamp
                if deleted_at + self.delay_reaping > time.time():
                    stats["accounts_waiting"] += 1
                    return
                account = info["account"]
                containers = self._containers(broker)
        except DatabaseError as err:
            self.logger.error("cannot read %s: %s", db_file, err)
            stats["errors"] += 1
            return
        remaining = 0
        for container in containers:
            if self.reap_container(account, container, stats):
                stats["containers_deleted"] += 1
            else:
                stats["containers_remaining"] += 1
                remaining += 1
        if remaining:
            self.logger.info("account %s: %d containers left to reap", account, remaining)
        else:
            stats["accounts_reaped"] += 1
            self.logger.info("account %s reaped", account)

    @staticmethod
    def _containers(broker):
        names = []
        marker = ""
        while True:
            rows = broker.list_containers(ListingParams(marker=marker, limit=PAGE))
            names += [row[0] for row in rows if not isinstance(row, Subdir)]
            if len(rows) < PAGE:
                return names
            marker = names[-1]

    def reap_container(self, account, container, stats):
        """Delete every object of a container, then the container; True once it is gone."""
        part, nodes = self.ring("container").get_nodes(account, container)
        policy = 0
        marker = ""
        while True:
            page = direct_listing(nodes, part, account, container, marker, PAGE, **self.timeouts)
            if page is None:
                self.logger.warning("no container server listed /%s/%s", account, container)
                stats["errors"] += 1
                return False
            entries, headers = page
            if headers is not None:
                policy = int(headers.get("X-Backend-Storage-Policy-Index", "0") or 0)
            if not entries:
                break
            pile = Pile(self.concurrency)
            for entry in entries:
                pile.spawn(self.reap_object, account, container, entry["name"], policy, part, nodes)
            for done in pile:
                if done is True:
                    stats["objects_deleted"] += 1
                else:
                    if isinstance(done, Exception):
                        self.logger.error(
                            "deleting an object of /%s/%s: %r", account, container, done
                        )
                    stats["objects_failed"] += 1
            if len(entries) < PAGE:
                break
            marker = entries[-1]["name"]
        return self._delete_container(account, container, policy, part, nodes)

    def reap_object(self, account, container, obj, policy, cpart, cnodes):
        """DELETE one object on every node of its ring; True if a majority did."""
        part, nodes = self.ring(object_ring_name(policy)).get_nodes(account, container, obj)
        headers = {
            "X-Timestamp": Timestamp.now().internal,
            "X-Backend-Storage-Policy-Index": str(policy),
        }
        statuses = direct_delete_everywhere(
            nodes,
            part,
            (account, container, obj),
            headers,
            ("Container", cnodes, cpart),
            **self.timeouts,
        )
        return sum(map(_success, statuses)) >= len(nodes) // 2 + 1

    def _delete_container(self, account, container, policy, part, nodes):
        apart, anodes = self.ring("account").get_nodes(account)
        headers = {
            "X-Timestamp": Timestamp.now().internal,
            "X-Backend-Storage-Policy-Index": str(policy),
        }
        statuses = direct_delete_everywhere(
            nodes, part, (account, container), headers, ("Account", anodes, apart), **self.timeouts
        )
        if sum(map(_success, statuses)) >= len(nodes) // 2 + 1:
            return True
        self.logger.info("container /%s/%s not deleted yet: %s", account, container, statuses)
        return False
