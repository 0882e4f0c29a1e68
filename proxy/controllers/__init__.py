"""The proxy's controllers: one per kind of thing a client names (account, container,
object), plus the small helpers they share (nodes, quorum, streaming, info)."""
