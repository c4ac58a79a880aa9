"""Prose renders the same in JupyterLab as in the HTML report: every markdown cell of every
notebook goes through JupyterLab's markdown-and-math pipeline (labmarkdown: its removeMath,
a CommonMark renderer, MathJax 3's search for delimiters) and through the report's own; both
must find exactly the formulas the author delimited, each must parse as TeX, and none may
hold a sentence (what an escaped dollar turns into in JupyterLab)."""

from __future__ import annotations

import nbformat
import pytest
from labmarkdown import lab_math, math_problems, typeset

from lpulab import paths
from lpulab.report import fmt

NOTEBOOKS = sorted(paths.NOTEBOOKS.glob("*.ipynb"))

# What JupyterLab 4.6.6 (the version this project installs) typeset for these sources, seen
# in headless Chromium: the text of each mjx-container in the rendered cell or output.
OBSERVED_IN_LAB = [
    (r"at \$20,000 and 185 W each against one 8x H100 server at \$300,000 and 10 kW.",
     ["20,000 and 185 W each against one 8x H100 server at "]),
    ("at &#36;20,000 and 185 W each against one 8x H100 server at &#36;300,000 and 10 kW.",
     ["20,000 and 185 W each against one 8x H100 server at "]),
    ("at $20,000 and 185 W each against one 8x H100 server at $300,000 and 10 kW.",
     ["20,000 and 185 W each against one 8x H100 server at "]),
    ("at USD 20,000 and 185 W each against one 8x H100 server at USD 300,000 and 10 kW.", []),
    ("at <span>&#36;</span>20,000 and 185 W each against one 8x H100 server at <span>&#36;</span>300,000.", []),
    (r"at \\$20,000 and 185 W at \\$300,000 end.", []),
    ("costs `$20,000` and `$300,000` in code.", []),
    (r"inline $x^2 + y$ and display $$ \frac{a}{b} $$ done.", ["x^2 + y", r" \frac{a}{b} "]),
    (r"costs \$1.27 against \$0.42 per million.", ["1.27 against "]),
]
OBSERVED_HTML_IN_LAB = [
    ("<table><tr><td>$20,000 [$6,000, $20,000]</td><td>$300,000</td></tr></table>", ["20,000 ["]),
    ("<div class='mathjax_ignore tex2jax_ignore'><table><tr><td>$20,000 [$6,000, $20,000]</td></tr></table></div>", []),
]


@pytest.mark.parametrize("source,typeset_in_lab", OBSERVED_IN_LAB)
def test_the_pipeline_finds_what_jupyterlab_typeset(source, typeset_in_lab):
    assert lab_math(source) == typeset_in_lab


@pytest.mark.parametrize("page,typeset_in_lab", OBSERVED_HTML_IN_LAB)
def test_html_outputs_are_scanned_as_jupyterlab_scans_them(page, typeset_in_lab):
    assert typeset(page) == typeset_in_lab


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_markdown_cell_renders_the_same_in_jupyterlab_and_the_report(nb):
    cells = nbformat.read(nb, as_version=4).cells
    problems = {i: math_problems(c.source) for i, c in enumerate(cells) if c.cell_type == "markdown"}
    assert {i: p for i, p in problems.items() if p} == {}


def test_the_check_catches_an_escaped_dollar():
    assert math_problems(r"Cards at \$20,000 and a server at \$300,000.")
    assert math_problems("Cards at $20,000 and a server at $300,000.")
    assert math_problems(r"A ratio $R = a/b$ and $ x $.")  # Lab typesets "$ x $", the report does not
    assert not math_problems(r"A ratio $R_W = \frac{W_L}{W_G}$ at USD 20,000.")


def test_md_writes_dollars_that_jupyterlab_leaves_alone():
    """md()'s text (lpulab.report.fmt.prose): an escaped dollar in the template, a dollar in a
    string value and money from fmt.money are dollar signs in JupyterLab too; $...$ stays math."""
    text = fmt.prose(r"costs \${a:.3g} against \${b:,.0f}, {c} and {d}; ratio $R$",
                     a=1.2734, b=300000.0, c="$6k estimate", d=fmt.money(20000))
    assert lab_math(text) == ["R"]
    assert math_problems(text) == []
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    html = markdown2html_mistune(text)
    assert "$1.27 against $300,000, $6k estimate and $20,000" in html.replace("<span>", "").replace("</span>", "")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_opens_with_what_it_answers_and_how_to_run_it(nb):
    """Opened in JupyterLab a notebook shows code only until it runs: its first cell says what
    it answers and how to run it (a numbered notebook, a report, also from the shell; the
    explorer is not one)."""
    first = nbformat.read(nb, as_version=4).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert "**In short.**" in first.source and "**To run it.**" in first.source
    assert "Run All Cells" in first.source
    if nb.stem[0].isdigit():
        assert f"lpulab run notebooks/{nb.name}" in first.source
