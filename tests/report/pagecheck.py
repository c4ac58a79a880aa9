"""What the browser tests look for on a page, and a catalog full of script payloads.

- :data:`LAYOUT`: the page is no wider than the window; nothing is clipped by a box that hides
  its overflow; every table either fits its box or scrolls inside a box of its own that ends
  inside the window, and only when it could not fit by wrapping its long text.
- :func:`number_problems`: numbers in a page's visible text printed as a program prints them
  (``2e+04``, ``23.881000``, ``$761,980``).
- :func:`poison`: a copy of ``data/`` with a script payload in every kind of free text
  (hardware, model and price-sheet names, notes and source titles, measurement titles and
  notes, claim wording and sources, and a ``javascript:`` URL as a claim's source).
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

LAYOUT = r"""(() => {
  const vw = document.documentElement.clientWidth, out = [];
  if (document.documentElement.scrollWidth > vw + 1)
    out.push(`the page is ${document.documentElement.scrollWidth} px wide in a ${vw} px window`);
  for (const e of document.querySelectorAll('body *')) {
    const ox = getComputedStyle(e).overflowX;
    if ((ox === 'hidden' || ox === 'clip') && e.scrollWidth > e.clientWidth + 1)
      out.push(`${e.tagName}.${String(e.className).slice(0, 40)} hides ${e.scrollWidth - e.clientWidth} px of its content`);
  }
  for (const t of document.querySelectorAll('table')) {
    let box = t.parentElement;
    while (box && box !== document.body && !['auto', 'scroll'].includes(getComputedStyle(box).overflowX))
      box = box.parentElement;
    const scrolls = box && box !== document.body;
    const right = scrolls ? box.getBoundingClientRect().right : vw;
    const label = (t.querySelector('th,td') || {}).textContent;
    if (right > vw + 1) { out.push(`the box of table "${label}" ends at ${Math.round(right)} px`); continue; }
    const room = scrolls ? box.clientWidth : vw;
    const w = t.getBoundingClientRect().width;
    if (w <= room + 1) continue;
    if (!scrolls) { out.push(`table "${label}" (${Math.round(w)} px) runs past the page`); continue; }
    const probe = document.createElement('div');
    probe.style.cssText = 'position:absolute;left:0;top:0;width:0;visibility:hidden';
    t.parentElement.appendChild(probe);
    const c = t.cloneNode(true);
    probe.appendChild(c);
    for (const cell of c.querySelectorAll('td,th'))
      if (cell.textContent.trim().length > 30) { cell.style.whiteSpace = 'normal'; cell.style.overflowWrap = 'anywhere'; }
    const min = c.getBoundingClientRect().width;
    probe.remove();
    if (min < room)
      out.push(`table "${label}" is ${Math.round(w)} px wide in a ${room} px box, and would fit (${Math.round(min)} px) if its long text wrapped`);
  }
  return out;
})()"""

#: the text a reader sees, without code, preformatted blocks (ids, hashes, versions,
#: citations), text quoted from a source as written (``.lpulab-quote``: a source's "$10,424"
#: stays as the source wrote it), scripts, styles and MathML
VISIBLE_TEXT = r"""(() => {
  const b = document.body.cloneNode(true);
  b.querySelectorAll('code,pre,script,style,math,svg,.lpulab-quote').forEach(e => e.remove());
  b.style.position = 'absolute'; b.style.left = '-99999px';
  document.documentElement.appendChild(b);
  const t = b.innerText;
  b.remove();
  return t;
})()"""

IMAGES = """[...document.images].map(i => ({src: i.src.slice(0, 60), complete: i.complete,
  w: i.naturalWidth, h: i.naturalHeight, shown: i.getBoundingClientRect().width}))"""

#: what a payload could have done: set a global, retitle the page, leave an element with an
#: event handler, a script or a javascript: link
DAMAGE = r"""(() => ({
  pwned: window.__pwned === undefined ? null : window.__pwned,
  title: document.title,
  handlers: [...document.querySelectorAll('body *')].flatMap(e => [...e.attributes].filter(a => /^on/i.test(a.name))
    .map(a => `${e.tagName} ${a.name}=${a.value.slice(0, 40)}`)),
  scripts: [...document.scripts].filter(s => s.textContent.includes('__pwned')).length,
  jslinks: [...document.querySelectorAll('[href],[src]')].map(e => (e.getAttribute('href') || e.getAttribute('src') || '').trim())
    .filter(u => /^(javascript|vbscript|data:text\/html)/i.test(u)),
}))()"""


# --------------------------------------------------------------------------- numbers


_E = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?[eE][+-]?\d+(?![\w.])")
_NUM = re.compile(r"(?<![\w.,])(\$?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\d,]|\.\d)")
#: ids and hashes a reader may see: report ids, hex digests, dates and times
_IDS = [re.compile(p) for p in (r"\b\d\d_[a-z0-9_]+-[\w.-]*?-[0-9a-f]{10}\b", r"\b[0-9a-f]{7,}\b",
                                r"\b\d{4}-\d\d-\d\d(?:T\d\d:\d\d:\d\d(?:[+-]\d\d:\d\d|Z)?)?\b",
                                r"\barXiv:\d{4}\.\d{4,5}(?:v\d+)?\b")]  # a paper's arXiv identifier


def _significant(digits: str, fraction: str) -> int:
    if fraction:
        return len((digits + fraction[1:]).lstrip("0")) or 1
    return len(digits.rstrip("0")) or 1


def number_problems(text: str) -> list[str]:
    """Numbers printed in ``e`` notation, or with more than three significant figures: a
    decimal fraction (``23.881``), an amount of money (``$761,980``), or an integer of more
    than six digits (``68,976,648,192``). Exact counts up to 999,999 (``4096``, ``1,024``),
    ids, hashes and dates pass."""
    for p in _IDS:
        text = p.sub(" ", text)
    out = [f"e-notation: {m.group(0)!r} in ...{text[max(0, m.start() - 40):m.end() + 20]!r}" for m in _E.finditer(text)]
    for m in _NUM.finditer(text):
        dollar, whole, fraction = m.group(1), m.group(2).replace(",", ""), m.group(3) or ""
        sig = _significant(whole, fraction)
        if (fraction or dollar or len(whole) > 6) and sig > 3:
            out.append(f"{sig} significant figures: {m.group(0)!r} in ...{text[max(0, m.start() - 40):m.end() + 20]!r}")
    return out


# --------------------------------------------------------------------------- payloads


def payload(tag: str) -> str:
    """Markup that would run script (and a Markdown javascript: link), each part marking
    ``tag`` in ``window.__pwned`` if it ever runs. No ``$`` (matplotlib reads it as math)."""
    mark = f"window.__pwned=(window.__pwned||[]).concat('{tag}')"
    return (f"<img src=x onerror=\"{mark}\"><script>{mark}</script><svg onload=\"{mark}\"></svg>"
            f"[link-{tag}](javascript:{mark}) <b id='injected-{tag}'>PAYLOAD-{tag}</b>")


#: free-text TOML keys and the payload tag of each: (file kind, key) -> tag
_TOML_KEYS = {"hardware": ("name", "notes", "title", "note"), "models": ("name", "notes", "title", "note"),
              "prices": ("name", "notes", "title", "note"), "claims": ("wording_en", "wording_zh", "source", "note")}


def _toml_string(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)[1:-1]  # a TOML basic string's content


def _poison_toml(path: Path, kind: str) -> list[str]:
    text = path.read_text()
    tags = []
    for key in _TOML_KEYS[kind]:
        tag = f"{kind}-{key}"
        # top-level or table keys (`name = "..."`) and keys inside inline tables (`note = "..."`)
        pattern = re.compile(rf'(^|[{{,]\s*)({key}\s*=\s*")', re.M)
        text, n = pattern.subn(lambda m: m.group(1) + m.group(2) + _toml_string(payload(tag) + " "), text)  # noqa: B023 (subn calls it at once)
        if n:
            tags.append(tag)
    if kind == "claims":
        # a javascript: URL is refused by the catalog; an http(s) URL that tries to close the
        # attribute it lands in and open a tag of its own is not
        url = "https://example.org/?\"><svg/onload=window.__pwned=(window.__pwned||[]).concat('claims-url')>"
        text, n = re.subn(r'(?m)^source_url\s*=\s*"[^"]*"', lambda m: 'source_url = "' + _toml_string(url) + '"', text)
        tags += ["claims-url"] if n else []
    path.write_text(text)
    return tags


def poison(src: Path, dst: Path) -> set[str]:
    """Copy the data folder ``src`` to ``dst`` with a payload in every kind of free text;
    returns the payload tags written."""
    shutil.copytree(src, dst)
    tags: set[str] = set()
    for kind in ("hardware", "models", "prices"):
        for f in sorted((dst / kind).glob("*.toml")):
            tags |= set(_poison_toml(f, kind))
    tags |= set(_poison_toml(dst / "claims.toml", "claims"))
    for f in sorted((dst / "measurements").glob("*.csv")):
        with open(f, newline="") as fh:
            rows = list(csv.DictReader(fh))
            fields = list(rows[0]) if rows else []
        for r in rows:
            for col in ("source_title", "note"):
                if col in r:
                    r[col] = payload(f"measurements-{col}") + " " + r[col]
                    tags.add(f"measurements-{col}")
        with open(f, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
    return tags


#: put into a PYTHONPATH folder: points lpulab (in every process that starts with it, the
#: notebooks' kernels included) at the data folder named by LPULAB_TEST_DATA
SITECUSTOMIZE = '''
import os
_d = os.environ.get("LPULAB_TEST_DATA")
if _d:
    from pathlib import Path
    import lpulab.paths as _p
    _p.DATA = Path(_d)
    _p.HARDWARE, _p.MODELS, _p.PRICES = _p.DATA / "hardware", _p.DATA / "models", _p.DATA / "prices"
    _p.MEASUREMENTS, _p.CLAIMS = _p.DATA / "measurements", _p.DATA / "claims.toml"
'''


def point_paths_at(paths_module, data: Path) -> dict:
    """The attributes of :mod:`lpulab.paths` that name the data folder, pointed at ``data``."""
    return {"DATA": data, "HARDWARE": data / "hardware", "MODELS": data / "models", "PRICES": data / "prices",
            "MEASUREMENTS": data / "measurements", "CLAIMS": data / "claims.toml"}
