"""Printable labels (issue 4, part 5): ``lambtrace.labels`` rendering and ``lambtrace labels print``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import segno

from helpers import Served, World
from lambtrace.cli import main
from lambtrace.labels import QR_ERROR, LabelInfo, label_png, label_svg, mass_kg, qr_code, sheet_pdf
from test_rejections_http import base, slaughtered

SVG = "{http://www.w3.org/2000/svg}"
FP = "0123456789abcdef0123456789abcdef"
SITE = "https://trace.example/"


def info(label: str = "l-0001", **kw: Any) -> LabelInfo:
    fields: dict[str, Any] = {"label": label, "cut": "羊腿", "net_mass_g": 2805, "packed": "2026-10-02",
                              "plant": "锡林浩特肉联厂", "banner": "苏尼特左旗 满都拉图镇", "site": SITE,
                              "fingerprint": FP}
    fields.update(kw)
    return LabelInfo(**fields)


def svg_qr_matrix(svg: str) -> list[list[int]]:
    """The QR modules drawn in a label SVG, read back from its path of runs."""
    root = ET.fromstring(svg)
    (group,) = [g for g in root.iter(SVG + "g") if g.get("class") == "qr"]
    n = int(group.get("data-modules", "0"))
    (path,) = list(group.iter(SVG + "path"))
    matrix = [[0] * n for _ in range(n)]
    for x, y, k in re.findall(r"M(\d+) (\d+)h(\d+)v1h-\3z", path.get("d", "")):
        for i in range(int(k)):
            assert matrix[int(y)][int(x) + i] == 0, "a module drawn twice"
            matrix[int(y)][int(x) + i] = 1
    return matrix


def pdf_page_count(pdf: bytes) -> int:
    return len(re.findall(rb"/Type /Page\b(?!s)", pdf))


# -- pure rendering -----------------------------------------------------------------------------


def test_link_and_mass() -> None:
    i = info()
    assert i.url == f"https://trace.example/l/l-0001#g={FP}"
    assert info(site="https://trace.example").url == i.url
    assert mass_kg(2805) == "2.81 kg" and mass_kg(2800) == "2.80 kg" and mass_kg(1_004) == "1.00 kg"
    for bad in ({"fingerprint": "ABC"}, {"fingerprint": FP[:31]}, {"site": "trace.example"}, {"label": ""}):
        with pytest.raises(ValueError):
            info(**bad)


def test_svg_is_xml_with_the_label_facts() -> None:
    svg = label_svg(info())
    root = ET.fromstring(svg)
    assert root.tag == SVG + "svg"
    assert root.get("width") == "90mm" and root.get("height") == "50mm"
    texts = [t.text or "" for t in root.iter(SVG + "text")]
    for needle in ("l-0001", "羊腿", "2.81 kg", "2026-10-02", "锡林浩特肉联厂", "苏尼特左旗 满都拉图镇",
                   "锡林郭勒羊肉 · 可追溯", "刮开涂层", "/ scratch"):
        assert any(needle in t for t in texts), (needle, texts)
    assert any("Xilingol" in t for t in texts)
    # The check code is never on the printed label: only its placeholder box.
    assert "check_commitment" not in svg


def test_svg_escapes_text() -> None:
    root = ET.fromstring(label_svg(info(plant="A & B <plant>")))
    assert any(t.text == "A & B <plant>" for t in root.iter(SVG + "text"))


def test_svg_qr_is_the_link() -> None:
    i = info()
    expected = segno.make(i.url, error=QR_ERROR, boost_error=False, micro=False)
    assert expected.error == "M"
    assert svg_qr_matrix(label_svg(i)) == [list(row) for row in expected.matrix]
    # A different fingerprint gives a different code.
    other = segno.make(info(fingerprint="f" * 32).url, error=QR_ERROR, boost_error=False, micro=False)
    assert svg_qr_matrix(label_svg(i)) != [list(row) for row in other.matrix]


def _png_size(png: bytes) -> tuple[int, int]:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_png_is_the_qr() -> None:
    i = info()
    png = label_png(i, 5)
    n = qr_code(i).symbol_size(border=4)[0]
    assert _png_size(png) == (n * 5, n * 5)
    with pytest.raises(ValueError):
        label_png(i, 0)
    zbar = shutil.which("zbarimg")
    if zbar:
        out = subprocess.run([zbar, "-q", "--raw", "-"], input=label_png(i, 8), capture_output=True, timeout=60)
        assert out.stdout.decode().strip() == i.url


def test_pdf_sheet_pages(tmp_path: Path) -> None:
    infos = [info(f"l-{n:04d}") for n in range(1, 13)]
    pdf = sheet_pdf(infos)
    assert pdf.startswith(b"%PDF-1.") and pdf.rstrip().endswith(b"%%EOF")
    assert pdf_page_count(pdf) == 2  # 12 labels, 10 per sheet
    assert pdf_page_count(sheet_pdf(infos, columns=2, rows=3)) == 2
    assert pdf_page_count(sheet_pdf(infos[:1])) == 1
    assert pdf_page_count(sheet_pdf([])) == 1
    with pytest.raises(ValueError):
        sheet_pdf(infos, columns=3)
    # The xref offsets point at the objects.
    xref = int(pdf.rsplit(b"startxref", 1)[1].split()[0])
    assert pdf[xref:xref + 4] == b"xref"
    entries = pdf[xref:].split(b"\n")[3:]
    for i, line in enumerate(e for e in entries if e.endswith(b" n ")):
        off = int(line[:10])
        assert pdf[off:].startswith(f"{i + 1} 0 obj".encode())
    # The label ids and the QR rectangles are in the (deflated) content streams.
    streams = [zlib.decompress(m) for m in re.findall(rb"stream\n(.*?)\nendstream", pdf, re.S)]
    first = streams[0].decode("ascii")
    assert "(l-0001) Tj" in first and "(l-0010) Tj" in first and "(l-0011)" not in first
    assert "(2.81 kg) Tj" in first and "(2026-10-02) Tj" in first
    assert "<7f8a817f>" in first  # 羊腿 in UCS-2
    assert first.count(" re") > 10 * 100
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm:
        (tmp_path / "s.pdf").write_bytes(pdf)
        subprocess.run([pdftoppm, "-r", "30", "-png", str(tmp_path / "s.pdf"), str(tmp_path / "p")],
                       check=True, capture_output=True, timeout=120)
        assert sorted(p.name for p in tmp_path.glob("p-*.png")) == ["p-1.png", "p-2.png"]
        zbar = shutil.which("zbarimg")
        if zbar:  # decode each label's QR from the rendered page, cropped to that label
            px = 200 / 25.4
            for n, lab in enumerate(infos[:10]):
                ox, oy = 15 + (n % 2) * 90, 23.5 + (n // 2) * 50
                crop = ["-x", str(int((ox + 50) * px)), "-y", str(int(oy * px)), "-W", str(int(40 * px)),
                        "-H", str(int(38 * px))]
                subprocess.run([pdftoppm, "-r", "200", "-f", "1", "-l", "1", *crop, "-png", "-singlefile",
                                str(tmp_path / "s.pdf"), str(tmp_path / f"q{n}")], check=True,
                               capture_output=True, timeout=120)
                out = subprocess.run([zbar, "-q", "--raw", str(tmp_path / f"q{n}.png")], capture_output=True,
                                     timeout=120)
                assert out.stdout.decode().strip() == lab.url


# -- the command against a served node ----------------------------------------------------------


@pytest.fixture
def labelled() -> Iterator[tuple[World, Served]]:
    w = World()
    s = Served(w.new_node())
    events = [*base(w), *slaughtered(w), w.label("plant", "c-1", [("l-0001", 2805), ("l-0002", 1500)])]
    results = s.submit(events)
    assert all(r["status"] == "accepted" for r in results), results
    s.commit()
    yield w, s
    s.close()


def test_cli_labels_print(tmp_path: Path, labelled: tuple[World, Served], capsys: pytest.CaptureFixture[str]) -> None:
    w, s = labelled
    out = tmp_path / "out"
    assert main(["labels", "print", "--url", s.url, "--site", SITE, "--label", "l-0001", "l-0002",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["l-0001.png", "l-0001.svg", "l-0002.png", "l-0002.svg",
                                                     "labels.pdf"]
    assert f"wrote {out / 'labels.pdf'}" in printed
    fp = w.genesis.hash.hex()[:32]
    summary = json.loads(printed.strip().splitlines()[-1])
    assert summary["genesis_fingerprint"] == fp
    link = f"https://trace.example/l/l-0001#g={fp}"
    assert summary["links"]["l-0001"] == link
    svg = (out / "l-0001.svg").read_text(encoding="utf-8")
    texts = [t.text or "" for t in ET.fromstring(svg).iter(SVG + "text")]
    assert "l-0001" in texts and "羊腿" in texts and "2.81 kg" in texts and "2026-10-02" in texts
    assert any("苏尼特左旗" in t for t in texts)  # the lamb's banner (152523)
    assert svg_qr_matrix(svg) == [list(r) for r in segno.make(link, error=QR_ERROR, boost_error=False).matrix]
    pdf = (out / "labels.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf_page_count(pdf) == 1

    # Only some formats; --from-demo takes labels, node and genesis from a demo.json.
    demo = tmp_path / "demo.json"
    demo.write_text(json.dumps({"labels": ["l-0002"], "nodes": [{"name": "league", "api": s.url}],
                                "genesis_hash": w.genesis.hash.hex()}), encoding="utf-8")
    assert main(["labels", "print", "--from-demo", str(demo), "--site", SITE, "--out", str(tmp_path / "d"),
                 "--format", "pdf"]) == 0
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["labels.pdf"]


def test_cli_labels_print_errors(tmp_path: Path, labelled: tuple[World, Served],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    w, s = labelled
    out = tmp_path / "out"
    args = ["labels", "print", "--site", SITE, "--out", str(out)]
    assert main([*args, "--url", s.url, "--label", "l-9999"]) == 2
    assert "error: not_found:" in capsys.readouterr().err
    assert not out.exists()  # nothing written when a label is missing

    assert main([*args, "--url", "http://127.0.0.1:9", "--label", "l-0001"]) == 2
    assert "error: unreachable:" in capsys.readouterr().err

    assert main([*args, "--url", s.url, "--label", "l-0001", "--format", "svg,gif"]) == 2
    assert "error: bad_argument:" in capsys.readouterr().err

    assert main([*args, "--url", s.url, "--label", "../etc/x"]) == 2
    assert "error: bad_label:" in capsys.readouterr().err

    assert main([*args, "--url", s.url, "--label", "l-0001", "--columns", "3"]) == 2
    assert "error: bad_argument:" in capsys.readouterr().err
    assert not out.exists()

    demo = tmp_path / "demo.json"
    demo.write_text(json.dumps({"labels": ["l-0001"], "nodes": [{"api": s.url}], "genesis_hash": "ab" * 32}),
                    encoding="utf-8")
    assert main([*args, "--from-demo", str(demo)]) == 2
    assert "error: genesis_mismatch:" in capsys.readouterr().err
