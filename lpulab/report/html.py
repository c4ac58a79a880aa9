"""report.html: the executed notebook with code hidden, plus parameters, provenance, citation.

nbconvert renders the notebook (figures are embedded as base64 images); lpulab adds a
header cell (title, DRAFT banner, verdicts, parameter table) and a footer cell (provenance,
how to cite). Every value that came from a user is HTML-escaped by Jinja2's autoescape.

A report is one self-contained file that reads the same offline: LaTeX in markdown
(``$...$``, ``$$...$$``) is turned into MathML here (browsers draw MathML natively), and the
template loads no script from the network (nbconvert's default pulls MathJax and require.js
from a CDN, so offline the equations stayed raw TeX and the page logged load errors).
"""

from __future__ import annotations

import copy
import re

import jinja2
import nbformat

from . import fmt

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
# numbers in the header and footer are written as everywhere else (lpulab.report.fmt)
_ENV.filters.update(ratio=fmt.ratio, number=fmt.number, percent=fmt.percent, duration=fmt.duration)

HEADER = _ENV.from_string("""
<div class="lpulab-header">
{% if dirty %}<div class="lpulab-draft" style="background:#fde68a;border:2px solid #b45309;padding:8px;font-weight:bold">
DRAFT: run from a working tree with uncommitted changes; the numbers may not match commit {{ commit[:12] }}.</div>{% endif %}
<p><a href="../index.html">&larr; all reports and the claim ledger</a></p>
<p>Report <code>{{ report_id }}</code> &middot; notebook <code>{{ notebook }}</code> &middot; {{ utc_time }}</p>
{% if verdicts %}<h2>Verdicts</h2><div class="lpulab-table"><table class="lpulab-verdicts">
<thead><tr><th>claim</th><th>claimed</th><th>as stated</th><th>reproduced</th><th>best estimate [band]</th><th>verdict</th></tr></thead><tbody>
{% for v in verdicts %}<tr><td>{{ v.claim }}</td><td>{{ v.comparison }} {{ v.claimed | ratio }} (tol. {{ v.tolerance | percent }})</td>
<td>{{ v.as_stated | ratio }}</td><td>{{ 'yes' if v.reproduces else 'no' }}</td>
<td>{{ v.estimate | ratio }} [{{ v.low | ratio }}, {{ v.high | ratio }}]</td><td><b>{{ v.holds }}</b></td></tr>
{% endfor %}</tbody></table></div>{% endif %}
<h2>Parameters</h2><div class="lpulab-table"><table class="lpulab-params"><thead><tr><th>name</th><th>value</th></tr></thead><tbody>
{% for k, v in params.items() %}<tr><td><code>{{ k }}</code></td><td><code>{{ v }}</code></td></tr>{% endfor %}
</tbody></table></div>
</div>
""")

FOOTER = _ENV.from_string("""
<div class="lpulab-footer">
<h2>How to cite</h2>
<pre class="lpulab-cite">{{ cite.plain }}</pre>
<pre class="lpulab-bibtex">{{ cite.bibtex }}</pre>
<h2>Provenance</h2>
<div class="lpulab-table"><table class="lpulab-provenance"><tbody>
<tr><td>git commit</td><td><code>{{ prov.git.commit }}</code>{% if prov.git.dirty %} (dirty){% endif %}</td></tr>
<tr><td>parameter hash</td><td><code>{{ prov.param_hash }}</code></td></tr>
<tr><td>notebook sha256</td><td><code>{{ prov.notebook_sha256 }}</code></td></tr>
<tr><td>run (UTC)</td><td>{{ prov.utc_time }}, {{ prov.duration_s | duration }}, kernel {{ prov.kernel }}</td></tr>
{% for k, v in prov.versions.items() %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}
</tbody></table></div>
<h3>Data files read</h3><div class="lpulab-table"><table class="lpulab-files"><tbody>
{% for f, h in prov.data_files.items() %}<tr><td><code>{{ f }}</code></td><td><code>{{ h }}</code></td></tr>{% endfor %}
</tbody></table></div>
</div>
""")


# nbconvert's lab template without the two scripts it loads from a CDN
_TEMPLATE = "lpulab_report.html.j2"
_TEMPLATES = jinja2.DictLoader({_TEMPLATE: """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block extra_css -%}<style>
/* the page never runs past the window: a wide output (a table, a long line of text) scrolls
   sideways inside its own box; images shrink to the column */
body .jp-OutputArea-output{max-width:100%;overflow-x:auto}
body .jp-RenderedImage img,body .jp-OutputArea-output img{max-width:100%;height:auto}
body .jp-RenderedText pre,body .jp-OutputArea-output pre{white-space:pre-wrap;overflow-wrap:anywhere}
body .jp-RenderedHTMLCommon .lpulab-table{max-width:100%;overflow-x:auto}
body .jp-RenderedHTMLCommon .lpulab-table table{margin:0}
body .jp-RenderedHTMLCommon .lpulab-table td,body .jp-RenderedHTMLCommon .lpulab-table th{max-width:44em}
body .jp-RenderedHTMLCommon .lpulab-params code,body .jp-RenderedHTMLCommon .lpulab-files code,
body .jp-RenderedHTMLCommon .lpulab-provenance code{white-space:pre-wrap;overflow-wrap:anywhere}
math[display="block"]{display:block;margin:0.8em 0;overflow-x:auto}
body .jp-RenderedHTMLCommon .lpulab-header td,body .jp-RenderedHTMLCommon .lpulab-header th,
body .jp-RenderedHTMLCommon .lpulab-footer td,body .jp-RenderedHTMLCommon .lpulab-results td,
body .jp-RenderedHTMLCommon .lpulab-results th{text-align:left}
body .jp-RenderedHTMLCommon pre.lpulab-cite,body .jp-RenderedHTMLCommon pre.lpulab-bibtex{white-space:pre-wrap;
word-break:normal;overflow-wrap:anywhere;background:#f6f8fa;border:1px solid #ddd;padding:8px;max-width:60em}
</style>{%- endblock extra_css -%}
"""})

# code (fenced or inline) is left alone; $$...$$ is display math, $...$ inline math, \$ a dollar
_MATH = re.compile(r"(?P<code>```.*?```|`[^`\n]*`)|(?<!\\)\$\$(?P<block>.+?)\$\$"
                   r"|(?<![\\$])\$(?P<inline>[^\s$](?:[^$\n]*?[^\s$\\])?)\$(?!\d)", re.S)


def _mathml(tex: str, display: str) -> str | None:
    from latex2mathml.converter import convert

    try:
        return convert(tex.strip(), display=display)
    except Exception:  # TeX latex2mathml cannot read stays as it was typed
        return None


def math_to_placeholders(text: str, store: dict) -> str:
    """Replace each $...$ / $$...$$ in markdown by a placeholder word; ``store`` maps it to
    MathML. Placeholders pass through the markdown renderer untouched."""
    def sub(m):
        if m.group("code"):
            return m.group(0)
        block = m.group("block") is not None
        ml = _mathml(m.group("block") if block else m.group("inline"), "block" if block else "inline")
        if ml is None:
            return m.group(0)
        key = f"LPULABMATH{len(store)}X"
        store[key] = ml
        return key
    return _MATH.sub(sub, text)


def _math_cells(nb, store: dict) -> None:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = math_to_placeholders(cell.source, store)
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "text/markdown" in data:
                md = data["text/markdown"]
                data["text/markdown"] = math_to_placeholders("".join(md) if isinstance(md, list) else md, store)


def _html_cell(markup: str):
    cell = nbformat.v4.new_code_cell(source="")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/html": markup})]
    cell.metadata["tags"] = ["lpulab-report-chrome"]
    return cell


def notebook_title(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


def render(nb, *, report_id: str, params: dict, provenance: dict, verdicts: list, cite: dict) -> str:
    """The report's HTML as a string."""
    from nbconvert import HTMLExporter

    nb = copy.deepcopy(nb)
    header = HEADER.render(
        dirty=provenance["git"]["dirty"], commit=provenance["git"]["commit"], report_id=report_id,
        notebook=provenance["notebook"], utc_time=provenance["utc_time"], verdicts=verdicts,
        params={k: repr(v) for k, v in params.items()},
    )
    footer = FOOTER.render(cite=cite, prov=provenance)
    # the title stays first; the header follows it
    first_md = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), -1)
    nb.cells.insert(first_md + 1, _html_cell(header))
    nb.cells.append(_html_cell(footer))
    title = notebook_title(nb) or report_id
    store: dict[str, str] = {}
    _math_cells(nb, store)
    exporter = HTMLExporter(template_name="lab", template_file=_TEMPLATE, extra_loaders=[_TEMPLATES],
                            exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    exporter.exclude_anchor_links = True
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    for key, ml in store.items():
        body = body.replace(key, ml)
    return body
