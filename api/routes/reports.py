"""``GET /v1/reports/premium``: the traced-lamb premium audit (issue 6 item 4).

Per plant, cooperative and herder pseudonym: traced lambs bought, carcass kg, price paid
against market, premium paid against due (1 yuan/kg of carcass) and shortfalls, as
computed by :mod:`lambtrace.premium` over the committed events (cached by height).
JSON by default; ``?format=csv`` for spreadsheets (the columns of
:data:`lambtrace.premium.CSV_COLUMNS`).  Averages are decimals, so msgpack is not offered.
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, request

from lambtrace.premium import csv_text

from .. import alerts
from ..errors import ApiError
from ..runtime import runtime

bp = Blueprint("reports", __name__)


@bp.get("/v1/reports/premium")
def get_premium() -> Response:
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "csv"):
        raise ApiError("bad_param", "format is json or csv")
    report = alerts.premium(runtime().node.store)
    if fmt == "csv":
        resp = Response(csv_text(report), mimetype="text/csv")
        resp.headers["Content-Disposition"] = f'attachment; filename="premium-{report["height"]}.csv"'
        return resp
    return Response(json.dumps(report, ensure_ascii=False, separators=(",", ":")) + "\n",
                    mimetype="application/json")
