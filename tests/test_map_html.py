"""`map -o map.html`: one self-contained page. Without a browser: the embedded data parses back to
the map's points and tokens, hostile tokens cannot end the script or become markup, the CSP
hashes match, nothing points off the page. With headless Chromium (skipped when absent): the page
loads with no console error, draws every point where its coordinates say, shows a point's token
on hover and zooms with the wheel."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from embscope.display import escape, visible_spaces
from tests import untrusted as u
from tests.chromium import Page, find_chromium
from tests.helpers import run

HOSTILE = [
    "</script><img src=x onerror=alert(1)>",
    "<script>alert(2)</script>",
    "<!--",
    "]]>",
    "\"quote'apostrophe`backtick",
    "&amp;&lt;",
    "\u2028line\u2029para",
    "\u202eevil",
    "${alert(3)}",
    "\\u003c/script>",
    "a\x00b",
    "\x1b[31m",
]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A word-level tokenizer.json whose tokens are HOSTILE, beside a model with a row per token."""
    d = tmp_path_factory.mktemp("hostile-html")
    tokens = ["[UNK]", "plain", *HOSTILE]
    wte = u.save_word_level_model(d, tokens)
    return d, tokens, wte


class Elements(HTMLParser):
    """Every start tag (name, attributes) and the text of each <script> and <style>."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.scripts, self.styles, self._in = [], [], [], None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in = tag if tag in ("script", "style") else None
        if self._in:
            (self.scripts if tag == "script" else self.styles).append([dict(attrs), ""])

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in == "script":
            self.scripts[-1][1] += data
        elif self._in == "style":
            self.styles[-1][1] += data


def write_page(argv, capsys, tmp_path) -> tuple[str, str]:
    path = tmp_path / "map.html"
    code, out, err = run(["map", *argv, "-o", str(path)], capsys)
    assert (code, out) == (0, "") and err.endswith(f"wrote {path}\n"), err
    return str(path), path.read_text(encoding="utf-8")


def parts(page: str) -> tuple[Elements, dict]:
    p = Elements()
    p.feed(page)
    p.close()
    data = [text for attrs, text in p.scripts if attrs.get("type") == "application/json"]
    assert len(data) == 1
    return p, json.loads(data[0])


def test_data_parses_back(hostile, capsys, tmp_path):
    d, tokens, wte = hostile
    _, page = write_page(["--ids", "0:14", "-m", str(d)], capsys, tmp_path)
    _, doc, _ = run(["map", "--ids", "0:14", "-m", str(d), "-f", "json"], capsys)
    points = json.loads(doc)["points"]
    elements, data = parts(page)
    assert data["ids"] == list(range(14)) and data["id_name"] == "id"
    assert data["labels"] == [visible_spaces(escape(t.encode())) for t in tokens]
    np.testing.assert_allclose(data["points"], [[p["pc1"], p["pc2"]] for p in points], rtol=1e-6)
    assert data["highlight"] == [] and data["values"] is None and data["joined"] is False
    assert data["title"] == f"{d}: tokens 0..13"
    assert data["x_label"].startswith("pc1 (") and data["y_label"].startswith("pc2 (")


def test_hostile_tokens_stay_data(hostile, capsys, tmp_path):
    d, tokens, _ = hostile
    _, page = write_page(["--ids", "0:14", "-m", str(d)], capsys, tmp_path)
    elements, data = parts(page)
    # the page's own elements only: two scripts, one style, one canvas, no image, no handler
    names = [t for t, _ in elements.tags]
    assert names.count("script") == 2 and names.count("style") == 1 and "img" not in names
    assert not any(k.startswith("on") for _, attrs in elements.tags for k in attrs)
    data_block = page[page.index('id="embscope-data">'):page.index("</script>")]
    assert not re.search(r"[<>&]", data_block[len('id="embscope-data">'):])
    assert page.count("</script>") == 2
    assert all(ch.isascii() for ch in data_block)
    assert "</script><img" in "".join(data["labels"])  # the token itself, kept as text


def test_content_security_policy(gpt2_map, capsys, tmp_path):
    _, page = write_page(["--positions", "-m", gpt2_map], capsys, tmp_path)
    elements, _ = parts(page)
    csp = [attrs["content"] for t, attrs in elements.tags if t == "meta" and attrs.get("http-equiv")][0]
    code = [text for attrs, text in elements.scripts if "type" not in attrs][0]
    style = elements.styles[0][1]

    def digest(text):
        return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()

    assert csp == (f"default-src 'none'; script-src '{digest(code)}'; style-src '{digest(style)}'; img-src 'none';"
                   " connect-src 'none'; base-uri 'none'; form-action 'none'")
    outside = page.replace(page[page.index('id="embscope-data">'):page.index("</script>")], "")
    assert "://" not in outside and " src=" not in outside and " href=" not in outside


@pytest.fixture(scope="module")
def gpt2_map(tmp_path_factory):
    from tests.builders import save_gpt2

    d = tmp_path_factory.mktemp("gpt2-html")
    save_gpt2(d, n_embd=32, n_positions=64, seed=4)
    return str(d)


def test_positions_page(gpt2_map, capsys, tmp_path):
    _, page = write_page(["--positions", "-m", gpt2_map], capsys, tmp_path)
    _, data = parts(page)
    assert data["ids"] == list(range(64)) and data["labels"] == [str(i) for i in range(64)]
    assert data["id_name"] == "position" and data["joined"] is True
    assert data["values"] == list(range(64)) and data["value_range"] == [0, 63]


# --- in a browser ---------------------------------------------------------------------------------

CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (apt install chromium)")


@pytest.fixture
def browser(tmp_path):
    page = Page(CHROMIUM, str(tmp_path / "profile"))
    yield page
    page.close()


def screen_position(browser: Page, data: dict, i: int) -> tuple[float, float]:
    """Where the page must draw point i: the view that fits every point at one scale, 40 px of
    margin, centred on the points' bounding box, y up."""
    left, top, w, h = browser.js("(function(){var b=document.getElementById('plot').getBoundingClientRect();"
                                 "return [b.left, b.top, b.width, b.height];})()")
    pts = np.array(data["points"])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    s = min((w - 80) / max(hi[0] - lo[0], 1e-12), (h - 80) / max(hi[1] - lo[1], 1e-12))
    cx, cy = (lo + hi) / 2
    return left + w / 2 + (pts[i, 0] - cx) * s, top + h / 2 - (pts[i, 1] - cy) * s


@needs_chromium
def test_in_chromium(browser, gpt2_map, capsys, tmp_path):
    path, page = write_page(["--near", "king", "-k", "40", "-m", gpt2_map], capsys, tmp_path)
    _, data = parts(page)
    browser.open(f"file://{path}")
    plot = "document.getElementById('plot')"
    assert browser.js(f"{plot}.dataset.points") == "41"
    assert int(browser.js(f"{plot}.dataset.labels")) >= 10
    x, y = screen_position(browser, data, 0)  # the query, drawn red
    pixel = browser.js(f"(function(){{var c={plot}, b=c.getBoundingClientRect(), r=window.devicePixelRatio||1;"
                       f"return Array.from(c.getContext('2d').getImageData(Math.round(({x}-b.left)*r),"
                       f" Math.round(({y}-b.top)*r), 1, 1).data);}})()")
    assert pixel[:3] == [228, 26, 28]
    browser.mouse("mouseMoved", x, y)
    assert browser.js("document.getElementById('tip').textContent").startswith("\u2423king\nid 5822   (")
    before = float(browser.js(f"{plot}.dataset.scale"))
    browser.mouse("mouseWheel", x, y, deltaX=0, deltaY=-400)
    assert float(browser.js(f"{plot}.dataset.scale")) == pytest.approx(before * np.exp(0.6))
    browser.mouse("mouseMoved", x, y)  # zoomed around the pointer: the query is still under it
    assert browser.js("document.getElementById('tip').textContent").startswith("\u2423king\n")
    shot = browser.screenshot()
    assert shot.startswith(b"\x89PNG")
    if os.environ.get("EMBSCOPE_SCREENSHOT"):  # to look at: EMBSCOPE_SCREENSHOT=/tmp/map.png pytest ...
        with open(os.environ["EMBSCOPE_SCREENSHOT"], "wb") as f:
            f.write(shot)
    assert browser.problems() == []
    assert browser.requests() == [f"file://{path}"]


@needs_chromium
def test_hostile_page_in_chromium(browser, hostile, capsys, tmp_path):
    d, tokens, _ = hostile
    path, page = write_page(["--ids", "0:14", "-m", str(d)], capsys, tmp_path)
    _, data = parts(page)
    browser.open(f"file://{path}")
    assert browser.js("document.getElementById('plot').dataset.points") == "14"
    assert browser.js("document.images.length") == 0 and browser.js("document.scripts.length") == 2
    for i in (2, 3):  # hover the script-like tokens: shown as text
        x, y = screen_position(browser, data, i)
        browser.mouse("mouseMoved", x, y)
        assert browser.js("document.getElementById('tip').textContent").split("\n")[0] == data["labels"][i]
        assert browser.js("document.getElementById('tip').children.length") == 0
    assert not [e for e in browser.events if e.get("method") == "Page.javascriptDialogOpening"]  # no alert()
    assert browser.problems() == []
    assert browser.requests() == [f"file://{path}"]
