"""The account replicator: keeps every replica of each account database the same.

All the work is ``common.db_replicator``; this names the database kind and its ring,
and keeps a deleted account until the reaper has emptied it.
"""

from account_server.broker import AccountBroker
from common.db_replicator import DatabaseReplicator


class AccountReplicator(DatabaseReplicator):
    """One pass (``run_once``) of account database replication."""

    name = "account-replicator"
    broker_class = AccountBroker
    server_type = "account"
    ring_name = "account"

    def reclaimable(self, broker, info):
        """A deleted account goes only once the reaper has removed its containers."""
        return info["container_count"] == 0 and super().reclaimable(broker, info)
