"""The consumer page ``GET /l/<label>`` (DESIGN §6) and its server-side fallback verdict.

A consumer scans the QR code on a pack: ``https://<trace site>/l/<label>#g=<genesis
fingerprint>``.  The node answers with a phone-first page telling the lamb's story in
Chinese (``?lang=en``, or the page's switch, for English), rendered from the node's own
summary (:func:`api.queries.label_summary`) so that it reads at once.  The verdict is
not the node's to give: ``static/label.js`` fetches the label's proof bundle
(``/v1/labels/<label>/proof``) and the genesis document it references by hash
(``/v1/genesis``), and ``static/verify.js`` checks both *in the browser* against the
fingerprint in the link's fragment (which never reaches the server), then
checks that the story the node rendered is the story the signed events tell, shows the
verified story, and writes ``verified`` or ``failed`` into the verdict element's
``data-verdict`` (``pending`` until then).  The page loads nothing from elsewhere: the
scripts and the stylesheet are this package's ``static/`` files.

``GET /l/<label>/verdict`` is the fallback for browsers whose WebCrypto lacks Ed25519:
the node runs ``verify.verify_label`` over its own bundle.  That verdict is only as good
as the node, and the page says so when it uses it.

Every string the page shows, in both languages, is in :data:`STRINGS`: the template
renders the request's language and the script switches without a reload.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, Response, render_template, request, url_for

from ledger import codec, schema
from ledger.errors import LedgerError
from verify import verify_label

from .. import params, queries
from ..encoding import respond
from ..errors import ApiError
from ..runtime import runtime

bp = Blueprint("pages", __name__)

LANGS = ("zh", "en")

_BANNERS_EN = {
    "152500": "Xilingol League",
    "152501": "Erenhot",
    "152502": "Xilinhot",
    "152522": "Abag Banner",
    "152523": "Sonid Left Banner",
    "152524": "Sonid Right Banner",
    "152525": "East Ujimqin Banner",
    "152526": "West Ujimqin Banner",
    "152527": "Taibus Banner",
    "152528": "Xianghuang Banner",
    "152529": "Zhengxiangbai Banner",
    "152530": "Zhenglan Banner",
    "152531": "Duolun County",
}

STRINGS: dict[str, dict[str, str]] = {
    "zh": {
        "title": "羊肉溯源 · 锡林郭勒",
        "brand": "锡林郭勒羊肉溯源",
        "switch": "English",
        "switch_label": "Switch to English",
        "verdict.pending": "正在核验…",
        "verdict.pending_detail": "您的手机正在核对这份羊肉的账本记录与签名。",
        "verdict.verified": "记录真实可信",
        "verdict.verified_detail": "您的浏览器已逐一核验本标签背后的每条签名记录，以及验证节点对账本的共识确认。",
        "verdict.failed": "核验未通过",
        "verdict.failed_detail": "请勿相信本页显示的信息。请保留包装，并联系商家或当地市场监管部门（12315）。",
        "verdict.server": "您的浏览器不支持 Ed25519 签名核验：这部分签名采用服务器的核验结论，而非在本机核验。",
        "anchor.link": "已与二维码中的创世指纹核对。",
        "anchor.server": "链接中没有创世指纹，无法与独立的信任锚核对；本次核验使用的是服务器提供的创世哈希。",
        "recall.title": "召回警告",
        "recall.body": "该产品已被召回，请勿食用。",
        "recall.target.lamb": "羊只",
        "recall.target.carcass": "胴体",
        "recall.target.label": "本标签",
        "product.label": "标签号",
        "field.cut": "部位",
        "field.net_mass": "净含量",
        "field.packed": "包装日期",
        "story.heading": "这只羊的故事",
        "story.unverified": "以下信息尚未核验",
        "story.failed": "以下信息未通过核验",
        "role.trace_office": "盟追溯办",
        "role.banner_office": "旗县农牧局",
        "role.cooperative": "合作社",
        "role.herder_agent": "牧户代理",
        "role.plant": "屠宰企业",
        "role.regulator": "监管部门",
        "step.pasture": "草原牧场",
        "field.banner": "旗县",
        "field.sumu": "苏木（镇）",
        "field.born": "出生日期",
        "field.breed": "品种",
        "field.sex": "性别",
        "sex.male": "公羔",
        "sex.female": "母羔",
        "step.tagging": "佩戴电子耳标",
        "field.tagged": "佩标日期",
        "field.cooperative": "合作社",
        "field.ear_tag": "耳标号",
        "step.custody": "运输交接",
        "custody.shipped": "发运",
        "custody.received": "接收",
        "step.slaughter": "屠宰检疫",
        "field.plant": "屠宰企业",
        "field.slaughtered": "屠宰日期",
        "field.quarantine": "检疫合格证号",
        "field.carcass_mass": "胴体重",
        "step.packing": "分割包装",
        "scan.heading": "扫码记录",
        "tech.heading": "技术细节",
        "tech.checked_by": "核验方",
        "tech.checked_by.browser": "本机浏览器",
        "tech.checked_by.browser_js": "本机浏览器（Ed25519 由页面脚本核验）",
        "tech.checked_by.server": "服务器（本机不支持 Ed25519）",
        "tech.chain": "链标识",
        "tech.block": "检查点区块",
        "tech.log_size": "账本记录数",
        "tech.genesis": "创世哈希",
        "tech.fingerprint": "二维码指纹",
        "tech.none": "无",
        "tech.events": "已核验记录",
        "tech.signatures": "已核验签名",
        "tech.label_event": "标签记录",
        "notfound.title": "查无此标签",
        "notfound.detail": "账本上没有这个标签号。它可能是伪造的，请联系商家或当地市场监管部门（12315）。",
        "noscript": "本页需要启用 JavaScript，才能在您的手机上核验记录。",
        "footer": "锡林郭勒盟羊肉质量安全追溯 · 每条记录均由联盟链各方签名",
        "reason.fetch": "无法获取证明数据",
        "reason.crypto": "浏览器缺少加密功能（需要 HTTPS）",
        "reason.fingerprint": "二维码中的创世指纹格式错误",
        "reason.other_chain": "服务器的账本不是二维码所指的账本",
        "reason.anchor": "账本的信任锚不一致",
        "reason.commit": "验证节点的共识确认无效",
        "reason.signature": "有签名无效",
        "reason.inclusion": "有记录不在已确认的账本中",
        "reason.malformed": "证明数据格式错误",
        "reason.label": "证明属于另一个标签",
        "reason.signer": "签名者的身份未获证明",
        "reason.story": "记录不完整或互相矛盾",
        "reason.summary": "页面显示的信息与签名记录不符",
        "reason.server": "服务器核验未通过",
        "reason.server_unavailable": "本机无法核验 Ed25519 签名，服务器也未给出核验结论",
        "reason.not_found": "账本上没有这个标签",
        "reason.other": "核验出错",
    },
    "en": {
        "title": "Lamb provenance · Xilingol",
        "brand": "Xilingol Lamb Trace",
        "switch": "中文",
        "switch_label": "切换到中文",
        "verdict.pending": "Checking…",
        "verdict.pending_detail": "Your phone is checking this pack's ledger records and signatures.",
        "verdict.verified": "Authentic record",
        "verdict.verified_detail": (
            "Your browser checked every signed record behind this label and the validators' commit on the ledger."
        ),
        "verdict.failed": "Verification failed",
        "verdict.failed_detail": (
            "Do not trust what this page shows. Keep the pack and contact the seller or the market regulator (12315)."
        ),
        "verdict.server": (
            "Your browser cannot check Ed25519 signatures: for those, this verdict is the server's, not your phone's."
        ),
        "anchor.link": "Checked against the genesis fingerprint in the QR code.",
        "anchor.server": (
            "The link carries no genesis fingerprint, so the page cannot check against an independent anchor; "
            "it used the genesis hash the server gave."
        ),
        "recall.title": "Recall warning",
        "recall.body": "This product has been recalled. Do not eat it.",
        "recall.target.lamb": "Lamb",
        "recall.target.carcass": "Carcass",
        "recall.target.label": "This label",
        "product.label": "Label",
        "field.cut": "Cut",
        "field.net_mass": "Net mass",
        "field.packed": "Packed on",
        "story.heading": "This lamb's story",
        "story.unverified": "Not verified yet",
        "story.failed": "Failed verification",
        "role.trace_office": "Trace office",
        "role.banner_office": "Banner office",
        "role.cooperative": "Cooperative",
        "role.herder_agent": "Herder agent",
        "role.plant": "Plant",
        "role.regulator": "Regulator",
        "step.pasture": "Pasture",
        "field.banner": "Banner",
        "field.sumu": "Sumu",
        "field.born": "Born",
        "field.breed": "Breed",
        "field.sex": "Sex",
        "sex.male": "Male",
        "sex.female": "Female",
        "step.tagging": "Electronic ear tag",
        "field.tagged": "Tagged on",
        "field.cooperative": "Cooperative",
        "field.ear_tag": "Ear tag",
        "step.custody": "Custody",
        "custody.shipped": "Shipped",
        "custody.received": "Received",
        "step.slaughter": "Slaughter and inspection",
        "field.plant": "Plant",
        "field.slaughtered": "Slaughtered on",
        "field.quarantine": "Quarantine certificate",
        "field.carcass_mass": "Carcass mass",
        "step.packing": "Cut and packed",
        "scan.heading": "Scans",
        "tech.heading": "Technical details",
        "tech.checked_by": "Checked by",
        "tech.checked_by.browser": "this browser",
        "tech.checked_by.browser_js": "this browser (Ed25519 in the page's JavaScript)",
        "tech.checked_by.server": "the server (no Ed25519 here)",
        "tech.chain": "Chain",
        "tech.block": "Checkpoint block",
        "tech.log_size": "Ledger records",
        "tech.genesis": "Genesis hash",
        "tech.fingerprint": "QR fingerprint",
        "tech.none": "none",
        "tech.events": "Records verified",
        "tech.signatures": "Signatures verified",
        "tech.label_event": "Label record",
        "notfound.title": "No such label",
        "notfound.detail": (
            "This label id is not on the ledger. It may be counterfeit: contact the seller or the market "
            "regulator (12315)."
        ),
        "noscript": "This page needs JavaScript to check the records on your phone.",
        "footer": "Xilingol League lamb traceability · every record is signed on a permissioned ledger",
        "reason.fetch": "Could not fetch the proof",
        "reason.crypto": "The browser lacks WebCrypto (HTTPS is needed)",
        "reason.fingerprint": "The QR code's genesis fingerprint is malformed",
        "reason.other_chain": "The server's ledger is not the one the QR code names",
        "reason.anchor": "The ledger's trust anchor does not match",
        "reason.commit": "The validators' commit is invalid",
        "reason.signature": "A signature is invalid",
        "reason.inclusion": "A record is not in the committed ledger",
        "reason.malformed": "The proof is malformed",
        "reason.label": "The proof is for another label",
        "reason.signer": "A signer's enrolment is not proven",
        "reason.story": "The records are incomplete or contradict each other",
        "reason.summary": "What the page shows differs from the signed records",
        "reason.server": "The server's verification failed",
        "reason.server_unavailable": "This browser cannot check Ed25519 signatures and the server gave no verdict",
        "reason.not_found": "This label is not on the ledger",
        "reason.other": "Verification error",
    },
}
for _code, _name in schema.COUNTIES.items():
    STRINGS["zh"][f"banner.{_code}"] = _name
    STRINGS["en"][f"banner.{_code}"] = _BANNERS_EN[_code]

_CHINA = dt.timezone(dt.timedelta(hours=8))
PAGE_HEADERS = {
    # Everything the page needs comes from this node; the fragment (#g=...) never leaves
    # the browser, and nothing else may be loaded, framed or sent elsewhere.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def date_in_china(ms: int | None) -> str:
    """``YYYY-MM-DD`` of an instant in China Standard Time (UTC+8), as the page shows it."""
    if ms is None:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, _CHINA).date().isoformat()


def mass_kg(grams: int | None) -> str:
    """Grams as kilograms with two decimals, rounded half up in integers (label.js does
    the same, so both render one string)."""
    if grams is None:
        return ""
    centi = (grams + 5) // 10
    return f"{centi // 100}.{centi % 100:02d} kg"


def _lang() -> str:
    asked = request.args.get("lang", "")
    return asked if asked in LANGS else "zh"


def _page(status: int, **context: Any) -> Response:
    lang = _lang()
    context.setdefault("summary", None)
    data = {
        "label": context["label"],
        "lang": lang,
        "strings": STRINGS,
        "summary": schema.to_json(context["summary"]) if context["summary"] is not None else None,
        "proof_url": context.get("proof_url"),
        "genesis_url": context.get("genesis_url"),
        "verdict_url": context.get("verdict_url"),
    }
    html = render_template(
        "label.html", lang=lang, t=STRINGS[lang], page_data=data, date=date_in_china, kg=mass_kg, **context
    )
    return Response(html, status=status, mimetype="text/html", headers=PAGE_HEADERS)


@bp.get("/l/<label>")
def label_page(label: str) -> Response:
    rt = runtime()
    store = rt.node.store
    try:
        lid = params.ident(label, "label")
        summary = queries.label_summary(store, lid, rt.node.limits)
    except ApiError:
        return _page(400, label=label, found=False)
    except LedgerError as exc:
        if exc.code != "not_found":
            raise
        return _page(404, label=label, found=False)
    coop = summary["lamb"].get("cooperative")
    coop_record = store.state_get(f"a/{coop}") if coop else None
    return _page(
        200,
        label=lid,
        found=True,
        summary=summary,
        cooperative_name=(coop_record or {}).get("name") or coop or "",
        proof_url=url_for("labels.get_label_proof", label=lid),
        genesis_url=url_for("genesis.get_genesis"),
        verdict_url=url_for("pages.label_verdict", label=lid),
    )


@bp.get("/l/<label>/verdict")
def label_verdict(label: str) -> Response:
    rt = runtime()
    bundle = rt.prover.bundle(params.ident(label, "label"))
    return respond(server_verdict(bundle, rt.node.store.genesis.encode()))


def server_verdict(bundle: dict[str, Any], genesis: bytes) -> dict[str, Any]:
    """The node's own verdict on a bundle it built (:func:`verify.verify_label`):
    ``{"verdict": "verified" | "failed", "code", "reason", "checked_by": "server"}``.
    Never raises for a bundle that does not verify."""
    try:
        verify_label(codec.encode(bundle), genesis, label=bundle["label"])
    except LedgerError as exc:
        return {"verdict": "failed", "code": exc.code, "reason": exc.message, "checked_by": "server"}
    return {"verdict": "verified", "code": None, "reason": None, "checked_by": "server"}
