"""The object expirer: deletes objects whose ``X-Delete-At`` has passed.

The queue it works from is described in ``common.expiring``: the hidden account
``.expiring_objects``, one container per day, one row per object. Each pass:

- lists the account (through the account ring) for the queue containers whose day
  has begun;
- takes those whose queue container has one of this node's devices as its first
  primary (so each is worked on by one node of the cluster), or, with ``processes``
  set, every container but only its rows whose hash falls to ``process``;
- lists each one's due rows (``delete_at <= now``) from the container servers and, for
  every row, DELETEs the object on its policy's object nodes with
  ``X-If-Delete-At: <delete_at>`` and ``X-Timestamp: <delete_at>`` (so a newer write
  always wins) plus ``X-Container-*`` headers, so the object leaves its listing;
- removes the row once a majority of the object nodes settled it: deleted (2xx), gone
  already (404), rewritten with another ``X-Delete-At`` (412) or newer (409). A row
  whose object could not be reached stays for the next pass;
- deletes a queue container once its whole day has passed and it is empty.
"""

import hashlib
import logging
import time

from common import expiring
from common.concurrency import Pile
from common.config import config_int
from common.daemon import (
    RingCache,
    direct_delete_everywhere,
    direct_listing,
    direct_request,
    direct_timeouts,
    local_devices,
    object_ring_name,
)
from common.timestamp import Timestamp

PAGE = 1000
SETTLED = frozenset((404, 409, 412))


class ObjectExpirer:
    """One pass (``run_once``) over the expiring-objects queue; the agent loops it."""

    name = "object-expirer"

    def __init__(self, conf, logger=None, rings=None, clock=time.time):
        conf = conf or {}
        self.conf = conf
        self.logger = logger or logging.getLogger("haneul.object-expirer")
        self.timeouts = direct_timeouts(conf)
        self.concurrency = config_int(conf.get("concurrency", "4"), "concurrency", 1)
        self.processes = config_int(conf.get("processes", "0"), "processes", 0)
        self.process = config_int(conf.get("process", "0"), "process", 0)
        if self.processes and self.process >= self.processes:
            raise ValueError(f"process must be below processes ({self.processes})")
        self.clock = clock
        self.ring = RingCache(conf, rings)

    def run_once(self, devices=None):
        """Work through every due queue container this node owns; the counters."""
        stats = dict.fromkeys(
            (
                "buckets_checked",
                "objects_expired",
                "stale_rows",
                "rows_removed",
                "failures",
                "buckets_deleted",
                "errors",
            ),
            0,
        )
        now = self.clock()
        buckets = self._due_buckets(now, stats)
        container_ring = self.ring("container")
        if not self.processes:
            conf = dict(self.conf, port=self.conf.get("container_port", "6201"))
            mine = {dev["id"] for dev in local_devices(container_ring, conf, devices).values()}
        for bucket in buckets:
            part, nodes = container_ring.get_nodes(expiring.EXPIRING_ACCOUNT, bucket)
            if not nodes or (not self.processes and nodes[0]["id"] not in mine):
                continue
            stats["buckets_checked"] += 1
            self.expire_bucket(bucket, part, nodes, now, stats)
        return stats

    def _due_buckets(self, now, stats):
        part, nodes = self.ring("account").get_nodes(expiring.EXPIRING_ACCOUNT)
        buckets = []
        marker = ""
        while True:
            page = direct_listing(
                nodes, part, expiring.EXPIRING_ACCOUNT, None, marker, PAGE, **self.timeouts
            )
            if page is None:
                self.logger.warning("no account server listed %s", expiring.EXPIRING_ACCOUNT)
                stats["errors"] += 1
                return buckets
            entries = page[0]
            for entry in entries:
                name = entry["name"]
                if not (name.isascii() and name.isdigit()):
                    continue
                if int(name) > now:
                    return buckets  # listed in order: the rest are later days
                buckets.append(name)
            if len(entries) < PAGE:
                return buckets
            marker = entries[-1]["name"]

    def _mine(self, row_name):
        if not self.processes:
            return True
        digest = hashlib.md5(row_name.encode("utf-8"), usedforsecurity=False).digest()
        return int.from_bytes(digest[:4], "big") % self.processes == self.process

    def expire_bucket(self, bucket, part, nodes, now, stats):
        """Expire the due rows of one queue container, and drop it once its day is done."""
        account = expiring.EXPIRING_ACCOUNT
        marker = ""
        while True:
            page = direct_listing(nodes, part, account, bucket, marker, PAGE, **self.timeouts)
            if page is None:
                self.logger.warning("no container server listed %s/%s", account, bucket)
                stats["errors"] += 1
                return
            entries = page[0]
            pile = Pile(self.concurrency)
            finished = len(entries) < PAGE
            for entry in entries:
                try:
                    delete_at = expiring.parse_entry(entry["name"])[0]
                except ValueError:
                    self.logger.error("not a queue row: %s/%s", bucket, entry["name"])
                    stats["errors"] += 1
                    continue
                if delete_at > now:
                    finished = True  # rows list in time order: the rest are not due
                    break
                if self._mine(entry["name"]):
                    pile.spawn(self.expire_row, bucket, part, nodes, entry)
            for outcome in pile:
                if isinstance(outcome, Exception):
                    self.logger.error("expiring a row of %s: %r", bucket, outcome)
                    outcome = "failures"
                stats[outcome] += 1
                if outcome in ("objects_expired", "stale_rows"):
                    stats["rows_removed"] += 1
            if finished:
                break
            marker = entries[-1]["name"]
        if now >= expiring.bucket_end(bucket) and self._delete_bucket(bucket, part, nodes):
            stats["buckets_deleted"] += 1

    def expire_row(self, bucket, part, nodes, entry):
        """Delete one row's object, then the row; the name of the counter it adds to."""
        delete_at, account, container, obj = expiring.parse_entry(entry["name"])
        policy = expiring.policy_of(entry.get("content_type"))
        opart, onodes = self.ring(object_ring_name(policy)).get_nodes(account, container, obj)
        cpart, cnodes = self.ring("container").get_nodes(account, container)
        headers = {
            "X-Timestamp": Timestamp(delete_at).internal,
            "X-If-Delete-At": str(delete_at),
            "X-Backend-Storage-Policy-Index": str(policy),
        }
        statuses = direct_delete_everywhere(
            onodes,
            opart,
            (account, container, obj),
            headers,
            ("Container", cnodes, cpart),
            **self.timeouts,
        )
        deleted = sum(1 for s in statuses if s is not None and 200 <= s < 300)
        settled = deleted + sum(1 for s in statuses if s in SETTLED)
        if settled < len(onodes) // 2 + 1:
            self.logger.info(
                "/%s/%s/%s not expired yet (statuses %s)", account, container, obj, statuses
            )
            return "failures"
        self._remove_row(bucket, part, nodes, entry["name"])
        return "objects_expired" if deleted else "stale_rows"

    def _remove_row(self, bucket, part, nodes, row_name):
        headers = expiring.row_headers("DELETE", Timestamp.now(), 0)
        for node in nodes:
            direct_request(
                node,
                "DELETE",
                part,
                (expiring.EXPIRING_ACCOUNT, bucket, row_name),
                headers,
                **self.timeouts,
            )

    def _delete_bucket(self, bucket, part, nodes):
        apart, anodes = self.ring("account").get_nodes(expiring.EXPIRING_ACCOUNT)
        statuses = direct_delete_everywhere(
            nodes,
            part,
            (expiring.EXPIRING_ACCOUNT, bucket),
            {"X-Timestamp": Timestamp.now().internal},
            ("Account", anodes, apart),
            **self.timeouts,
        )
        good = sum(1 for s in statuses if s is not None and (200 <= s < 300 or s == 404))
        return good >= len(nodes) // 2 + 1
