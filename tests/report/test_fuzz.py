"""Issue 14: a seeded fuzz over every notebook's parameters and every kind of catalog file.

Each case is either refused before any kernel starts, with a clear message (exit 2, the
parameter or the file named, no traceback), or accepted. A seeded sample of the accepted
cases then runs through the real runner for at most ``LPULAB_FUZZ_SECONDS`` (default 150 s):
each must end in a report whose numbers are all finite, or in a failed report whose error a
notebook or lpulab raised on purpose (the last frame of its traceback is in lpulab or in the
notebook, not inside numpy or pandas). Never a traceback, never a partial file.

The counts (tried, refused, accepted, ran, clear in-kernel refusals, tracebacks) are printed
at the end: ``pytest tests/report/test_fuzz.py -s``.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import time
from pathlib import Path

import pytest

from lpulab import catalog, cli, paths
from lpulab.report import params, runner

SEED = 20261129
BUDGET_S = float(os.environ.get("LPULAB_FUZZ_SECONDS", "150"))
NOTEBOOKS = sorted(p.stem for p in paths.NOTEBOOKS.glob("[0-9]*.ipynb"))
HEAVY = {"05_kernels"}  # minutes per run: its parameters are fuzzed up to the kernel only

NUMBERS = [math.nan, math.inf, -math.inf, -1, -1e-9, 0, 0.0, 1e-320, 1e-300, 1e308, 2 ** 63, 1e400 if False else 1e30,
           "1e400", "nan", True, "fast", None, [], {}, [1, 2], 0.5, 3, 10 ** 6 + 1]
TEXTS = ["", "x" * 5000, "<script>alert(1)</script>", "../../etc/passwd", "nvidia-h100-sxm\x00", 5, None, True,
         ["a"], {"a": 1}, "NVIDIA-H100-SXM", " nvidia-h100-sxm"]
LISTS = [[], [math.nan], [-1], [0], [1e308], ["x"], [[1]], "not a list", None, 5, [None], list(range(2000)),
         [1] * 3, [[[[[[]]]]]]]


def _hostile(decl: params.Declared, rng: random.Random) -> object:
    """A value meant to break ``decl``: off its type, at or past its bounds, not finite."""
    pool = {"int": NUMBERS, "float": NUMBERS, "str": TEXTS, "bool": ["maybe", 2, None, [], "yes"],
            "list": LISTS}.get(decl.type_name, NUMBERS + TEXTS)
    if decl.tag == "range" and rng.random() < 0.5:
        lo, _lop, _hop, hi = params.parse_range(decl.tag_arg[0])
        ends = [float(x) for x in (lo, hi) if re.match(r"^-?[\d.e+]+$", x)]
        if ends:
            e = rng.choice(ends)
            v = rng.choice([e, e * (1 + 1e-9) + 1e-12, e * (1 - 1e-9) - 1e-12, e * 10, e / 10])
            v = int(v) if decl.type_name == "int" and rng.random() < 0.7 and math.isfinite(v) else v
            return [v] if decl.type_name == "list" else v
    return rng.choice(pool)


def param_cases(rng: random.Random, per_param: int = 3) -> list[tuple[str, dict]]:
    cases = []
    for nb in NOTEBOOKS:
        decl = params.declared_parameters(nb)
        for name, d in decl.items():
            for _ in range(per_param):
                cases.append((nb, {name: _hostile(d, rng)}))
        for _ in range(6):  # two at once
            a, b = rng.sample(sorted(decl), 2)
            cases.append((nb, {a: _hostile(decl[a], rng), b: _hostile(decl[b], rng)}))
    return cases


# --- catalog files --------------------------------------------------------------------------------

TOML_NUMBER = re.compile(r"(?m)((?:value|low|high|claimed|tolerance) = )(-?[0-9][0-9_.e+-]*)")
TOML_TEXT = re.compile(r'(?m)^((?:unit|source|kind|name|confidence|comparison|notebook|source_url|category|id) = )"[^"\n]*"')
HOSTILE_TOML = ["nan", "inf", "-inf", "-1", "0", "1e300", '"x"', "[1, 2]", "true", "{ a = 1 }", "1e-320"]
HOSTILE_TEXT = ["3", '["x"]', '""', '"furlong"', '"javascript:alert(1)"', "{ a = 1 }", "true", '"nope"']
HOSTILE_CELL = ["nan", "-1", "", "inf", "abc", "1e400", '"a,b"', "0"]


def _mutate_toml(text: str, rng: random.Random) -> str:
    how = rng.choice(["number", "number", "text", "text", "drop", "header", "unknown"])
    if how == "number" and TOML_NUMBER.search(text):
        ms = list(TOML_NUMBER.finditer(text))
        m = rng.choice(ms)
        return text[:m.start(2)] + rng.choice(HOSTILE_TOML) + text[m.end(2):]
    if how == "text" and TOML_TEXT.search(text):
        m = rng.choice(list(TOML_TEXT.finditer(text)))
        return text[:m.end(1)] + rng.choice(HOSTILE_TEXT) + text[m.end():]
    lines = text.splitlines()
    if how == "header":
        heads = [i for i, ln in enumerate(lines) if ln.startswith("[")]
        if heads:
            i = rng.choice(heads)
            lines[i] = "[" + rng.choice(["nonsense", "memory.dram2", "sources", "compute.fp3"]) + "]"
            return "\n".join(lines) + "\n"
    if how == "unknown":
        return text.replace("\n", "\nmystery = 1\n", 1)
    keep = [ln for ln in lines if ln.strip()]
    keep.pop(rng.randrange(len(keep)))
    return "\n".join(keep) + "\n"


def _mutate_csv(text: str, rng: random.Random) -> str:
    import csv
    import io

    rows = list(csv.reader(io.StringIO(text)))
    r = rng.randrange(1, len(rows))
    c = rng.randrange(len(rows[0]))
    if rng.random() < 0.2:
        rows[0][c] = "mystery"
    else:
        rows[r][c] = rng.choice(HOSTILE_CELL)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def catalog_cases(rng: random.Random, per_kind: int = 12) -> list[tuple[str, str, str]]:
    """(kind, file name, mutated text) for hardware, models, prices, measurements and claims."""
    out = []
    for kind, folder, pattern in (("hardware", paths.HARDWARE, "*.toml"), ("models", paths.MODELS, "*.toml"),
                                  ("prices", paths.PRICES, "*.toml"), ("measurements", paths.MEASUREMENTS, "*.csv")):
        files = sorted(folder.glob(pattern))
        for _ in range(per_kind):
            f = rng.choice(files)
            text = f.read_text(encoding="utf-8")
            out.append((kind, f.name, _mutate_csv(text, rng) if f.suffix == ".csv" else _mutate_toml(text, rng)))
    claims = paths.CLAIMS.read_text(encoding="utf-8")
    out += [("claims", "claims.toml", _mutate_toml(claims, rng)) for _ in range(per_kind)]
    return out


# --- checks ----------------------------------------------------------------------------------------

def _finite(x) -> bool:
    if isinstance(x, float):
        return math.isfinite(x)
    if isinstance(x, dict):
        return all(_finite(v) for v in x.values())
    if isinstance(x, list):
        return all(_finite(v) for v in x)
    return True


_ARROW = re.compile(r"^\s*-+>\s*\d+\s+(.*)$", re.M)
_FILE = re.compile(r'File "?([^",:\n]+)(?:"?, line \d+|:\d+)|(Cell In\[\d+\])')


def _clear_in_kernel(report: Path) -> bool:
    """A failed run's error was raised on purpose: the line its traceback ends on is a
    ``raise`` statement, in lpulab or in a notebook cell (not an IndexError out of numpy, not
    a ZeroDivisionError in a formula)."""
    nb = json.loads((report / "notebook.ipynb").read_text())
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(out.get("traceback", [])))
                files = [m.group(1) or m.group(2) for m in _FILE.finditer(text)]
                arrows = _ARROW.findall(text)
                where = files[-1] if files else ""
                return bool(arrows) and "raise " in arrows[-1] and (where.startswith("Cell In") or "/lpulab/" in where)
    return False


@pytest.mark.notebook
def test_fuzz_parameters_and_catalog_files(tmp_path, monkeypatch, capsys):
    rng = random.Random(SEED)
    monkeypatch.setenv("LPULAB_REPORTS", str(tmp_path / "reports"))
    started: list[str] = []  # what reached the point where kernels start; nothing runs here
    monkeypatch.setattr(cli, "_run_batch", lambda plans, ns, **k: (started.extend(p.report_id for p in plans), ([], False))[1])
    counts = dict(tried=0, refused=0, accepted=0, ran=0, ran_ok=0, refused_in_kernel=0, traceback=0, partial=0)
    unclear: list[str] = []
    accepted: list[tuple[str, dict, str | None]] = []

    def attempt(argv: list[str], names: list[str]) -> bool:
        """True when refused clearly; False when a kernel would have started."""
        before = len(started)
        try:
            rc = cli.main(argv)
        except SystemExit as exc:  # argparse's own refusal, e.g. a value that looks like an option
            rc = exc.code
            names = ["error:"]
        err = capsys.readouterr().err
        counts["tried"] += 1
        if len(started) > before:
            counts["accepted"] += 1
            return False
        counts["refused"] += 1
        if rc != 2 or "Traceback" in err or "error:" not in err or not any(n in err for n in names):
            unclear.append(f"{str(argv)[:300]}: rc {rc}: {err[:300]}")
        return True

    for nb, values in param_cases(rng):
        argv = ["run", nb, "-q", "--label", "fuzz"]
        for k, v in values.items():
            argv += ["-p", k, v if isinstance(v, str) else json.dumps(v)]
        if not attempt(argv, list(values)):
            accepted.append((nb, values, None))
    for i, (kind, name, text) in enumerate(catalog_cases(rng)):
        if kind == "claims":  # not overlaid by a user folder: checked by the loader itself
            f = tmp_path / f"claims-{i}" / "claims.toml"
            f.parent.mkdir()
            f.write_text(text, encoding="utf-8")
            counts["tried"] += 1
            try:
                claims = catalog._checked(catalog.load_claims, f)
            except catalog.CatalogError as exc:
                counts["refused"] += 1
                if "claims.toml" not in str(exc):
                    unclear.append(f"claims: {exc}")
                continue
            counts["accepted"] += 1
            for c in claims.values():  # what the ledger divides by and compares with
                assert math.isfinite(c.claimed) and c.claimed > 0 and 0 <= c.tolerance < 1, c
            continue
        d = tmp_path / f"data-{i}"
        (d / kind).mkdir(parents=True)
        (d / kind / name).write_text(text, encoding="utf-8")
        if not attempt(["run", "01_bandwidth", "-q", "--label", "fuzz", "--data", str(d)], [name]):
            accepted.append(("01_bandwidth", {}, str(d)))
    monkeypatch.undo()

    # a seeded sample of what was accepted runs for real, cheap notebooks first
    reports = tmp_path / "reports"
    runnable = [a for a in accepted if a[0] not in HEAVY]
    rng.shuffle(runnable)
    t0 = time.monotonic()
    for nb, values, data in runnable:
        if time.monotonic() - t0 > BUDGET_S:
            break
        if data:
            monkeypatch.setenv("LPULAB_DATA", data)
        else:
            monkeypatch.delenv("LPULAB_DATA", raising=False)
        r = runner.run_notebook(nb, values, label="fuzz", reports=reports, progress=False, build_index=False,
                                timeout=300)
        counts["ran"] += 1
        if r.ok:
            res = json.loads((r.path / "results.json").read_text())
            assert _finite(res), (nb, values)
            assert (r.path / "report.html").is_file()
            counts["ran_ok"] += 1
        elif _clear_in_kernel(r.path):
            counts["refused_in_kernel"] += 1
            print(f"in-kernel refusal {nb} {values} {data or ''}: {r.error[:200]}")
        else:
            counts["traceback"] += 1
            unclear.append(f"run {nb} {values} {data or ''}: {r.failure}: {r.error[:300]}")
        if not r.ok and (r.path / "report.html").exists():
            counts["partial"] += 1
    counts["partial"] += len([d for d in reports.iterdir() if d.name.startswith((".tmp-", ".old-"))]) if reports.exists() else 0
    with capsys.disabled():
        print(f"\nfuzz (seed {SEED}, {BUDGET_S:.0f} s of runs): " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    assert not unclear, "\n".join(unclear[:20])
    assert counts["traceback"] == 0 and counts["partial"] == 0
    assert counts["refused"] > 0 and counts["accepted"] > 0 and counts["tried"] == counts["refused"] + counts["accepted"]
