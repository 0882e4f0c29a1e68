"""The outermost filter: a transaction id for every request, and a 500 for every surprise.

It gives the request its transaction id (``environ["haneul.trans_id"]``, also put in the
``X-Trans-Id`` request header so the proxy app and its backend requests reuse it) and
adds ``X-Trans-Id`` / ``X-Openstack-Request-Id`` to the response. A client's own
``X-Trans-Id`` is not trusted, as in Swift; ``X-Trans-Id-Extra`` (up to 32 characters)
is appended to the new id to help a client find its requests in the logs.

An ``HTTPError`` raised from below becomes its own response; any other exception becomes
a 500 that names the transaction, logged once with its traceback. An exception while the
body streams can no longer change the status: it is logged and raised again, so the
server drops the connection rather than send a short body as if it were whole.
"""

import logging
import sys
from urllib.parse import quote

from webob import Request

from common.http import HTTPError, error_response, new_trans_id
from proxy.middleware import check_options, filter_conf
from proxy.middleware.body import PassThroughBody

OPTIONS = {"trans_id_suffix"}
EXTRA_MAX = 32


class CatchErrors:
    """WSGI filter: transaction ids and the one place unexpected errors become 500s."""

    def __init__(self, app, conf=None, logger=None):
        conf = conf or {}
        self.app = app
        self.logger = logger or logging.getLogger("haneul.proxy")
        self.trans_id_suffix = conf.get("trans_id_suffix", "").strip()

    def trans_id_for(self, environ):
        """The request's transaction id: one set further out, else a new one."""
        trans_id = environ.get("haneul.trans_id")
        if not trans_id:
            extra = environ.get("HTTP_X_TRANS_ID_EXTRA", "")
            suffix = self.trans_id_suffix + (quote(extra[:EXTRA_MAX], safe="") if extra else "")
            trans_id = new_trans_id(suffix)
        return trans_id

    def __call__(self, environ, start_response):
        trans_id = self.trans_id_for(environ)
        environ["haneul.trans_id"] = trans_id
        environ["HTTP_X_TRANS_ID"] = trans_id
        started = []

        def tagged_start_response(status, headers, exc_info=None):
            started.append(status)
            headers = [(k, v) for k, v in headers if k.lower() != "x-trans-id"]
            headers += [("X-Trans-Id", trans_id), ("X-Openstack-Request-Id", trans_id)]
            return start_response(status, headers, exc_info)

        try:
            app_iter = self.app(environ, tagged_start_response)
        except HTTPError as err:
            resp = err.response(Request(environ))
            exc_info = sys.exc_info()
        except Exception:
            req = Request(environ)
            self.logger.exception(
                "unexpected error on %s %s (transaction %s)", req.method, req.path, trans_id
            )
            resp = error_response(500, f"internal error, transaction {trans_id}", req)
            exc_info = sys.exc_info()
        else:
            return _GuardedBody(app_iter, self.logger, environ, trans_id)
        # If the app below had already started its response, WSGI wants exc_info with the
        # second start_response (the server re-raises it if headers have gone out).
        if not started:
            exc_info = None

        def replacing_start_response(status, headers, _exc_info=None):
            return tagged_start_response(status, headers, exc_info)

        return resp(environ, replacing_start_response)


class _GuardedBody(PassThroughBody):
    """Passes a response body through, logging an exception raised while it streams."""

    def __init__(self, app_iter, logger, environ, trans_id):
        super().__init__(app_iter)
        self.logger = logger
        self.environ = environ
        self.trans_id = trans_id

    def __next__(self):
        try:
            return super().__next__()
        except StopIteration:
            raise
        except Exception:
            self.logger.exception(
                "error while sending the body of %s %s (transaction %s)",
                self.environ.get("REQUEST_METHOD"),
                self.environ.get("PATH_INFO"),
                self.trans_id,
            )
            raise


def filter_factory(global_conf, local_conf):
    """``[filter:catch_errors]``: options ``trans_id_suffix``."""
    check_options(local_conf, OPTIONS)
    conf = filter_conf(global_conf, local_conf)

    def make_filter(app):
        return CatchErrors(app, conf)

    return make_filter
