"""reports/index.html and reports/claims.json: every report, and the claim ledger."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2

from .. import catalog, paths
from .io import atomic_write_text

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)

INDEX = _ENV.from_string("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>lpulab: claims and reports</title>
<style>
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#111}
table{border-collapse:collapse;width:100%;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f4f6}.holds{color:#166534;font-weight:bold}.fails{color:#991b1b;font-weight:bold}.depends{color:#92400e;font-weight:bold}
.failed{color:#991b1b}.draft{background:#fde68a;padding:0 4px}small{color:#555}
</style></head><body>
<h1>lpulab: is Groq's LPU 20x, 10x and 38x what people say?</h1>
<p>Each claim below is recomputed from its own assumptions ("as stated") and from the best
estimate lpulab can make, with an uncertainty band. Numbers come from the linked reports.</p>
<h2>Claim ledger</h2>
<table class="ledger"><thead><tr><th>claim</th><th>wording</th><th>as stated</th><th>best estimate [band]</th><th>verdict</th><th>key assumptions</th><th>report</th></tr></thead><tbody>
{% for c in ledger %}<tr id="{{ c.id }}"><td><b>{{ c.id }}</b> {{ c.slug }}</td>
<td>{{ c.wording_en }}<br><small lang="zh">{{ c.wording_zh }}</small><br><small>{{ c.source }}</small></td>
{% if c.verdict %}<td>{{ '%.3g' % c.verdict.as_stated }}x ({{ 'reproduced' if c.verdict.reproduces else 'not reproduced' }})</td>
<td>{{ '%.3g' % c.verdict.estimate }}x [{{ '%.3g' % c.verdict.low }}, {{ '%.3g' % c.verdict.high }}]</td>
<td class="{{ {'holds':'holds','does not hold':'fails'}.get(c.verdict.holds, 'depends') }}">{{ c.verdict.holds }}<br><small>claimed {{ c.comparison }} {{ '%g' % c.claimed }}x, tolerance {{ '%.0f' % (100 * c.tolerance) }} %</small></td>
<td><small>{% for k, v in c.verdict.assumptions.items() %}{{ k }}: {{ v }}<br>{% endfor %}</small></td>
<td><a href="{{ c.report }}/report.html">{{ c.report }}</a>{% if c.draft %} <span class="draft">DRAFT</span>{% endif %}</td>
{% else %}<td colspan="4"><i>no report yet</i> (notebook {{ c.notebook }})</td><td></td>{% endif %}</tr>
{% endfor %}</tbody></table>
<h2>Reports</h2>
<table class="reports"><thead><tr><th>report</th><th>notebook</th><th>parameters</th><th>status</th><th>commit</th><th>run (UTC)</th></tr></thead><tbody>
{% for r in reports %}<tr><td>{% if r.status == 'ok' %}<a href="{{ r.id }}/report.html">{{ r.id }}</a>{% else %}{{ r.id }}{% endif %}</td>
<td>{{ r.notebook }}</td><td><small>{{ r.label }}</small></td>
<td class="{{ 'failed' if r.status != 'ok' else '' }}">{{ r.status }}{% if r.error %}<br><small>{{ r.error }}</small>{% endif %}</td>
<td><code>{{ r.commit[:10] }}</code>{% if r.draft %} <span class="draft">DRAFT</span>{% endif %}</td><td>{{ r.utc_time }}</td></tr>
{% endfor %}</tbody></table>
</body></html>
""")


def scan(reports: Path | None = None) -> list[dict]:
    """One summary per report folder (finished or failed), newest first."""
    reports = Path(reports or paths.reports_dir())
    out = []
    for d in sorted(reports.glob("*/")):
        if d.name.startswith("."):
            continue
        status_file = d / "status.json"
        if not status_file.is_file():
            continue
        st = json.loads(status_file.read_text())
        out.append({
            "id": d.name, "notebook": st.get("notebook", ""), "label": st.get("label", ""),
            "status": st.get("status", "unknown"), "error": st.get("error", ""),
            "commit": st.get("commit", ""), "draft": st.get("dirty", False), "utc_time": st.get("utc_time", ""),
            "verdicts": st.get("verdicts", []),
        })
    out.sort(key=lambda r: r["utc_time"], reverse=True)
    return out


def ledger(reports_list: list[dict]) -> list[dict]:
    """The ledger: each claim with its verdict from the most relevant report.

    A report run with the notebook's default parameters wins over other runs of the same
    claim; among equals the newest wins. A claim with no report has ``verdict = None``.
    """
    rows = []
    for cid, c in catalog.load_claims().items():
        best = None
        for r in reports_list:  # newest first
            if r["status"] != "ok":
                continue
            for v in r["verdicts"]:
                if v["claim"] == cid:
                    rank = (r["label"] == "default",)
                    if best is None or rank > best[0]:
                        best = (rank, r, v)
        row = {"id": cid, "slug": c.slug, "wording_en": c.wording_en, "wording_zh": c.wording_zh,
               "source": c.source, "source_url": c.source_url, "metric": c.metric, "claimed": c.claimed,
               "comparison": c.comparison, "tolerance": c.tolerance, "notebook": c.notebook,
               "verdict": None, "report": None, "draft": False}
        if best:
            row.update(verdict=best[2], report=best[1]["id"], draft=best[1]["draft"])
        rows.append(row)
    return rows


def build(reports: Path | None = None) -> Path:
    """Write reports/claims.json and reports/index.html; return the index path."""
    reports = Path(reports or paths.reports_dir())
    reports.mkdir(parents=True, exist_ok=True)
    rs = scan(reports)
    led = ledger(rs)
    atomic_write_text(reports / "claims.json", json.dumps(led, indent=2, ensure_ascii=False))
    atomic_write_text(reports / "index.html", INDEX.render(ledger=led, reports=rs))
    return reports / "index.html"
