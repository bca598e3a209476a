"""``GET /v1/backup``: a consistent snapshot of the node's whole store (docs/backup.md).

Backups hold everything the node stores, so only loopback clients may ask unless the
app's config ``backup_allow`` (or the environment variable ``LAMBTRACE_BACKUP_ALLOW``)
lists more client addresses, comma-separated, or ``*`` for any.  A request that came
through the node's trusted reverse proxy is never a loopback client, whatever its
``X-Forwarded-For`` says (a proxy on the same machine connects from loopback): only an
address ``backup_allow`` lists, or ``*``, is served through it.  The answer streams
(chunked) from one LevelDB snapshot while the node goes on committing.
"""

from __future__ import annotations

import ipaddress
import os

from flask import Blueprint, Response, current_app, request

from node.backup import snapshot_stream

from ..errors import ApiError
from ..runtime import runtime

bp = Blueprint("backup", __name__)


def _allowed(addr: str | None, *, via_proxy: bool) -> bool:
    if not addr:
        return False
    try:
        if not via_proxy and ipaddress.ip_address(addr.split("%", 1)[0]).is_loopback:
            return True
    except ValueError:
        pass
    conf = current_app.config.get("backup_allow")
    if conf is None:
        conf = os.environ.get("LAMBTRACE_BACKUP_ALLOW", "")
    allow = [a.strip() for a in conf.split(",")] if isinstance(conf, str) else [str(a) for a in conf]
    return "*" in allow or addr in allow


@bp.get("/v1/backup")
def get_backup() -> Response:
    if not _allowed(request.remote_addr, via_proxy=bool(request.environ.get("lambtrace.via_proxy"))):
        raise ApiError("forbidden", "backups are served to loopback clients only (see docs/backup.md)",
                       status=403)
    stream = snapshot_stream(runtime().node.store.kv)
    h = stream.header
    resp = Response(stream, mimetype="application/octet-stream", direct_passthrough=True)
    resp.headers["Content-Disposition"] = f'attachment; filename="{h.chain}-{h.height}.ltbackup"'
    resp.headers["X-LambTrace-Chain"] = h.chain
    resp.headers["X-LambTrace-Height"] = str(h.height)
    resp.headers["X-LambTrace-Log-Size"] = str(h.log_size)
    resp.headers["X-LambTrace-Log-Root"] = h.log_root.hex()
    resp.headers["Cache-Control"] = "no-store"
    return resp
