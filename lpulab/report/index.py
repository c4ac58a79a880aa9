"""reports/index.html and reports/claims.json: every report, and the claim ledger."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import jinja2

from .. import catalog, paths
from .io import atomic_write_text, read_status

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)


def num(x, spec: str = ".3g") -> str:
    """A number for the index, or "n/a" for anything that is not a finite one (a status
    file from an older or damaged run must not stop the index)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return "n/a"
    return format(x, spec)


def params_text(d, limit: int = 160) -> str:
    """``name=value, ...`` of the parameters that differ from the notebook's defaults."""
    if not isinstance(d, dict) or not d:
        return ""
    text = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in sorted(d.items()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def headline_text(h) -> str:
    if not isinstance(h, dict) or not h.get("name"):
        return ""
    unit = h.get("unit") or ""
    text = f"{h['name']}: {num(h.get('value'))}{unit}"
    if "low" in h and "high" in h:
        text += f" [{num(h.get('low'))}, {num(h.get('high'))}]"
    if h.get("holds"):
        text += f", {h['holds']}"
    return text


_ENV.filters["num"] = num

INDEX = _ENV.from_string("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>lpulab: claims and reports</title>
<style>
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#111}
table{border-collapse:collapse;width:100%;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f4f6}.holds{color:#166534;font-weight:bold}.fails{color:#991b1b;font-weight:bold}.depends{color:#92400e;font-weight:bold}
.failed{color:#991b1b}.draft{background:#fde68a;padding:0 4px}small{color:#555}.none{color:#555;font-style:italic}
details{margin:0.3em 0}summary{cursor:pointer}
figure.headline{margin:1em 0}figure.headline img{max-width:100%;height:auto}figcaption{color:#333;font-size:0.95em}
ul.where li{margin:0.4em 0}
</style></head><body>
<h1>lpulab: is Groq's LPU 20x, 10x and 38x what people say?</h1>
<section class="answer" id="answer">
{% if front %}<figure class="headline"><a href="{{ front.report_url }}"><img src="{{ front.chart }}" alt="{{ front.alt }}" width="1000"></a>
<figcaption>{{ front.caption }} From <a href="{{ front.report_url }}">{{ front.report }}</a>{% if front.draft %} <span class="draft">DRAFT</span>{% endif %}.</figcaption></figure>
{% else %}<p class="none">No frontier chart yet: run notebook {{ front_notebook }} (<code>make reproduce</code>).</p>{% endif %}
<ul class="where">{% for s in sentences %}<li id="where-{{ s.id }}"><b>{{ s.id }}</b> {% if s.sentence %}{{ s.sentence }} <small>(<a href="{{ s.report_url }}">{{ s.report }}</a>{% if s.draft %} <span class="draft">DRAFT</span>{% endif %})</small>{% else %}<span class="none">no sentence yet: run notebook {{ s.notebook }}</span>{% endif %}</li>
{% endfor %}</ul>
</section>
<p>Each claim below is recomputed from its own assumptions ("as stated") and from the best
estimate lpulab can make, with an uncertainty band. Numbers come from the linked reports.
A claim holds when the estimate and both ends of its band meet the claimed value within the tolerance,
does not hold when none does, and depends on assumptions otherwise. Each claim's band spans something
different (GPUs compared, operating points, or a Monte Carlo's 5th to 95th percentile): the ledger says which.</p>
<h2>Claim ledger</h2>
<table class="ledger"><thead><tr><th>claim</th><th>wording and source</th><th>as stated</th><th>best estimate [band]</th><th>verdict</th><th>key assumptions</th><th>report</th></tr></thead><tbody>
{% for c in ledger %}<tr id="{{ c.id }}"><td><b>{{ c.id }}</b> {{ c.slug }}<br><small>{{ c.metric }}</small></td>
<td>{{ c.wording_en }}<br><span lang="zh-Hans">{{ c.wording_zh }}</span><br><small>{% if c.source_href %}<a href="{{ c.source_href }}">{{ c.source }}</a>{% else %}{{ c.source }}{% endif %}</small></td>
{% if c.verdict %}<td>{{ c.verdict.as_stated|num }}x<br><small>{{ 'reproduces the claimed number' if c.verdict.reproduces else 'does not reproduce the claimed number' }}</small></td>
<td>{{ c.verdict.estimate|num }}x [{{ c.verdict.low|num }}, {{ c.verdict.high|num }}]{% if c.band %}<br><small>band: {{ c.band }}</small>{% endif %}</td>
<td class="{{ {'holds':'holds','does not hold':'fails'}.get(c.verdict.holds, 'depends') }}">{{ c.verdict.holds }}<br><small>claimed {{ c.comparison }} {{ c.claimed|num('g') }}x, tolerance {{ (100 * c.tolerance)|num('.0f') }} %</small></td>
<td><small>{% for k, v in c.verdict.assumptions.items() %}{{ k }}: {{ v }}<br>{% endfor %}{% if c.verdict.note %}{{ c.verdict.note }}{% endif %}</small></td>
<td><a href="{{ c.report_url }}">{{ c.report }}</a>{% if c.draft %} <span class="draft">DRAFT</span>{% endif %}<br><small>parameters: {{ c.label }}{% if c.params %} ({{ c.params }}){% endif %}{% if c.sweep %} (a point of sweep <a href="#sweep-{{ c.sweep }}">{{ c.sweep }}</a>){% endif %}</small></td>
{% else %}<td colspan="2" class="none">no report yet: run notebook {{ c.notebook }}
{%- if c.failed_report %}; its latest run <a href="{{ c.failed_report }}/notebook.ipynb">{{ c.failed_report }}</a> failed: {{ c.failed_error }}{% endif %}</td>
<td class="none">no verdict<br><small>claimed {{ c.comparison }} {{ c.claimed|num('g') }}x, tolerance {{ (100 * c.tolerance)|num('.0f') }} %</small></td><td></td><td class="none">none</td>{% endif %}</tr>
{% endfor %}</tbody></table>
<h2>Reports</h2>
{% if reports %}<table class="reports"><thead><tr><th>report</th><th>notebook</th><th>parameters (as changed from the defaults)</th><th>headline</th><th>status</th><th>commit</th><th>run (UTC)</th></tr></thead><tbody>
{% for r in reports %}<tr><td>{% if r.status == 'ok' %}<a href="{{ r.id }}/report.html">{{ r.id }}</a>{% else %}<a href="{{ r.id }}/notebook.ipynb">{{ r.id }}</a>{% endif %}</td>
<td>{{ r.notebook }}</td><td><small>{{ r.label }}{% if r.params %}: {{ r.params }}{% elif r.status == 'ok' %}: the defaults{% endif %}</small></td>
<td><small>{{ r.headline }}</small></td>
<td class="{{ 'failed' if r.status != 'ok' else '' }}">{{ r.status }}{% if r.error %}<br><small>{% if r.failed_cell is not none %}cell {{ r.failed_cell }}: {% endif %}{{ r.error }}</small>{% endif %}</td>
<td><code>{{ r.commit[:10] }}</code>{% if r.draft %} <span class="draft">DRAFT</span>{% endif %}</td><td>{{ r.utc_time }}</td></tr>
{% endfor %}</tbody></table>{% else %}<p class="none">No single runs yet: <code>lpulab run</code> or <code>make reproduce</code>.</p>{% endif %}
{% if sweeps %}<h2>Sweeps</h2>
<table class="sweeps"><thead><tr><th>sweep</th><th>notebook</th><th>sets</th><th>ok</th><th>failed</th><th>table</th><th>commit</th><th>run (UTC)</th></tr></thead><tbody>
{% for s in sweeps %}<tr id="sweep-{{ s.name }}"><td><b>{{ s.name }}</b>
<details><summary>{{ s.runs|length }} report(s)</summary><small>{% for r in s.runs %}
{% if r.status == 'ok' %}<a href="{{ r.report_id }}/report.html">{{ r.report_id }}</a>{% else %}<a class="failed" href="{{ r.report_id }}/notebook.ipynb">{{ r.report_id }}</a> (failed){% endif %}
{% for k, v in r.varied.items() %}{{ k }}={{ v }} {% endfor %}<br>{% endfor %}</small></details></td>
<td>{{ s.notebook }}</td><td>{{ s.sets }}</td><td>{{ s.ok }}</td><td class="{{ 'failed' if s.failed else '' }}">{{ s.failed }}</td>
<td>{% for t in s.tables %}<a href="sweeps/{{ s.name }}/{{ t }}">{{ t }}</a> {% endfor %}
{% if s.chart %}<br><a href="sweeps/{{ s.name }}/{{ s.chart }}"><img src="sweeps/{{ s.name }}/{{ s.chart }}" alt="{{ s.chart_alt }}" width="320"></a>{% endif %}</td>
<td><code>{{ s.commit[:10] }}</code></td><td>{{ s.utc_time }}</td></tr>
{% endfor %}</tbody></table>{% endif %}
</body></html>
""")


def _verdicts(v) -> list[dict]:
    """The verdicts of a status file that can be shown (mappings naming a claim), each with
    every field the index reads (a missing or damaged one shows as n/a)."""
    out = []
    for x in v if isinstance(v, list) else []:
        if not isinstance(x, dict) or not isinstance(x.get("claim"), str):
            continue
        y = dict(x)
        for k in ("as_stated", "estimate", "low", "high"):
            y.setdefault(k, None)
        y["reproduces"] = bool(x.get("reproduces"))
        y["holds"] = x.get("holds") if isinstance(x.get("holds"), str) else "unknown"
        y["assumptions"] = x.get("assumptions") if isinstance(x.get("assumptions"), dict) else {}
        y["note"] = x.get("note") if isinstance(x.get("note"), str) else ""
        out.append(y)
    return out


def scan(reports: Path | None = None) -> list[dict]:
    """One summary per report folder (finished or failed), newest first. A folder whose
    status.json cannot be read is listed as ``unreadable``; it never stops the index."""
    reports = Path(reports or paths.reports_dir())
    out = []
    for d in sorted(reports.glob("*/")):
        if d.name.startswith(".") or d.name == "sweeps":
            continue
        if not (d / "status.json").exists():
            continue
        st = read_status(d)
        if st is None:
            out.append({"id": d.name, "notebook": "", "label": "", "status": "unreadable",
                        "error": "status.json cannot be read", "commit": "", "draft": False, "utc_time": "",
                        "verdicts": [], "sweep": None, "failure": "", "failed_cell": None, "params": "",
                        "headline": ""})
            continue
        text = lambda k: st.get(k) if isinstance(st.get(k), str) else ""  # noqa: E731, B023 (used within this iteration)
        out.append({
            "id": d.name, "notebook": text("notebook"), "label": text("label"),
            "status": text("status") or "unknown", "error": text("error"),
            "commit": text("commit"), "draft": bool(st.get("dirty", False)), "utc_time": text("utc_time"),
            "verdicts": _verdicts(st.get("verdicts")), "sweep": st.get("sweep") if isinstance(st.get("sweep"), str) else None,
            "failure": text("failure"), "failed_cell": st.get("failed_cell") if isinstance(st.get("failed_cell"), int) else None,
            "params": params_text(st.get("non_default")), "headline": headline_text(st.get("headline")),
        })
    out.sort(key=lambda r: str(r["utc_time"]), reverse=True)
    return out


def web_url(url) -> str | None:
    """``url`` when it is an http(s) address, else None: only those become links (a
    ``javascript:`` or ``data:`` URL in a data file must not)."""
    return url if isinstance(url, str) and re.match(r"https?://[^\s]+$", url, re.I) else None


def ledger(reports_list: list[dict]) -> list[dict]:
    """The ledger: each claim with its verdict from the most relevant report.

    A report run with the notebook's default parameters wins over other runs of the same
    claim, a single run wins over a point of a sweep (sweeps vary assumptions on purpose);
    among equals the newest wins. A claim with no report has ``verdict = None`` and
    ``status = "no report yet"`` (and names its latest failed run, if any).
    """
    rows = []
    for cid, c in catalog.load_claims().items():
        best = None
        for r in reports_list:  # newest first
            if r["status"] != "ok":
                continue
            for v in r["verdicts"]:
                if v["claim"] == cid:
                    rank = (r["label"] == "default", not r.get("sweep"))
                    if best is None or rank > best[0]:
                        best = (rank, r, v)
        row = {"id": cid, "slug": c.slug, "wording_en": c.wording_en, "wording_zh": c.wording_zh, "band": c.band,
               "source": c.source, "source_url": c.source_url, "source_href": web_url(c.source_url), "metric": c.metric, "claimed": c.claimed,
               "comparison": c.comparison, "tolerance": c.tolerance, "notebook": c.notebook,
               "status": "no report yet", "verdict": None, "report": None, "report_url": None, "label": None,
               "sweep": None, "draft": False, "failed_report": None, "failed_error": None, "params": ""}
        if best:
            assumed = best[2].get("assumptions") if isinstance(best[2].get("assumptions"), dict) else {}
            if not row["band"] and isinstance(assumed.get("band"), str):
                row["band"] = assumed["band"]
            row.update(status="reported", verdict=best[2], report=best[1]["id"], label=best[1]["label"],
                       params=best[1].get("params", ""),
                       sweep=best[1].get("sweep"),
                       report_url=f"{best[1]['id']}/report.html", draft=best[1]["draft"])
        else:
            failed = next((r for r in reports_list if r["notebook"] == c.notebook and r["status"] != "ok"), None)
            if failed:
                row.update(failed_report=failed["id"], failed_error=failed["error"])
        rows.append(row)
    return rows


def sweeps(reports: Path) -> list[dict]:
    """The sweeps under reports/sweeps/, newest first."""
    out = []
    for f in sorted(Path(reports).glob("sweeps/*/sweep.json")):
        try:
            s = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(s, dict) or not isinstance(s.get("name"), str):
            continue
        s["tables"] = [t for t in s.get("tables", []) if isinstance(t, str) and (f.parent / t).is_file()]
        chart = s.get("chart")
        s["chart"] = chart if isinstance(chart, str) and (f.parent / chart).is_file() else None
        s["chart_alt"] = s.get("chart_alt") if isinstance(s.get("chart_alt"), str) else "chart of the sweep"
        s["runs"] = [r for r in s.get("runs", []) if isinstance(r, dict) and isinstance(r.get("report_id"), str)]
        for r in s["runs"]:
            r.setdefault("status", "unknown")
            r["varied"] = r.get("varied") if isinstance(r.get("varied"), dict) else {}
        for k in ("notebook", "commit", "utc_time"):
            s[k] = s.get(k) if isinstance(s.get(k), str) else ""
        for k in ("sets", "ok", "failed"):
            s[k] = s.get(k) if isinstance(s.get(k), int) else 0
        out.append(s)
    out.sort(key=lambda s: s.get("utc_time", ""), reverse=True)
    return out


def build(reports: Path | None = None) -> Path:
    """Write reports/claims.json and reports/index.html; return the index path."""
    reports = Path(reports or paths.reports_dir())
    reports.mkdir(parents=True, exist_ok=True)
    rs = scan(reports)
    led = ledger(rs)
    sw = sweeps(reports)
    in_sweeps = {r["report_id"] for s in sw for r in s.get("runs", [])}
    singles = [r for r in rs if r["id"] not in in_sweeps]
    atomic_write_text(reports / "claims.json", json.dumps(led, indent=2, ensure_ascii=False))
    front = headline_chart(reports, singles)
    sentences = claim_sentences(reports, singles)
    atomic_write_text(reports / "index.html", INDEX.render(ledger=led, reports=singles, sweeps=sw, front=front,
                                                          sentences=sentences, front_notebook=FRONT_NOTEBOOK))
    return reports / "index.html"


# --------------------------------------------------------------------------- the front page's answer

#: The notebook whose report draws the front page's headline chart.
FRONT_NOTEBOOK = "06_crossover"


def _by_relevance(reports_list: list[dict]) -> list[dict]:
    """Finished single runs, most relevant first: a run with the notebook's defaults, then
    the newest (the ledger's rule)."""
    ok = [r for r in reports_list if r.get("status") == "ok" and not r.get("sweep")]
    return sorted(ok, key=lambda r: (r.get("label") == "default", r.get("utc_time") or ""), reverse=True)


def _results(reports: Path, rid: str) -> dict | None:
    try:
        d = json.loads((Path(reports) / rid / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    res = d.get("results") if isinstance(d, dict) else None
    return res if isinstance(res, dict) else None


def claim_sentences(reports: Path, reports_list: list[dict]) -> list[dict]:
    """One sentence per claim saying where it holds and where it does not: the
    ``claim_sentences`` a report recorded (notebook 01 for C1, notebook 06 for C2-C4), from
    the most relevant report that has one, with its link; empty where none has yet."""
    claims_ = catalog.load_claims()
    found: dict[str, dict] = {}
    for r in _by_relevance(reports_list):
        if len(found) == len(claims_):
            break
        res = _results(reports, r["id"])
        sents = res.get("claim_sentences") if res else None
        if not isinstance(sents, dict):
            continue
        for cid, text in sents.items():
            if cid in claims_ and cid not in found and isinstance(text, str) and text.strip():
                found[cid] = {"sentence": text.strip(), "report": r["id"], "report_url": f"{r['id']}/report.html",
                              "draft": r.get("draft", False)}
    notebooks = {"C1": "01_bandwidth"}
    return [{"id": cid, "notebook": notebooks.get(cid, FRONT_NOTEBOOK), "sentence": "", "report": None,
             "report_url": None, "draft": False, **found.get(cid, {})} for cid in claims_]


def headline_chart(reports: Path, reports_list: list[dict]) -> dict | None:
    """The front page's chart: the frontier of the most relevant finished run of
    :data:`FRONT_NOTEBOOK`, drawn from its results.json into ``reports/frontier-<id>.png``
    (drawn once per report; older charts removed). None when there is no such report or
    its results cannot be drawn."""
    runs = [r for r in _by_relevance(reports_list) if r.get("notebook") == FRONT_NOTEBOOK]
    for r in runs:
        res = _results(reports, r["id"])
        if not res or not isinstance(res.get("frontier"), list) or not res["frontier"]:
            continue
        name = f"frontier-{r['id']}.png"
        target = Path(reports) / name
        try:
            if not target.is_file():
                _draw_headline(res, target)
            for old in Path(reports).glob("frontier-*.png"):
                if old.name != name:
                    old.unlink(missing_ok=True)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        plats = [p.get("platform") for p in res.get("platforms", []) if isinstance(p, dict)]
        x = c if isinstance(c := res.get("crossover"), dict) else {}
        where = (f"the SRAM side becomes cheaper per token above {num(x.get('value'))} tok/s per user"
                 if isinstance(x.get("value"), (int, float)) else
                 "the SRAM side is cheaper per token at every speed of the range" if x.get("status") ==
                 "sram cheaper throughout" else "no crossover within the speed range")
        model = res.get("model", "")
        return {"chart": name, "report": r["id"], "report_url": f"{r['id']}/report.html", "draft": r.get("draft", False),
                "alt": (f"Cost per million output tokens (left) and energy per token (right) of each platform's cheapest "
                        f"configuration against the per-user speed target, log axes, for {model}: "
                        f"{', '.join(p for p in plats if p)}; {where}."),
                "caption": (f"When does an SRAM-only deployment win? {model}: each platform's cheapest configuration "
                            f"per per-user speed target (dashed: SRAM side; stars: published runs); {where}.")}
    return None


def _draw_headline(res: dict, target: Path) -> None:
    """Draw the frontier of a notebook 06 result into ``target`` (written whole, then renamed)."""
    import os

    import matplotlib.pyplot as plt

    from .. import plots

    fig = plots.frontier_costs(res["frontier"], res.get("measured") or None, res.get("crossover"),
                               res.get("energy_crossover"), title=f"{res.get('model', '')}: each platform's cheapest "
                               "configuration per speed target")
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.part.png")
    try:
        fig.savefig(tmp, format="png", dpi=110)
        tmp.replace(target)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
