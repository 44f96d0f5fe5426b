"""Reading a report.html back (edge.report): its figures, their embedded images and number tables."""
from __future__ import annotations

import base64
import hashlib
import json
from html.parser import HTMLParser
from pathlib import Path


class ReportParser(HTMLParser):
    """Each <section class="figure">: its attributes, the embedded image's bytes and its table rows."""

    def __init__(self):
        super().__init__()
        self.figures: list[dict] = []
        self.external: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_head = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if key in a and not a[key].startswith(("data:", "#")):
                self.external.append(a[key])
        if tag == "link" or tag == "script" and "src" in a:
            self.external.append(str(a))
        if tag == "section" and a.get("class") == "figure":
            self.figures.append({**a, "rows": [], "images": []})
        elif tag == "img" and self.figures:
            self.figures[-1]["images"].append(base64.b64decode(a["src"].split(",", 1)[1]))
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "thead":
            self._in_head = False
        elif tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if not self._in_head and self.figures:
                self.figures[-1]["rows"].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def read_report(folder: Path) -> ReportParser:
    """Parse folder/report.html; every figure it names has its PNG (the embedded bytes, the
    sha256 it states) and its JSON beside it, and it loads nothing from outside."""
    p = ReportParser()
    p.feed((Path(folder) / "report.html").read_text(encoding="utf-8"))
    assert p.external == []
    assert p.figures
    for f in p.figures:
        png = (Path(folder) / f["data-png"]).read_bytes()
        assert f["images"] == [png]
        assert hashlib.sha256(png).hexdigest() == f["data-sha256"]
        assert png.startswith(b"\x89PNG")
        f["json"] = json.loads((Path(folder) / f["data-json"]).read_text(encoding="utf-8"))
    return p


def number(cell: str) -> float | None:
    return None if cell == "-" else float(cell.replace(",", ""))
