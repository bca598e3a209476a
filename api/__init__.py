"""The HTTP API (DESIGN §6): one Flask app factory over a running :class:`~node.node.Node`.

``create_app(node)`` wires the blueprints of :mod:`api.routes` (status, events, tags,
labels, blocks, log, actors/stats, health/metrics/openapi), the error handlers of
:mod:`api.errors`, and a :class:`~api.runtime.Runtime` holding what the views share:
the commit waiter (registered as a commit listener on the node, for ``?wait=1``), the
label prover and the HTTP counters for ``/metrics``.  JSON by default, bytes as
lowercase hex; canonical msgpack on ``Accept``/``Content-Type: application/msgpack``.

The app never runs the node: whoever builds the node starts (or drives) it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request

from .errors import register_error_handlers
from .proofs import LabelProver
from .runtime import EXTENSION, Runtime

if TYPE_CHECKING:  # pragma: no cover
    from node.node import Node

__all__ = ["create_app"]


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
    if config:
        app.config.update(config)
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
