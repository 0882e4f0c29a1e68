"""Quorum arithmetic: how many nodes must agree, and which answer a set of nodes gives.

A write succeeds when a majority of the nodes it went to accept it; a read of a
missing thing is a 404 only when enough nodes say so. Pure functions, no I/O.
"""

from collections import Counter


def quorum_size(node_count):
    """A strict majority: 2 of 3, 2 of 2, 3 of 4, 1 of 1."""
    return node_count // 2 + 1


def status_class(status):
    """200 -> 2, 404 -> 4, ..."""
    return status // 100


def best_status(statuses, quorum):
    """The answer a set of node statuses adds up to, or 503 when there is no quorum.

    Statuses are grouped by class (2xx, 3xx, 4xx); the first class that holds a quorum
    wins and its most common status (the highest on a tie) is the answer. A quorum of
    5xx (or of nothing) is never an answer: the client sees 503.
    """
    by_class = Counter(status_class(s) for s in statuses)
    for klass in (2, 3, 4):
        if by_class[klass] >= quorum:
            counts = Counter(s for s in statuses if status_class(s) == klass)
            return max(counts, key=lambda s: (counts[s], s))
    return 503


def has_quorum(statuses, quorum, klass=2):
    """True when at least ``quorum`` statuses are of ``klass`` (2 for success)."""
    return sum(1 for s in statuses if status_class(s) == klass) >= quorum


def delete_status(statuses, quorum):
    """A DELETE's answer: 404s count as success once some node did delete the thing.

    A copy that is already gone is the outcome the client wants, so when any node
    answered 2xx, 2xx plus 404 reaching quorum is 204; otherwise the usual best status.
    """
    successes = sum(1 for s in statuses if status_class(s) == 2)
    missing = sum(1 for s in statuses if s == 404)
    if successes and successes + missing >= quorum:
        return 204
    return best_status(statuses, quorum)
