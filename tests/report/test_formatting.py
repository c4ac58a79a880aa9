"""lpulab.report.fmt: numbers as people write them, tables that escape every cell and stay in
their box; record() and md() use the same rules; the number check the browser test applies
to every report catches what it should."""

from __future__ import annotations

import math

import numpy as np
import pagecheck
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lpulab.report import fmt, record


@pytest.mark.parametrize("f,value,text", [
    (fmt.money, 20000, "$20,000"), (fmt.money, 300000, "$300,000"), (fmt.money, 761980, "$762,000"),
    (fmt.money, 12.3e6, "$12.3M"), (fmt.money, 1.14e7, "$11.4M"), (fmt.money, 2.5e9, "$2.5B"),
    (fmt.money, 1.2734, "$1.27"), (fmt.money, 0.274, "$0.274"), (fmt.money, -2203.4, "-$2,200"),
    (fmt.money, 152500, "$153,000"),  # half up, as people round
    (fmt.ratio, 23.881, "23.9x"), (fmt.ratio, 38.1, "38.1x"), (fmt.ratio, 40.0, "40x"), (fmt.ratio, 9.0909, "9.09x"),
    (fmt.ratio, 0.27, "0.27x"), (fmt.ratio, 1719.4, "1,720x"), (fmt.ratio, 0.0028843, "0.00288x"),
    (fmt.count, 305.0, "305"), (fmt.count, 1024, "1,024"), (fmt.count, 576.4, "576"),
    (fmt.count, 68976648192, "69.0 billion"),
    (fmt.number, 2.000000, "2"), (fmt.number, 126.727, "127"), (fmt.number, 0.001282, "0.00128"),
    (fmt.number, 6.898e10, "69 billion"), (fmt.number, 1.5e-9, "1.5 × 10⁻⁹"),
    (fmt.percent, 0.12345, "12.3%"), (fmt.percent, 1.0, "100%"),
    (fmt.duration, 2.628e4 * 3600, "3 years"), (fmt.duration, 86400 * 10, "10 days"), (fmt.duration, 7.3 * 3600, "7.3 h"),
    (fmt.duration, 150, "2.5 min"), (fmt.duration, 16.3, "16.3 s"), (fmt.duration, 0.045, "45 ms"),
    (fmt.duration, 3.2e-5, "32 µs"), (fmt.duration, 5e-9, "5 ns"),
])
def test_values_read_as_people_write_them(f, value, text):
    assert f(value) == text


@pytest.mark.parametrize("value,unit,text", [
    (3.35e12, "B/s", "3.35 TB/s"), (8e13, "B/s", "80 TB/s"), (230e6, "B", "230 MB"), (80e9, "B", "80 GB"),
    (230686720, "B", "231 MB"),  # decimal prefixes, as vendors quote capacity
    (9.89e14, "FLOP/s", "989 TFLOP/s"), (185.0, "W", "185 W"), (10.2e3, "W", "10.2 kW"), (1.9e9, "Hz", "1.9 GHz"),
])
def test_si_prefixes(value, unit, text):
    assert fmt.si(value, unit) == text


@pytest.mark.parametrize("value,unit,text", [
    (20000, "USD", "$20,000"), (26280, "hour", "3 years"), (7.5, "kW", "7.5 kW"), (0.0806, "USD/kWh", "$0.0806/kWh"),
    (3.35, "TB/s", "3.35 TB/s"), (576, "count", "576"), (23.9, "x", "23.9x"), (0.5, "-", "0.5"),
])
def test_a_value_in_its_own_unit(value, unit, text):
    assert fmt.quantity(value, unit) == text


@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), -float("inf"), "x"])
def test_missing_and_non_finite_values_show_as_na(bad):
    for f in (fmt.money, fmt.ratio, fmt.count, fmt.number, fmt.percent, fmt.duration):
        assert f(bad) == fmt.NA
    assert fmt.si(bad, "B") == fmt.NA


@pytest.mark.parametrize("value,spec,text", [
    (0.123456, ".1%", "12.3%"), (66315.2, ",.0f", "66,300"), (1234.5, ".2f", "1230"), (0.99999, ".1%", "100%"),
    (1.23e7, ".3g", "12.3 million"), (23.881, ".1f", "23.9"), (0.0123456, ".4f", "0.0123"), (1.767, ".2f", "1.77"),
    (68976648192, ",", "69.0 billion"), (576, "", "576"), (4096, "", "4096"), (4.0, "g", "4"), (1e-320, ".3g", "1 × 10⁻³²⁰"),
    (float("nan"), ".1f", "n/a"), (3, "03d", "003"),
])
def test_format_value_keeps_the_spec_but_not_the_noise(value, spec, text):
    assert fmt.format_value(value, spec) == text


FINITE = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300)


@settings(max_examples=400, deadline=None)
@given(FINITE)
def test_no_formatted_number_trips_the_report_check(x):
    """Whatever the value, what fmt prints passes the check every report is held to."""
    shown = [fmt.money(x), fmt.ratio(x), fmt.count(x), fmt.number(x), fmt.percent(x), fmt.duration(x),
             fmt.si(x, "B/s"), fmt.format_value(x, ".4f"), fmt.format_value(x, ",.0f"), fmt.format_value(x, ".6g")]
    for s in shown:
        assert pagecheck.number_problems(s) == [], s
        assert "e+" not in s and "e-" not in s, s


def test_the_number_check_catches_what_a_program_prints():
    for bad in ("costs 2e+04 USD", "a ratio of 23.881000", "lifetime 2.628e+04 hour", "$761,980 in all",
                "68,976,648,192 parameters", "1.2E-5 s"):
        assert pagecheck.number_problems(bad), bad
    for ok in ("23.9x", "$20,000 and $12.3M", "576 chips, 4096 tokens, 1,024 rows", "python 3.11.7, numpy 2.3.5",
               "report 01_bandwidth-smoke-2eecf292a0", "2024-02-21T15:21:25+00:00", "sha 6e30a1b2c3d4", "0.00288x"):
        assert pagecheck.number_problems(ok) == [], ok


MARKUP = '<img src=x onerror="alert(1)"><script>alert(2)</script>[l](javascript:alert(3))'


def test_a_table_escapes_every_cell_header_index_and_caption_and_scrolls_in_its_box():
    df = pd.DataFrame({MARKUP: [MARKUP, "ok"], "price": [20000.0, 1.14e7], "ratio": [23.881, np.nan],
                       "chips": [305.0, 576.0]}, index=pd.Index([MARKUP, "b"], name=MARKUP))
    t = fmt.table(df, {"price": "money", "ratio": "ratio"}, caption=MARKUP)
    page = t.to_html()
    assert "<img" not in page and "<script" not in page
    assert page.count("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;") == 5  # header, index name, index, cell, caption
    assert "$20,000" in page and "$11.4M" in page and "23.9x" in page and fmt.NA in page
    assert ">305<" in page and ">576<" in page  # whole numbers held as floats are counts
    assert 'class="lpulab-table mathjax_ignore tex2jax_ignore"' in page and "overflow-x:auto" in page
    assert str(t).splitlines()[1].startswith(MARKUP)  # plain text for a terminal


def test_a_table_takes_units_per_column_and_per_row():
    df = pd.DataFrame({"input": ["card price", "lifetime", "card power", "users"], "unit": ["USD", "hour", "W", "-"],
                       "point": [20000.0, 26280.0, 215.0, 10.0], "low": [6000.0, np.nan, 185.0, 1.0],
                       "bw": [3.35e12, 8e13, 2e12, 1e12]})
    t = fmt.table(df, {"point": fmt.per_row("unit"), "low": fmt.per_row("unit"), "bw": "TB/s"},
                  columns=["input", "point", "low", "bw"], na="")
    assert t.columns == ["input", "point", "low", "bw (TB/s)"]
    assert t.rows[0] == ["card price", "$20,000", "$6,000", "3.35"]
    assert t.rows[1] == ["lifetime", "3 years", "", "80"]
    assert t.rows[2][1:3] == ["215 W", "185 W"]
    with pytest.raises(KeyError, match="nope"):
        fmt.table(df, {"nope": "money"})
    with pytest.raises(Exception, match="furlong"):
        fmt.table(df, {"bw": "furlong/s"})


def test_record_shows_results_with_the_same_rules(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, raw=False: shown.append(obj))
    record({"as_stated_capex_ratio": 38.1234, "estimate_lpu_capex_usd": 1.2345e7, "lpu_chips": 576,
            "weight_bytes": 6.898e10, "bench_seconds": 16.3, "note": MARKUP, "big": 12345.678, "flag": True})
    html_out, text = shown[0]["text/html"], shown[0]["text/plain"]
    for part in ("38.1x", "$12.3M", ">576<", "69 GB", "16.3 s", "12,300", "yes"):
        assert part in html_out, part
    assert "<img" not in html_out and "&lt;img" in html_out
    assert "mathjax_ignore" in html_out
    assert "as_stated_capex_ratio = 38.1x" in text
    assert pagecheck.number_problems(html_out.replace("<", " <").replace(">", "> ")) == []


def test_md_formats_numbers_and_keeps_dollars_out_of_math():
    from lpulab.report import md

    out = md(r"ratio {r:.4f}x, cost \${c:,.0f}, {n:,} parameters, {p:.1%}, note {s}",
             r=23.881234, c=761980.0, n=68976648192, p=0.123456, s="[x](javascript:alert(1)) $5")
    text = out.data
    assert "ratio 23.9x" in text and "69.0 billion parameters" in text and "12.3%" in text
    assert "<span>&#36;</span>762,000" in text
    assert "](javascript" not in text and "&#91;x&#93;" in text
    assert "$" not in text.replace("&#36;", "")
    assert math.isfinite(23.881234)


def test_md_shows_a_value_in_a_code_span_as_written():
    """Inside a code span of the template a value is shown as it is (no character
    references, which a code span would print literally), and cannot close the span."""
    text = fmt.prose("it swings most with `{top}`; {top}", top="lpu_card_price`<b>")
    assert "`lpu_card_price'<b>`" in text            # mistune and marked escape code spans themselves
    assert text.endswith("lpu&#95;card&#95;price`&lt;b&gt;".replace("`", "&#96;"))
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    assert "<code>lpu_card_price'&lt;b&gt;</code>" in markdown2html_mistune(text)


def test_record_summarises_a_table_of_records():
    assert fmt.auto([{"input": "a", "source": "$10,424"}, {"input": "b"}], "inputs") == "2 rows of input, source"
