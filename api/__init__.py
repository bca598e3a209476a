"""The HTTP API (DESIGN §6): one Flask app factory over a running :class:`~node.node.Node`.

``create_app(node)`` wires the blueprints of :mod:`api.routes` (status, events, tags,
labels, blocks, log, actors/stats, health/metrics/openapi), the error handlers of
:mod:`api.errors`, and a :class:`~api.runtime.Runtime` holding what the views share:
the commit waiter (registered as a commit listener on the node, for ``?wait=1``), the
label prover and the HTTP counters for ``/metrics``.  JSON by default, bytes as
lowercase hex; canonical msgpack on ``Accept``/``Content-Type: application/msgpack``.
Text answers (pages, scripts, styles, JSON) are compressed for clients that accept it
(Flask-Compress: zstd, brotli, gzip or deflate), so the consumer page reaches a phone on
a weak rural link in about a third of the bytes; msgpack, backups and the dashboard's
event stream go as they are.

The app never runs the node: whoever builds the node starts (or drives) it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request
from flask_compress import Compress

from .errors import register_error_handlers
from .proofs import LabelProver
from .runtime import EXTENSION, Runtime

if TYPE_CHECKING:  # pragma: no cover
    from node.node import Node

__all__ = ["create_app"]

COMPRESSED_TYPES = ("text/html", "text/css", "text/javascript", "application/javascript", "application/json",
                    "image/svg+xml")
"""What the node compresses; never ``text/event-stream`` (each dashboard event must leave
at once) nor msgpack and backups (already dense)."""


def create_app(node: Node, *, config: dict[str, Any] | None = None) -> Flask:
    """A Flask app serving ``node``.

    ``config`` is merged into ``app.config``; besides Flask's own keys it reads
    ``peers`` (peer addresses shown by ``/v1/status``, default none) and ``role``
    (``validator``/``observer`` as configured; default: ``validator`` exactly when the
    node holds the key of a validator named in genesis).  ``MAX_CONTENT_LENGTH``
    defaults to ``node.limits.max_request_bytes``.
    """
    from .routes import BLUEPRINTS

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = node.limits.max_request_bytes
    app.config["COMPRESS_MIMETYPES"] = list(COMPRESSED_TYPES)
    app.config["COMPRESS_MIN_SIZE"] = 1024
    # static files are sent as streams: compress them too (gzip included, which is what
    # browsers offer over plain HTTP), answering If-None-Match with 304 as before
    app.config["COMPRESS_ALGORITHM_STREAMING"] = ["zstd", "br", "gzip", "deflate"]
    if config:
        app.config.update(config)
    Compress(app)
    rt = Runtime(
        node=node,
        prover=LabelProver(node.store, limits=node.limits),
        peers=[str(p) for p in app.config.get("peers") or []],
        role=app.config.get("role") or ("validator" if node.is_validator else "observer"),
    )
    node.commit_listeners.append(rt.waiter.notify)
    app.extensions[EXTENSION] = rt
    for bp in BLUEPRINTS:
        app.register_blueprint(bp)
    register_error_handlers(app)

    @app.after_request
    def _count(resp: Response) -> Response:
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        rt.http.add(rule, request.method, resp.status_code)
        return resp

    return app
