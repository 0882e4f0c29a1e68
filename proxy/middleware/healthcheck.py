"""``GET /healthcheck``: a load balancer's cheap "is this proxy up?".

Answers 200 ``OK`` without going further down the pipeline. If ``disable_path`` names a
file that exists, it answers 503 ``DISABLED BY FILE`` instead, so an operator can take a
proxy out of rotation with ``touch`` before maintenance.
"""

import os

from webob import Response

from proxy.middleware import check_options, filter_conf

OPTIONS = {"disable_path"}
PATH = "/healthcheck"


class HealthCheck:
    """WSGI filter answering ``/healthcheck`` itself, passing everything else on."""

    def __init__(self, app, conf=None):
        conf = conf or {}
        self.app = app
        self.disable_path = conf.get("disable_path", "").strip()

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != PATH:
            return self.app(environ, start_response)
        if self.disable_path and os.path.exists(self.disable_path):
            resp = Response(status=503, body=b"DISABLED BY FILE", content_type="text/plain")
        else:
            resp = Response(status=200, body=b"OK", content_type="text/plain")
        return resp(environ, start_response)


def filter_factory(global_conf, local_conf):
    """``[filter:healthcheck]``: option ``disable_path``."""
    check_options(local_conf, OPTIONS)
    conf = filter_conf(global_conf, local_conf)

    def make_filter(app):
        return HealthCheck(app, conf)

    return make_filter
