"""``GET /static/v/<build>/<file>``: the pages' static files under a version of them all.

``build`` names the content of every file in ``api/static`` (a hash computed when the app
is made).  The pages link their scripts and stylesheets this way (the template global
``asset``), and the scripts' relative imports (``./verify.js``) resolve within the same
version, so a browser may keep each file for a year (``immutable``) and a phone scanning
its second pack asks for none of them again: a new node version is a new ``build``, and
the pages (``no-store``) always name the current one.  A request for another ``build``
(a page from before an upgrade) gets today's file revalidated every time, never cached
under the old name.  ``/static/<file>`` stays as it was (``no-cache``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from flask import Blueprint, Response, current_app, url_for
from flask.blueprints import BlueprintSetupState

bp = Blueprint("assets", __name__)

EXTENSION = "lambtrace.assets_build"
IMMUTABLE = "public, max-age=31536000, immutable"


def build_of(folder: str | Path) -> str:
    """16 hex characters of SHA-256 over every file's name and bytes in ``folder``."""
    h = hashlib.sha256()
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix().encode()
        data = path.read_bytes()
        h.update(len(name).to_bytes(4, "big") + name + len(data).to_bytes(8, "big") + data)
    return h.hexdigest()[:16]


@bp.record_once
def _setup(state: BlueprintSetupState) -> None:
    app = state.app
    build = build_of(app.static_folder or "")
    app.extensions[EXTENSION] = build
    app.jinja_env.globals["asset"] = lambda filename: url_for("assets.versioned", build=build, filename=filename)


@bp.get("/static/v/<build>/<path:filename>")
def versioned(build: str, filename: str) -> Response:
    resp = current_app.send_static_file(filename)
    if build == current_app.extensions[EXTENSION]:
        resp.headers["Cache-Control"] = IMMUTABLE
    return resp
