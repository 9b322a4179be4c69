"""A scatter plot as one self-contained HTML file: the points and their labels as JSON inside the
page, drawn on a canvas by a small script in the page itself (no network, no library).

Zoom with the wheel (around the pointer), pan by dragging, double-click (or 0) to fit every point
again; hovering a point shows its label, id and coordinates; the search box picks out the points
whose label holds its text. Labels are drawn beside their points where they do not overlap.

Labels are untrusted bytes (tokens). They reach the page only as JSON strings inside a
`<script type="application/json">` element, with `<`, `>` and `&` written as \\u escapes (so no
`</script>` can end the element) and everything else as ASCII escapes; the script reads them
with JSON.parse and draws them with the canvas's fillText or puts them in the page with
textContent, never as markup. A Content-Security-Policy allows only this page's own script and
style (by hash) and no connection anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embscope.render.colors import viridis
from embscope.render.scatter import HIGHLIGHT_RGB, POINT_RGB

DATA_ID = "embscope-data"

_STYLE = """
html, body { margin: 0; height: 100%; font: 14px system-ui, sans-serif; color: #222; background: #fff; }
body { display: flex; flex-direction: column; }
header { padding: 8px 12px 4px; }
h1 { font-size: 16px; margin: 0 0 4px; font-weight: 600; }
#bar { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; color: #555; font-size: 12px; }
#find { font: inherit; padding: 2px 6px; width: 14em; }
#plot { flex: 1; width: 100%; min-height: 200px; display: block; cursor: crosshair; }
#tip { position: fixed; pointer-events: none; background: #fff; border: 1px solid #999;
       padding: 3px 6px; font: 12px ui-monospace, monospace; white-space: pre; display: none; }
footer { padding: 2px 12px 6px; color: #555; font-size: 12px; }
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("embscope-data").textContent);
  var canvas = document.getElementById("plot"), ctx = canvas.getContext("2d");
  var tip = document.getElementById("tip"), find = document.getElementById("find"),
      found = document.getElementById("found");
  var pts = data.points, n = pts.length, hi = {}, match = {}, hover = -1, view = null, drag = null;
  data.highlight.forEach(function (i) { hi[i] = true; });
  var order = data.highlight.concat(pts.map(function (_, i) { return i; }).filter(function (i) { return !hi[i]; }));
  var PAD = 40, FONT = "11px ui-monospace, monospace";

  function bounds() {
    var b = [Infinity, Infinity, -Infinity, -Infinity];
    pts.forEach(function (p) {
      b[0] = Math.min(b[0], p[0]); b[1] = Math.min(b[1], p[1]);
      b[2] = Math.max(b[2], p[0]); b[3] = Math.max(b[3], p[1]);
    });
    return b;
  }
  var box = bounds();

  function fit() {  // one scale for both axes, every point inside the margins
    var w = canvas.clientWidth - 2 * PAD, h = canvas.clientHeight - 2 * PAD;
    var sx = w / Math.max(box[2] - box[0], 1e-12), sy = h / Math.max(box[3] - box[1], 1e-12);
    return { cx: (box[0] + box[2]) / 2, cy: (box[1] + box[3]) / 2, s: Math.min(sx, sy) };
  }
  function sx(x) { return canvas.clientWidth / 2 + (x - view.cx) * view.s; }
  function sy(y) { return canvas.clientHeight / 2 - (y - view.cy) * view.s; }
  function ux(px) { return view.cx + (px - canvas.clientWidth / 2) / view.s; }
  function uy(py) { return view.cy - (py - canvas.clientHeight / 2) / view.s; }

  function color(i) {
    if (hi[i]) return data.highlight_color;
    if (!data.values) return data.point_color;
    var v = data.values, t = (v[i] - data.value_range[0]) / ((data.value_range[1] - data.value_range[0]) || 1);
    var x = Math.max(0, Math.min(1, t)) * (data.palette.length - 1), k = Math.min(Math.floor(x), data.palette.length - 2);
    var f = x - k, a = data.palette[k], b = data.palette[k + 1];
    return "rgb(" + [0, 1, 2].map(function (j) { return Math.round(a[j] * (1 - f) + b[j] * f); }).join(",") + ")";
  }

  function ticks(lo, hi, count) {
    var raw = (hi - lo) / count, mag = Math.pow(10, Math.floor(Math.log10(raw))), step = 10 * mag;
    [1, 2, 5, 10].some(function (m) { if (m * mag >= raw) { step = m * mag; return true; } return false; });
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi; v += step) out.push(Math.abs(v) < step / 1e6 ? 0 : v);
    return { values: out, digits: Math.max(0, -Math.floor(Math.log10(step))) };
  }

  function axes(w, h) {
    ctx.strokeStyle = "#e6e6e6"; ctx.fillStyle = "#666"; ctx.lineWidth = 1; ctx.font = "11px system-ui";
    var tx = ticks(ux(0), ux(w), Math.max(2, w / 110)), ty = ticks(uy(h), uy(0), Math.max(2, h / 80));
    tx.values.forEach(function (v) {
      var x = Math.round(sx(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, h); ctx.stroke();
      ctx.fillText(v.toFixed(tx.digits), x + 3, h - 4);
    });
    ty.values.forEach(function (v) {
      var y = Math.round(sy(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(w, y); ctx.stroke();
      ctx.fillText(v.toFixed(ty.digits), 3, y - 3);
    });
    ctx.fillStyle = "#333"; ctx.font = "12px system-ui";
    var xl = data.x_label + " \u2192", yl = "\u2191 " + data.y_label;
    ctx.fillText(xl, w - ctx.measureText(xl).width - 6, h - 18);
    ctx.fillText(yl, 36, 14);
  }

  function labels(w, h) {  // greedy: highlighted, found, then in order; no label over another
    var cell = 6, cols = Math.ceil(w / cell), rows = Math.ceil(h / cell), used = new Uint8Array(cols * rows);
    var first = Object.keys(match).map(Number).filter(function (i) { return !hi[i]; });
    var tried = 0, shown = 0;
    ctx.font = FONT; ctx.textBaseline = "middle";
    first.concat(order.filter(function (i) { return !match[i] || hi[i]; })).some(function (i) {
      var label = data.labels[i];
      if (!label) return false;
      if (label.length > 24) label = label.slice(0, 23) + "\u2026";  // the tooltip has it whole
      var x = sx(pts[i][0]) + 5, y = sy(pts[i][1]);
      if (x < 0 || x > w || y < 0 || y > h) return false;
      if (++tried > 5000) return true;
      var tw = ctx.measureText(label).width;
      var c0 = Math.floor(x / cell), c1 = Math.floor((x + tw) / cell), r0 = Math.floor((y - 6) / cell), r1 = Math.floor((y + 6) / cell);
      if (c1 >= cols || r0 < 0 || r1 >= rows) return false;
      for (var r = r0; r <= r1; r++) for (var c = c0; c <= c1; c++) if (used[r * cols + c]) return false;
      for (r = r0; r <= r1; r++) for (c = c0; c <= c1; c++) used[r * cols + c] = 1;
      ctx.fillStyle = hi[i] ? data.highlight_color : match[i] ? "#000" : "#333";
      ctx.fillText(label, x, y);
      shown++;
      return false;
    });
    return shown;
  }

  function draw() {
    var ratio = window.devicePixelRatio || 1, w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
      canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio);
    }
    if (!view) view = fit();
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    axes(w, h);
    if (data.joined) {
      ctx.strokeStyle = "#bbbbbb"; ctx.beginPath();
      pts.forEach(function (p, i) { if (i) ctx.lineTo(sx(p[0]), sy(p[1])); else ctx.moveTo(sx(p[0]), sy(p[1])); });
      ctx.stroke();
    }
    var drawn = 0, r = n > 5000 ? 2 : 3.5;
    order.slice().reverse().forEach(function (i) {  // highlighted points last: on top
      var x = sx(pts[i][0]), y = sy(pts[i][1]);
      if (x < -r || x > w + r || y < -r || y > h + r) return;
      ctx.fillStyle = color(i); ctx.beginPath(); ctx.arc(x, y, hi[i] || match[i] ? r + 2 : r, 0, 2 * Math.PI); ctx.fill();
      if (match[i]) { ctx.strokeStyle = "#000"; ctx.stroke(); }
      drawn++;
    });
    if (hover >= 0) {
      ctx.strokeStyle = "#000"; ctx.lineWidth = 2; ctx.beginPath();
      ctx.arc(sx(pts[hover][0]), sy(pts[hover][1]), r + 4, 0, 2 * Math.PI); ctx.stroke(); ctx.lineWidth = 1;
    }
    canvas.dataset.points = String(drawn);
    canvas.dataset.labels = String(labels(w, h));
    canvas.dataset.scale = String(view.s);
  }

  function nearest(px, py) {
    var best = -1, bd = 100;  // within 10 pixels
    for (var i = 0; i < n; i++) {
      var dx = sx(pts[i][0]) - px, dy = sy(pts[i][1]) - py, d = dx * dx + dy * dy;
      if (d < bd) { bd = d; best = i; }
    }
    return best;
  }

  function showTip(i, ev) {
    if (i < 0) { tip.style.display = "none"; return; }
    tip.textContent = data.labels[i] + "\n" + data.id_name + " " + data.ids[i] + "   (" +
      pts[i][0].toPrecision(4) + ", " + pts[i][1].toPrecision(4) + ")";
    tip.style.display = "block";
    tip.style.left = Math.min(ev.clientX + 12, window.innerWidth - tip.offsetWidth - 4) + "px";
    tip.style.top = (ev.clientY + 12) + "px";
  }

  function at(ev) { var b = canvas.getBoundingClientRect(); return [ev.clientX - b.left, ev.clientY - b.top]; }

  canvas.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var p = at(ev), x = ux(p[0]), y = uy(p[1]), k = Math.exp(-ev.deltaY * 0.0015), base = fit().s;
    view.s = Math.max(base / 20, Math.min(base * 1e5, view.s * k));
    view.cx = x - (p[0] - canvas.clientWidth / 2) / view.s;
    view.cy = y + (p[1] - canvas.clientHeight / 2) / view.s;
    draw();
  }, { passive: false });
  canvas.addEventListener("mousedown", function (ev) { var p = at(ev); drag = [p[0], p[1], view.cx, view.cy]; });
  window.addEventListener("mouseup", function () { drag = null; });
  canvas.addEventListener("mousemove", function (ev) {
    var p = at(ev);
    if (drag) {
      view.cx = drag[2] - (p[0] - drag[0]) / view.s; view.cy = drag[3] + (p[1] - drag[1]) / view.s;
      draw(); return;
    }
    var i = nearest(p[0], p[1]);
    if (i !== hover) { hover = i; draw(); }
    showTip(i, ev);
  });
  canvas.addEventListener("mouseleave", function () { hover = -1; showTip(-1); draw(); });
  canvas.addEventListener("dblclick", function () { view = fit(); draw(); });
  window.addEventListener("keydown", function (ev) {
    if (ev.target === find) return;
    if (ev.key === "0") { view = fit(); draw(); }
  });
  find.addEventListener("input", function () {
    var q = find.value;
    match = {};
    var count = 0;
    if (q) data.labels.forEach(function (label, i) { if (label.indexOf(q) >= 0) { match[i] = true; count++; } });
    found.textContent = q ? count + " found" : "";
    draw();
  });
  window.addEventListener("resize", function () { view = null; draw(); });
  draw();
})();
"""


def _json_for_script(obj) -> str:
    """JSON that cannot end or confuse the <script> element holding it: ASCII only, with <, >
    and & as \\u escapes (JSON.parse reads them back as the same characters)."""
    text = json.dumps(obj, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _hash(source: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii")


def _rgb(rgb) -> str:
    return "rgb({},{},{})".format(*rgb)


def scatter_html(
    x: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    ids: Sequence[int],
    *,
    title: str,
    x_label: str,
    y_label: str,
    id_name: str = "id",
    values: np.ndarray | None = None,
    value_label: str = "",
    highlight: Sequence[int] = (),
    joined: bool = False,
    notes: Sequence[str] = (),
) -> str:
    """The page (see the module docstring) for the points (x[i], y[i]) labelled `labels[i]`;
    `values` colour them (viridis), `highlight` (indices) are drawn red and labelled first."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)  # (n,), (n,)
    data = {
        "title": title, "x_label": x_label, "y_label": y_label, "id_name": id_name,
        "points": [[float(f"{a:.7g}"), float(f"{b:.7g}")] for a, b in zip(xs.tolist(), ys.tolist())],
        "labels": list(labels), "ids": [int(i) for i in ids],
        "values": None if values is None else np.asarray(values, dtype=np.float64).tolist(),
        "value_range": None if values is None else [float(np.min(values)), float(np.max(values))],
        "value_label": value_label, "highlight": [int(i) for i in highlight], "joined": bool(joined),
        "palette": [list(viridis(j / 31)) for j in range(32)], "point_color": _rgb(POINT_RGB),
        "highlight_color": _rgb(HIGHLIGHT_RGB),
    }
    csp = (f"default-src 'none'; script-src '{_hash(_SCRIPT)}'; style-src '{_hash(_STYLE)}';"
           " img-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'")
    legend = f"{value_label}: colour from violet (low) to yellow (high). " if values is not None else ""
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f"<header><h1>{html.escape(title)}</h1>",
        '<div id="bar"><input id="find" type="search" placeholder="find a token" aria-label="find a token">'
        '<span id="found"></span>'
        f"<span>{html.escape(legend)}wheel: zoom · drag: pan · double-click or 0: fit · hover: a point's token</span>"
        "</div></header>",
        '<canvas id="plot"></canvas>',
        '<div id="tip"></div>',
        f"<footer>{'<br>'.join(html.escape(n) for n in notes)}</footer>",
        f'<script type="application/json" id="{DATA_ID}">{_json_for_script(data)}</script>',
        f"<script>{_SCRIPT}</script>",
        "</body>",
        "</html>",
        "",
    ])


def save_scatter_html(path: str | os.PathLike, page: str) -> Path:
    """The page at `path`, whole or not at all."""
    from embscope.atomic import atomic_write

    atomic_write(str(path), lambda f: f.write(page.encode("utf-8")))
    return Path(path)
