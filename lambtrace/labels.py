"""Printable pack labels (issue 4, part 5): pure rendering, no I/O.

One label is a 90 × 50 mm card: the heading 锡林郭勒羊肉 · 可追溯 with a small English line,
the label id, cut, net mass, pack date, plant and banner of origin, the QR code linking
to the consumer page (``<site>/l/<label>#g=<genesis fingerprint>``) and an empty box
where the scratch-off check code is applied (the code itself is never rendered here).

The layout is computed once as a list of primitives (:class:`Rect`, :class:`Text`,
:class:`Qr`) in millimetres, then written out as

- :func:`label_svg`: a hand-written SVG (the QR as one ``<path>``, module by module);
- :func:`sheet_pdf`: a hand-written PDF, A4 pages of ``columns × rows`` labels. ASCII
  text uses the built-in Helvetica/Courier; Chinese text uses the Adobe-GB1 font
  ``STSong-Light`` (``UniGB-UCS2-H``), which PDF readers supply themselves (it is not
  embedded, so a reader without CJK font support shows those strings blank);
- :func:`label_png`: the QR code alone as PNG (segno's own writer), for label printers
  that take a bitmap QR and lay out the text themselves. A full-label PNG needs a text
  rasteriser (Pillow), which the project does not depend on.
"""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote
from xml.sax.saxutils import escape

import segno

from ledger.genesis import FINGERPRINT_HEX, FINGERPRINT_MAX_HEX

__all__ = [
    "A4_H_MM",
    "A4_W_MM",
    "LABEL_H_MM",
    "LABEL_W_MM",
    "QR_ERROR",
    "LabelInfo",
    "Qr",
    "Rect",
    "Text",
    "label_png",
    "label_svg",
    "layout",
    "mass_kg",
    "qr_code",
    "sheet_pdf",
]

LABEL_W_MM = 90.0
LABEL_H_MM = 50.0
A4_W_MM = 210.0
A4_H_MM = 297.0
QR_ERROR = "m"
"""Error correction level of the QR code (M: 15 % of the codewords may be lost)."""
QR_BORDER = 2
"""Quiet zone in modules, drawn white inside the QR box (the label's margin adds to it)."""

HEADING = "锡林郭勒羊肉 · 可追溯"
SUBHEADING = "Xilingol lamb, traceable: scan to check"
SCRATCH_ZH = "刮开涂层"
SCRATCH_EN = "scratch"

_FINGERPRINT = re.compile(rf"[0-9a-f]{{{FINGERPRINT_HEX},{FINGERPRINT_MAX_HEX}}}")
_MM_TO_PT = 72.0 / 25.4


def mass_kg(grams: int) -> str:
    """Grams as kilograms with two decimals, rounded half up in integers (the consumer
    page's ``mass_kg`` does the same, so the label and the page show one string)."""
    centi = (grams + 5) // 10
    return f"{centi // 100}.{centi % 100:02d} kg"


@dataclass(frozen=True)
class LabelInfo:
    """What one printed label shows."""

    label: str
    cut: str
    net_mass_g: int
    packed: str
    plant: str
    banner: str
    site: str
    """Base URL of the trace site, e.g. ``https://trace.example/`` (trailing slash optional)."""
    fingerprint: str
    """Genesis fingerprint: the first 32 (up to 64) lowercase hex chars of the genesis hash."""

    def __post_init__(self) -> None:
        if not self.label:
            raise ValueError("a label needs an id")
        if not _FINGERPRINT.fullmatch(self.fingerprint):
            raise ValueError(f"the genesis fingerprint must be 32 to 64 lowercase hex chars, not {self.fingerprint!r}")
        if not re.match(r"https?://[^/\s]+", self.site):
            raise ValueError(f"the trace site must be an http(s) URL, not {self.site!r}")

    @property
    def url(self) -> str:
        """The link in the QR code: ``<site>/l/<label>#g=<fingerprint>``."""
        return f"{self.site.rstrip('/')}/l/{quote(self.label, safe='')}#g={self.fingerprint}"

    @property
    def short_url(self) -> str:
        """The link without scheme and fragment, printed for people without a scanner."""
        return self.url.split("#", 1)[0].split("://", 1)[1]


def qr_code(info: LabelInfo) -> segno.QRCode:
    """The label's QR code: ``info.url`` at error level M, never a Micro QR."""
    return segno.make(info.url, error=QR_ERROR, boost_error=False, micro=False)


# -- layout ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    stroke: float = 0.3
    """Line width in mm (0: none)."""
    fill: str | None = None
    """Fill grey as ``#rrggbb`` (None: unfilled)."""
    dash: bool = False
    radius: float = 0.0


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    """Baseline, from the top of the label."""
    size: float
    """Font size in mm."""
    text: str
    bold: bool = False
    mono: bool = False


@dataclass(frozen=True)
class Qr:
    x: float
    y: float
    size: float
    """Side of the QR box in mm, quiet zone included."""
    matrix: tuple[tuple[int, ...], ...]
    """Modules, row by row, 1 = dark (no quiet zone)."""
    border: int = QR_BORDER

    @property
    def module(self) -> float:
        return self.size / (len(self.matrix) + 2 * self.border)


Primitive = Rect | Text | Qr


def layout(info: LabelInfo) -> list[Primitive]:
    """The label as primitives in mm, origin top-left of the 90 × 50 mm card."""
    matrix = tuple(tuple(int(bool(m)) for m in row) for row in qr_code(info).matrix)
    left = 4.0
    rows: list[tuple[str, str, str, bool]] = [
        ("标签", "Label", info.label, True),
        ("部位", "Cut", info.cut, False),
        ("净重", "Net", mass_kg(info.net_mass_g), False),
        ("包装", "Packed", info.packed, False),
        ("工厂", "Plant", info.plant, False),
        ("产地", "Origin", info.banner, False),
    ]
    out: list[Primitive] = [
        Rect(0.4, 0.4, LABEL_W_MM - 0.8, LABEL_H_MM - 0.8, stroke=0.3, radius=2.0),
        Text(left, 8.0, 4.6, HEADING, bold=True),
        Text(left, 12.2, 2.3, SUBHEADING),
        Rect(left, 14.0, 47.0, 0, stroke=0.2),
    ]
    y = 18.6
    # Chinese and ASCII in separate runs: the PDF writes each in its own font.
    for zh, en, value, mono in rows:
        out.append(Text(left, y, 2.2, zh))
        out.append(Text(left + 5.0, y, 2.2, en))
        out.append(Text(left + 17.0, y, 3.0 if mono else 2.8, value, bold=mono, mono=mono))
        y += 4.6
    out.append(Text(left, 46.6, 2.0, info.short_url, mono=True))
    qr_x, qr_y, qr_size = 55.0, 2.5, 32.0
    out.append(Rect(qr_x, qr_y, qr_size, qr_size, stroke=0, fill="#ffffff"))
    out.append(Qr(qr_x, qr_y, qr_size, matrix))
    # The scratch-off box: the check code is printed and coated separately.
    box_y = qr_y + qr_size + 1.5
    out.append(Rect(qr_x + 1.0, box_y, qr_size - 2.0, LABEL_H_MM - box_y - 2.5, stroke=0.3, fill="#e6e6e6",
                    dash=True, radius=1.0))
    out.append(Text(qr_x + 3.0, box_y + 4.4, 2.6, SCRATCH_ZH, bold=True))
    out.append(Text(qr_x + 14.0, box_y + 4.4, 2.6, f"/ {SCRATCH_EN}", bold=True))
    out.append(Text(qr_x + 3.0, box_y + 8.2, 2.0, "验证码"))
    out.append(Text(qr_x + 9.6, box_y + 8.2, 2.0, "check code"))
    return out


def _runs(matrix: Sequence[Sequence[int]]) -> Iterable[tuple[int, int, int]]:
    """Horizontal runs of dark modules: ``(x, y, length)``."""
    for y, row in enumerate(matrix):
        x = 0
        while x < len(row):
            if row[x]:
                start = x
                while x < len(row) and row[x]:
                    x += 1
                yield start, y, x - start
            else:
                x += 1


# -- SVG ------------------------------------------------------------------------------------

_SANS = "'Noto Sans CJK SC','Source Han Sans SC','PingFang SC','Microsoft YaHei',sans-serif"
_MONO = "'DejaVu Sans Mono',Menlo,Consolas,monospace"


def _n(v: float) -> str:
    return f"{v:.3f}".rstrip("0").rstrip(".")


def _svg_items(items: Iterable[Primitive]) -> list[str]:
    out: list[str] = []
    for p in items:
        if isinstance(p, Rect):
            attrs = [f'x="{_n(p.x)}" y="{_n(p.y)}" width="{_n(p.w)}" height="{_n(p.h)}"']
            if p.h == 0:  # a rule
                out.append(f'<line x1="{_n(p.x)}" y1="{_n(p.y)}" x2="{_n(p.x + p.w)}" y2="{_n(p.y)}" '
                           f'stroke="#000" stroke-width="{_n(p.stroke)}"/>')
                continue
            if p.radius:
                attrs.append(f'rx="{_n(p.radius)}"')
            attrs.append(f'fill="{p.fill or "none"}"')
            if p.stroke:
                attrs.append(f'stroke="#000" stroke-width="{_n(p.stroke)}"')
            if p.dash:
                attrs.append('stroke-dasharray="1 0.6"')
            out.append(f"<rect {' '.join(attrs)}/>")
        elif isinstance(p, Text):
            family = _MONO if p.mono else _SANS
            weight = ' font-weight="bold"' if p.bold else ""
            out.append(f'<text x="{_n(p.x)}" y="{_n(p.y)}" font-size="{_n(p.size)}" '
                       f'font-family="{family}"{weight}>{escape(p.text)}</text>')
        else:
            n = len(p.matrix)
            d = "".join(f"M{x} {y}h{k}v1h-{k}z" for x, y, k in _runs(p.matrix))
            m = p.module
            out.append(f'<g class="qr" data-modules="{n}" data-border="{p.border}" '
                       f'transform="translate({_n(p.x + p.border * m)} {_n(p.y + p.border * m)}) scale({m:.6f})">'
                       f'<path fill="#000" shape-rendering="crispEdges" d="{d}"/></g>')
    return out


def label_svg(info: LabelInfo) -> str:
    """One label as a standalone SVG document, 90 × 50 mm, user units in mm."""
    body = "\n".join(_svg_items(layout(info)))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(LABEL_W_MM)}mm" height="{_n(LABEL_H_MM)}mm" '
        f'viewBox="0 0 {_n(LABEL_W_MM)} {_n(LABEL_H_MM)}" data-label="{escape(info.label, {chr(34): "&quot;"})}">\n'
        f"<title>{escape(info.label)} · {escape(info.cut)}</title>\n"
        f'<rect width="{_n(LABEL_W_MM)}" height="{_n(LABEL_H_MM)}" fill="#fff"/>\n'
        f"{body}\n</svg>\n"
    )


# -- PNG ------------------------------------------------------------------------------------


def label_png(info: LabelInfo, scale: int = 10) -> bytes:
    """The label's QR code as PNG (``scale`` pixels per module, 4-module quiet zone).

    Only the QR: the full label with its text is the SVG or the PDF (rasterising text
    needs Pillow, which this project does not depend on)."""
    if scale < 1:
        raise ValueError("scale must be at least 1")
    buf = io.BytesIO()
    qr_code(info).save(buf, kind="png", scale=scale, border=4)
    return buf.getvalue()


# -- PDF ------------------------------------------------------------------------------------


def _pdf_ascii(s: str) -> str:
    return "(" + s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def _pdf_ucs2(s: str) -> str:
    data = s.encode("utf-16-be", errors="replace")
    return "<" + data.hex() + ">"


def _grey(color: str) -> str:
    v = int(color[1:3], 16) / 255
    return f"{v:.3f}"


def _pdf_items(items: Iterable[Primitive], ox: float, oy: float) -> list[str]:
    """Content-stream operators for one label whose top-left corner is at (ox, oy) mm
    from the page's top-left; the CTM is in mm with y up from the page's bottom."""
    ops: list[str] = []

    def y_of(y: float) -> float:
        return A4_H_MM - (oy + y)

    for p in items:
        if isinstance(p, Rect):
            if p.h == 0:
                ops.append(f"{_n(p.stroke)} w [] 0 d {_n(ox + p.x)} {_n(y_of(p.y))} m "
                           f"{_n(ox + p.x + p.w)} {_n(y_of(p.y))} l S")
                continue
            paint = "B" if p.fill and p.stroke else ("f" if p.fill else "S")
            fill = f"{_grey(p.fill)} g " if p.fill else ""
            dash = "[1 0.6] 0 d " if p.dash else "[] 0 d "
            ops.append(f"{fill}0 G {_n(p.stroke or 0.01)} w {dash}{_n(ox + p.x)} {_n(y_of(p.y + p.h))} "
                       f"{_n(p.w)} {_n(p.h)} re {paint} 0 g")
        elif isinstance(p, Text):
            if p.text.isascii():
                font = "/F4" if p.mono else ("/F2" if p.bold else "/F1")
                string = _pdf_ascii(p.text)
                mode = "0 Tr"
            else:
                # U+00B7 is missing from many GB1 fonts; the katakana middle dot is not.
                font, string = "/F3", _pdf_ucs2(p.text.replace(" · ", "\u30fb"))
                mode = "2 Tr 0.08 w" if p.bold else "0 Tr"  # fill + stroke: a faux bold
            ops.append(f"BT {font} {_n(p.size)} Tf {mode} {_n(ox + p.x)} {_n(y_of(p.y))} Td {string} Tj ET")
        else:
            m = p.module
            x0, y0 = ox + p.x + p.border * m, oy + p.y + p.border * m
            rects = [f"{x0 + x * m:.3f} {A4_H_MM - (y0 + (y + 1) * m):.3f} {k * m:.3f} {m:.3f} re"
                     for x, y, k in _runs(p.matrix)]
            ops.append("0 g " + "\n".join(rects) + " f")
    return ops


def _pdf_document(pages: list[bytes]) -> bytes:
    """A PDF 1.4 file with one content stream per A4 page and the four fonts F1–F4."""
    objects: list[bytes] = []  # object i+1

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled in below
    pages_id = add(b"")
    fonts = {
        "F1": add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"),
        "F2": add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>"),
        "F4": add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Courier-Bold /Encoding /WinAnsiEncoding >>"),
    }
    descriptor = add(
        b"<< /Type /FontDescriptor /FontName /STSong-Light /Flags 6 /FontBBox [-25 -254 1000 880] "
        b"/ItalicAngle 0 /Ascent 880 /Descent -120 /CapHeight 880 /StemV 93 >>")
    cid = add(
        b"<< /Type /Font /Subtype /CIDFontType0 /BaseFont /STSong-Light "
        b"/CIDSystemInfo << /Registry (Adobe) /Ordering (GB1) /Supplement 2 >> "
        b"/FontDescriptor " + str(descriptor).encode() + b" 0 R /DW 1000 /W [1 95 500] >>")
    fonts["F3"] = add(b"<< /Type /Font /Subtype /Type0 /BaseFont /STSong-Light-UniGB-UCS2-H "
                      b"/Encoding /UniGB-UCS2-H /DescendantFonts [" + str(cid).encode() + b" 0 R] >>")
    font_dict = " ".join(f"/{name} {oid} 0 R" for name, oid in sorted(fonts.items())).encode()
    w, h = _n(A4_W_MM * _MM_TO_PT).encode(), _n(A4_H_MM * _MM_TO_PT).encode()
    kids: list[int] = []
    for content in pages:
        data = zlib.compress(content, 9)
        stream = add(b"<< /Length " + str(len(data)).encode() + b" /Filter /FlateDecode >>\nstream\n"
                     + data + b"\nendstream")
        kids.append(add(b"<< /Type /Page /Parent " + str(pages_id).encode() + b" 0 R /MediaBox [0 0 " + w + b" "
                        + h + b"] /Resources << /Font << " + font_dict + b" >> >> /Contents "
                        + str(stream).encode() + b" 0 R >>"))
    objects[catalog - 1] = b"<< /Type /Catalog /Pages " + str(pages_id).encode() + b" 0 R >>"
    objects[pages_id - 1] = (b"<< /Type /Pages /Kids [" + b" ".join(f"{k} 0 R".encode() for k in kids)
                             + b"] /Count " + str(len(kids)).encode() + b" >>")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets: list[int] = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root {catalog} 0 R "
            f"/Info << /Producer (LambTrace labels) >> >>\nstartxref\n{xref}\n%%EOF\n").encode()
    return bytes(out)


def sheet_pdf(infos: Sequence[LabelInfo], *, columns: int = 2, rows: int = 5) -> bytes:
    """The labels on A4 sheets, ``columns × rows`` per page, centred, in reading order
    (each card's rounded border is its cut line); as many pages as needed (one empty
    page for no labels)."""
    if columns < 1 or rows < 1:
        raise ValueError("columns and rows must be at least 1")
    if columns * LABEL_W_MM > A4_W_MM or rows * LABEL_H_MM > A4_H_MM:
        raise ValueError(f"{columns} × {rows} labels of {LABEL_W_MM:g} × {LABEL_H_MM:g} mm do not fit on A4")
    per_page = columns * rows
    mx = (A4_W_MM - columns * LABEL_W_MM) / 2
    my = (A4_H_MM - rows * LABEL_H_MM) / 2
    scale = _n(_MM_TO_PT)
    pages: list[bytes] = []
    chunks = [list(infos[i:i + per_page]) for i in range(0, len(infos), per_page)] or [[]]
    for chunk in chunks:
        ops = [f"{scale} 0 0 {scale} 0 0 cm 0 g 0 G"]
        for i, info in enumerate(chunk):
            ox = mx + (i % columns) * LABEL_W_MM
            oy = my + (i // columns) * LABEL_H_MM
            ops.append("q")
            ops.extend(_pdf_items(layout(info), ox, oy))
            ops.append("Q")
        pages.append("\n".join(ops).encode("ascii"))
    return _pdf_document(pages)
