"""The container replicator: keeps every replica of each container database the same.

All the work is ``common.db_replicator``; this names the database kind and its ring.
Options (``[container-replicator]`` over ``[container]`` and ``[DEFAULT]``): see
``DatabaseReplicator`` and ``etc/storage.conf``.
"""

from common.db_replicator import DatabaseReplicator
from container_server.broker import ContainerBroker


class ContainerReplicator(DatabaseReplicator):
    """One pass (``run_once``) of container database replication."""

    name = "container-replicator"
    broker_class = ContainerBroker
    server_type = "container"
    ring_name = "container"
