"""The index and a report as a person meets them: in headless Chromium (Debian's chromium,
driven over the DevTools protocol on loopback). Every figure loaded and is non-empty, every
link between the index and the reports resolves, the page logs no error; screenshots are
saved under the test's tmp folder and their paths printed.

Then every notebook's report, run from a catalog with a script payload in every kind of free
text: no payload runs; at a 1280 px window no page is wider than the window and every figure
loads; no number is printed in e notation or with more than three significant figures."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pagecheck
import pytest
from labmarkdown import math_problems

IMAGES = """[...document.images].map(i => ({src: i.src.slice(0, 60), complete: i.complete,
  w: i.naturalWidth, h: i.naturalHeight, shown: i.getBoundingClientRect().width}))"""
LINKS = "[...document.querySelectorAll('a[href]')].map(a => a.href)"


def check_links(page, here: Path) -> list[str]:
    """Every file:// link resolves to a file; in-page anchors name an element. Web links
    (sources of claims) are left alone: this machine reaches no web site."""
    bad, checked = [], 0
    for href in page.evaluate(LINKS):
        u = urlparse(href)
        if u.scheme in ("http", "https"):
            continue
        assert u.scheme == "file", href
        target = Path(unquote(u.path))
        if not target.is_file():
            bad.append(f"{href} (no file {target})")
        elif u.fragment and target == here and not page.evaluate(f"!!document.getElementById({u.fragment!r})"):
            bad.append(f"{href} (no element #{u.fragment})")
        checked += 1
    assert checked, "the page has no local links at all"
    return bad


def test_index_and_report_in_chromium(browser, sweep_run, tmp_path):
    result, reports, _ = sweep_run
    index = reports / "index.html"
    browser.open(index.as_uri())
    shot = browser.screenshot(tmp_path / "index.png")
    print(f"\nscreenshot: {shot}")
    assert browser.problems() == []
    assert "Claim ledger" in browser.evaluate("document.body.innerText")
    assert browser.evaluate("document.querySelectorAll('table.ledger tbody tr').length") == 4
    assert check_links(browser, index) == []
    report_links = [h for h in browser.evaluate(LINKS) if h.endswith("/report.html")]
    assert report_links, "the index links no report"

    ok = next(o["report_id"] for o in result.outcomes if o["status"] == "ok")
    report = reports / ok / "report.html"
    assert report.as_uri() in report_links
    browser.open(report.as_uri(), settle=1.0)
    shot = browser.screenshot(tmp_path / "report.png")
    print(f"screenshot: {shot}")
    assert browser.problems() == []
    images = browser.evaluate(IMAGES)
    assert len(images) >= 3, images  # 01_bandwidth draws three figures
    for im in images:
        assert im["complete"] and im["w"] > 0 and im["h"] > 0 and im["shown"] > 0, im
    assert check_links(browser, report) == []
    text = browser.evaluate("document.body.innerText")
    for part in ("Verdicts", "Parameters", "How to cite", "Provenance", ok):
        assert part in text, part
    # equations are drawn (MathML), not left as TeX source
    assert browser.evaluate("document.querySelectorAll('math').length") > 0
    assert "\\frac" not in text
    # back to the index from the report
    back = browser.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.href)"
                            ".filter(h => h.endsWith('/index.html'))")
    assert back == [index.as_uri()]


def test_the_front_page_opens_with_the_frontier_and_a_sentence_per_claim(browser, crossover_run, tmp_path):
    r, reports = crossover_run
    index = reports / "index.html"
    browser.open(index.as_uri(), settle=1.0)
    print(f"\nscreenshot: {browser.screenshot(tmp_path / 'front.png')}")
    assert browser.problems() == []
    # the headline chart comes first, drawn, with alt text, and links to the report it is from
    first = browser.evaluate("""(() => { const f = document.querySelector('section.answer figure img');
      const t = document.querySelector('table.ledger');
      return f && {alt: f.alt, w: f.naturalWidth, h: f.naturalHeight, complete: f.complete,
        shown: f.getBoundingClientRect().width, before: !!(f.compareDocumentPosition(t) & Node.DOCUMENT_POSITION_FOLLOWING),
        href: f.closest('a').href}; })()""")
    assert first and first["complete"] and first["w"] > 400 and first["h"] > 200 and first["shown"] > 0, first
    assert first["before"], "the frontier chart must come before the ledger"
    assert "per-user speed" in first["alt"] and "llama-2-70b" in first["alt"]
    assert first["href"] == (r.path / "report.html").as_uri()
    for im in browser.evaluate(IMAGES):
        assert im["complete"] and im["w"] > 0 and im["h"] > 0, im
    # one sentence per claim, each linked to the report it comes from
    items = browser.evaluate("[...document.querySelectorAll('ul.where li')].map(li => ({id: li.id, text: li.innerText,"
                             " links: [...li.querySelectorAll('a')].map(a => a.href)}))")
    assert [i["id"] for i in items] == ["where-C1", "where-C2", "where-C3", "where-C4"]
    for i in items:
        assert "no sentence yet" not in i["text"] and len(i["links"]) == 1, i
    assert "_bandwidth" in items[0]["links"][0] and all("06_crossover" in i["links"][0] for i in items[1:])
    assert "tok/s per user" in items[1]["text"] and "holds" in items[2]["text"]
    assert check_links(browser, index) == []


def test_markup_shows_as_text_in_chromium(browser, markup_run, markup, tmp_path):
    r, _ = markup_run
    browser.open((r.path / "report.html").as_uri())
    print(f"\nscreenshot: {browser.screenshot(tmp_path / 'markup.png')}")
    assert browser.problems() == []           # an injected <img src=x> would fail to load
    assert browser.evaluate("document.getElementById('injected')") is None
    assert browser.evaluate("document.title") != "pwned"
    text = browser.evaluate("document.body.innerText")
    assert text.count('<b id="injected">bold</b>') >= 4, text  # print, md(), record, parameter table
    assert markup in text


def test_page_errors_are_caught(browser, tmp_path):
    """The checks above can fail: a page with a broken image and a script error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><img src="missing.png"><a href="nowhere.html">x</a>'
                   '<script>console.error("oops"); undefined_function();</script></body></html>')
    browser.open(bad.as_uri())
    problems = browser.problems()
    assert any("oops" in p for p in problems) and any("undefined_function" in p for p in problems)
    assert any("load failed" in p or "missing.png" in p for p in problems), problems
    assert browser.evaluate(IMAGES)[0]["w"] == 0
    assert len(check_links(browser, bad)) == 1


# --------------------------------------------------------------------------- every notebook's report


NOTEBOOKS = ("01_bandwidth", "02_placement", "03_speed", "04_cost", "05_kernels")
#: a run label holding markup: refused before anything runs (it would name the report's folder)
LABEL = "<img src=x onerror=window.__pwned=1>"


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory):
    """Every notebook run (its smoke parameters) into one reports folder, and the index,
    from a copy of data/ with a script payload in every kind of free text; a run with markup
    in its label is refused. (reports dir, run results, payload tags written)."""
    from lpulab import paths
    from lpulab.report import index, run_notebook
    from lpulab.report.params import ParameterError

    base = tmp_path_factory.mktemp("poisoned")
    data = base / "data"
    tags = pagecheck.poison(paths.DATA, data)
    site = base / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(pagecheck.SITECUSTOMIZE)
    reports = base / "reports"
    results = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
        mp.setenv("LPULAB_TEST_DATA", str(data))
        for name, value in pagecheck.point_paths_at(paths, data).items():
            mp.setattr(paths, name, value)
        for nb in NOTEBOOKS:
            results.append(run_notebook(nb, param_file=paths.PARAMS / nb / "smoke.yaml", reports=reports,
                                        progress=False, build_index=False, timeout=600))
        before = sorted(p.name for p in reports.iterdir())
        with pytest.raises(ParameterError, match="use letters, digits"):
            run_notebook("01_bandwidth", param_file=paths.PARAMS / "01_bandwidth" / "smoke.yaml",
                         label=LABEL, reports=reports, progress=False, build_index=False, timeout=600)
        assert sorted(p.name for p in reports.iterdir()) == before  # nothing written for it
        index.build(reports)
    failed = [f"{r.notebook}: {r.error}" for r in results if not r.ok]
    assert not failed, failed
    return reports, results, tags


def _pages(reports: Path) -> list[Path]:
    return sorted(reports.glob("*/report.html")) + [reports / "index.html"]


def _open_at_1280(browser, page: Path):
    browser.send("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
    browser.open(page.as_uri(), settle=1.0)


def test_no_payload_runs_in_any_report_or_the_index(browser, poisoned, tmp_path):
    """Script payloads in every kind of catalog text: on every
    report and the index, none runs, none leaves a handler, a script or a javascript: link,
    and the payloads are there to read, as text."""
    reports, _, tags = poisoned
    assert len(tags) >= 10, tags
    shown: set[str] = set()
    for page in _pages(reports):
        _open_at_1280(browser, page)
        damage = browser.evaluate(pagecheck.DAMAGE)
        assert damage["pwned"] is None, (page, damage)
        assert "pwn" not in damage["title"].lower(), (page, damage["title"])
        assert damage["handlers"] == [] and damage["scripts"] == 0 and damage["jslinks"] == [], (page, damage)
        assert browser.evaluate("document.querySelector('[id^=injected-]')") is None, page
        assert browser.problems() == [], (page, browser.problems())  # an <img src=x> that became real would fail to load
        text = browser.evaluate("document.body.innerText")
        shown |= {t for t in tags if f"concat('{t}')" in text}
    print(f"\npayloads shown as text: {sorted(shown)}; written but shown in no page's text: {sorted(tags - shown)}")
    # the payloads reached the pages (else this test would prove nothing): the price sheets'
    # and measurements' source titles (04's inputs table), claims' wording and source (index)
    for t in ("prices-title", "measurements-source_title", "claims-wording_en", "claims-source"):
        assert t in shown, (t, sorted(shown))
    index_text = (reports / "index.html").read_text()
    assert 'href="javascript' not in index_text.lower()


def test_every_report_fits_1280_px_and_every_image_loads(browser, poisoned, tmp_path):
    """At a 1280 px window no report and not the index is wider than the window, nothing is
    clipped, every table fits or scrolls in its own box (and scrolls only when wrapping its
    text would not make it fit), and every figure loads and shows."""
    reports, _, _ = poisoned
    problems = {}
    for page in _pages(reports):
        _open_at_1280(browser, page)
        shot = browser.screenshot(tmp_path / f"{page.parent.name if page.name == 'report.html' else 'index'}.png")
        print(f"screenshot: {shot}")
        _open_at_1280(browser, page)  # the screenshot resized the window
        found = browser.evaluate(pagecheck.LAYOUT)
        for im in browser.evaluate(pagecheck.IMAGES):
            if not (im["complete"] and im["w"] > 0 and im["h"] > 0 and im["shown"] > 0):
                found.append(f"image not shown: {im}")
        if found:
            problems[page.parent.name] = found
    assert problems == {}
    n_images = sum(p.read_text().count("<img") for p in reports.glob("*/report.html"))
    assert n_images >= 15, n_images  # the checks above saw the figures


def test_no_number_in_a_report_is_printed_as_a_program_prints_it(browser, poisoned):
    """No number in any report's visible text (nor the index's) is in e notation or has
    more than three significant figures, ids and hashes aside (pagecheck.number_problems)."""
    reports, _, _ = poisoned
    problems = {}
    for page in _pages(reports):
        _open_at_1280(browser, page)
        found = pagecheck.number_problems(browser.evaluate(pagecheck.VISIBLE_TEXT))
        if found:
            problems[page.parent.name] = found[:10]
    assert problems == {}


def test_the_layout_check_can_fail(browser, tmp_path):
    """A page with a table that could wrap but does not, a box that hides its overflow and a
    page wider than the window: each is reported."""
    bad = tmp_path / "wide.html"
    long = " ".join(["words"] * 80)
    bad.write_text(f"""<!DOCTYPE html><html><body>
<div style="overflow-x:auto"><table style="white-space:nowrap"><tr><td>{long}</td><td>x</td></tr></table></div>
<div style="overflow:hidden;width:200px"><div style="width:900px">hidden</div></div>
<div style="width:1500px">wide</div></body></html>""")
    _open_at_1280(browser, bad)
    found = browser.evaluate(pagecheck.LAYOUT)
    assert any(f.startswith("the page is 1") for f in found), found
    assert any("if its long text wrapped" in f for f in found), found
    assert any("hides" in f for f in found), found


def test_the_prose_of_every_report_renders_the_same_in_jupyterlab(poisoned):
    """Every markdown cell and every Markdown output (md()) of every executed notebook, with
    catalog text full of markup in it: JupyterLab typesets exactly the formulas the author
    delimited, the same ones the report draws, and no dollar pair swallows a sentence."""
    reports, _, _ = poisoned
    problems, outputs = {}, 0
    for nb_file in sorted(reports.glob("*/notebook.ipynb")):
        nb = nbformat.read(nb_file, as_version=4)
        for i, cell in enumerate(nb.cells):
            sources = [cell.source] if cell.cell_type == "markdown" else []
            for out in cell.get("outputs", []):
                md_out = out.get("data", {}).get("text/markdown")
                if md_out is not None:
                    sources.append("".join(md_out) if isinstance(md_out, list) else md_out)
                    outputs += 1
            for s in sources:
                found = math_problems(s)
                if found:
                    problems[f"{nb_file.parent.name} cell {i}"] = found
    assert outputs >= 20, outputs  # the Markdown outputs were there to check
    assert problems == {}
