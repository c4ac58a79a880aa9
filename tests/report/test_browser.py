"""The index and a report as a person meets them: in headless Chromium (Debian's chromium,
driven over the DevTools protocol on loopback). Every figure loaded and is non-empty, every
link between the index and the reports resolves, the page logs no error; screenshots are
saved under the test's tmp folder and their paths printed."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

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
        elif u.fragment and target == here:
            if not page.evaluate(f"!!document.getElementById({u.fragment!r})"):
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
