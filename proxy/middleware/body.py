"""A response body that a filter passes on from the app below it, chunk by chunk.

A filter that watches a body (to log it, count it...) must still hand the server every
chunk as it comes and close the app's body when the server closes its own: WSGI says
the server calls ``close``, and the app below relies on it to release its connections.
``PassThroughBody`` does just that; a filter subclasses it to look at what goes by.
"""


class PassThroughBody:
    """The app's body, iterated only once the server starts on it; ``close`` closes it."""

    def __init__(self, app_iter):
        self.app_iter = app_iter
        self.iterator = None

    def __iter__(self):
        return self

    def __next__(self):
        if self.iterator is None:
            self.iterator = iter(self.app_iter)
        return next(self.iterator)

    def close(self):
        close = getattr(self.app_iter, "close", None)
        if close is not None:
            close()
