"""A parameter holding markup shows as text in the report and on the index, never as markup."""

from __future__ import annotations

import json


def test_markup_in_a_parameter_is_escaped(markup_run, markup):
    r, reports = markup_run
    page = (r.path / "report.html").read_text()
    assert json.loads((r.path / "results.json").read_text())["results"]["note"] == markup
    # shown three ways by the notebook (print, md(), record) plus the parameter table
    assert page.count("&lt;b id=&#34;injected&#34;&gt;") + page.count("&lt;b id=&quot;injected&quot;&gt;") \
        + page.count('&lt;b id="injected"&gt;') >= 4
    assert '<b id="injected">' not in page
    assert '<script>document.title="pwned"</script>' not in page
    assert '<img src="x"' not in page
    index = (reports / "index.html").read_text()
    assert '<b id="injected">' not in index
