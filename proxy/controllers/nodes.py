"""Which storage nodes to ask, in what order: primaries, then handoffs.

``NodeIter`` walks a partition's primary nodes in ring order and then its handoffs
(most distinct first), skipping nodes the error limiter has put aside, and stops after
``request_node_count`` nodes in all. Replicated and erasure-coded controllers share it.
"""


def parse_request_node_count(value):
    """``"2 * replicas"`` (a multiple of the replica count) or a plain integer.

    Returns a function of the replica count, so it follows ring changes.
    """
    text = str(value).strip().lower().replace(" ", "")
    if text.endswith("*replicas"):
        factor = int(text[: -len("*replicas")])
        return lambda replicas: factor * replicas
    if text == "replicas":
        return lambda replicas: replicas
    number = int(text)
    return lambda replicas: number


class NodeIter:
    """Primaries (in order), then handoffs, minus error-limited nodes, at most ``limit``.

    ``primaries`` is the list of primary node dicts; ``handoffs`` an iterable of handoff
    node dicts (consumed lazily, as ``Ring.get_more_nodes`` is a generator). Each node
    is yielded at most once; ``skipped`` counts nodes passed over for being limited.
    """

    def __init__(self, primaries, handoffs, limit, error_limiter=None):
        self.primaries = list(primaries)
        self._handoffs = iter(handoffs)
        self.limit = max(int(limit), len(self.primaries))
        self.error_limiter = error_limiter
        self.yielded = 0
        self.skipped = 0
        self._gen = self._walk()

    def _usable(self, node):
        if self.error_limiter is not None and self.error_limiter.is_limited(node):
            self.skipped += 1
            return False
        return True

    def _walk(self):
        for node in self.primaries:
            if self.yielded >= self.limit:
                return
            if self._usable(node):
                self.yielded += 1
                yield node
        for node in self._handoffs:
            if self.yielded >= self.limit:
                return
            if self._usable(node):
                self.yielded += 1
                yield node

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._gen)

    def take(self, count):
        """Up to ``count`` more nodes as a list (fewer when the walk runs out)."""
        nodes = []
        if count <= 0:
            return nodes
        for node in self:
            nodes.append(node)
            if len(nodes) >= count:
                break
        return nodes


def ring_node_iter(ring, part, limit_fn, error_limiter=None, primaries=None):
    """A NodeIter over ``ring``'s nodes for ``part`` (primaries looked up unless given)."""
    if primaries is None:
        primaries = ring.get_part_nodes(part)
    limit = limit_fn(len(primaries))
    return NodeIter(primaries, ring.get_more_nodes(part), limit, error_limiter)
