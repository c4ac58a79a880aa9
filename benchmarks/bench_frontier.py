"""Benchmark: the frontier search (lpulab.frontier) over every priced platform in the
catalog x 3 models x 50 speed targets x 10,000 joint Monte Carlo draws, and one explorer
redraw; against the same configurations evaluated one by one in a Python loop.

Run: .venv/bin/python benchmarks/bench_frontier.py [--repeat 3] [--draws 10000] [--loop 200]
Prints the medians and the ratios and writes benchmarks/results/frontier.json.

What is timed, per run (medians over --repeat runs, all in this one process):

- build: every platform's layouts as knob-free serving profiles (lpulab.frontier.candidates),
  per model; done once per model and kept by the explorer;
- search: given those, the point frontier at 50 targets, each knob row's evaluation of every
  configuration, the crossovers on a 120-speed grid and the odds map (9 values) over the
  joint draws (lpulab.frontier.analyse with prebuilt candidates);
- the loop: the same work item (one configuration under one draw's knobs and prices: its
  speed, fit, cost per Mtok, and whether it meets each target) done one item at a time in
  Python, timed on a sample of --loop items and reported per item; once with
  ``lpulab.perf.predict`` (the profile built for the item), once with the layout's profile
  built beforehand (``ServingProfile.evaluate`` per item). The ratio divides by the vectorised
  search's time per (configuration x draw) item;
- explorer: one redraw after a slider move (the numbers, and the figure's PNG) over a sweep
  of 20 utilisation values (the axes kept, the lines drawn over them), and a redraw that
  rebuilds the axes and the legend (a platform shown comes or goes).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import statistics
import time

import _common
import numpy as np

MODELS = ("llama-3.1-8b", "llama-2-70b", "llama-3.1-405b")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--draws", type=int, default=10_000)
    ap.add_argument("--targets", type=int, default=50)
    ap.add_argument("--loop", type=int, default=200, help="items timed one by one (per loop variant)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), help="model ids (default: %(default)s)")
    ap.add_argument("--devices", nargs="+", help="hardware ids (default: every device with a price sheet)")
    a = ap.parse_args()

    import lpulab.report  # noqa: F401  (imported once, outside the timings)
    from lpulab import catalog, explore, frontier, perf, speculative, speed
    from lpulab.parallel import Layout

    cal, _, _ = speed.calibrate()
    plats, skipped = frontier.platforms(a.devices)
    print(f"platforms: {', '.join(p.label for p in plats)}"
          + (f"; no price sheet: {', '.join(d for d, _ in skipped)}" if skipped else ""))
    runs = []
    for rep in range(a.repeat):
        run = {"build_s": {}, "search_s": {}, "configs": {}, "skipped": {}}
        built = {}
        for m in a.models:
            t = time.perf_counter()
            c = frontier.candidates(m, plats)
            run["build_s"][m] = time.perf_counter() - t
            built[m] = c
            run["configs"][m] = int(sum(len(frontier._concurrency(p)) for L in c.layouts for p in L.profiles))
            run["skipped"][m] = [p for p, _ in c.skipped]
            t = time.perf_counter()
            r = frontier.analyse(m, targets=(5.0, 1000.0, a.targets), samples=a.draws, seed=rep, prebuilt=c,
                                 with_measured=False)
            run["search_s"][m] = time.perf_counter() - t
            run.setdefault("crossover", {})[m] = r.crossover.value if r.crossover else None
        run["build_total_s"] = sum(run["build_s"].values())
        run["search_total_s"] = sum(run["search_s"].values())
        run["total_s"] = run["build_total_s"] + run["search_total_s"]
        items = sum(run["configs"].values()) * a.draws
        run["vector_us_per_item"] = run["search_total_s"] / items * 1e6

        # the loop, on a sample of (configuration, draw) items of the middle model
        m = "llama-2-70b" if "llama-2-70b" in a.models else a.models[0]
        c = built[m]
        model = catalog.load_model(m)
        inputs = frontier.price_inputs(c.platforms)
        d = frontier.draws(c.platforms, inputs, cal, a.loop, seed=rep, knob_rows=64)
        B, _ = frontier.price_factors(c.platforms, d.values)
        rng = np.random.default_rng(rep)
        flat = [(i, L, j, k) for i, L in enumerate(c.layouts) for j in range(len(L.layouts))
                for k in range(len(frontier._concurrency(L.profiles[j])))]
        pick = [flat[x] for x in rng.integers(0, len(flat), a.loop)]
        targets = frontier.speed_targets(5.0, 1000.0, a.targets)

        def one(i, L, j, k, n, evaluate):
            p = L.platform
            knobs = {}
            for f in ("compute", "memory", "link", "layer_overhead_s", "prefill_compute"):
                v = getattr(d.knobs[p.side], f)
                arr = None if v is None else np.asarray(v, float).reshape(-1)
                knobs[f] = None if arr is None else float(arr[d.row[p.side][n]] if arr.size > 1 else arr[0])
            k_ = perf.Knobs(**knobs)
            pred = evaluate(L, j, k, k_)
            phi = float(d.scale[p.side][n])
            pu = float(np.asarray(pred.per_user_tok_s).reshape(-1)[-1]) * phi
            agg = float(np.asarray(pred.aggregate_tok_s).reshape(-1)[-1]) * phi * L.layouts[j].replicas
            usd = L.units[j] / agg * float(np.asarray(B)[c.platforms.index(p)].reshape(-1)[n]) * 1e6
            fits = bool(np.asarray(pred.fits).reshape(-1)[-1])
            return usd, [fits and pu >= s for s in targets]

        def by_predict(L, j, k, knobs):
            lay, prof = L.layouts[j], L.profiles[j]
            dep = perf.Deployment(L.platform.device, Layout(1, lay.tensor, lay.pipeline, lay.expert),
                                  L.platform.precision)
            streams = float(frontier._concurrency(prof)[k])
            if isinstance(prof, speculative.SpeculativeProfile):
                return speculative.predict(model, dep, prof.spec, streams, c.prompt, c.output, knobs)
            return perf.predict(model, dep, streams, c.prompt, c.output, knobs)

        def by_profile(L, j, k, knobs):
            return L.profiles[j].evaluate(knobs)

        for name, fn in (("loop_predict", by_predict), ("loop_profile", by_profile)):
            t = time.perf_counter()
            for n, (i, L, j, k) in enumerate(pick):
                one(i, L, j, k, n, fn)
            run[f"{name}_us_per_item"] = (time.perf_counter() - t) / len(pick) * 1e6
            run[f"{name}_ratio"] = run[f"{name}_us_per_item"] / run["vector_us_per_item"]
            run[f"{name}_estimate_total_s"] = run[f"{name}_us_per_item"] * items / 1e6

        # the explorer: a slider sweep (blitted) and a redraw that changes the platforms shown
        cv = explore.curves(m, plats, cal)
        fig = explore.Figure(cv.grid)
        sel = [p.label for p in plats]
        fig.update(m, cv, explore.evaluate(cv, sel, frontier.price_inputs(plats)))   # first drawing
        inputs_all = frontier.price_inputs(plats)
        ts = []
        for u in np.linspace(0.3, 1.0, 20):
            t = time.perf_counter()
            out = explore.evaluate(cv, sel, inputs_all, utilisation=float(u), target=150.0)
            fig.update(m, cv, out)
            explore.summary_html(m, out)
            ts.append(time.perf_counter() - t)
        run["explorer_slider_ms"] = statistics.median(ts) * 1e3
        run["explorer_slider_max_ms"] = max(ts) * 1e3
        tf = []
        drawn = [q.label for q, a_ in zip(cv.platforms, cv.units_per_tps) if np.isfinite(a_).any()]
        for k in range(6):
            chosen = sel if k % 2 else [p for p in sel if p != drawn[-1]]   # a drawn platform comes and goes
            t = time.perf_counter()
            out = explore.evaluate(cv, chosen, inputs_all, utilisation=0.7, target=150.0)
            fig.update(m, cv, out)
            explore.summary_html(m, out)
            tf.append(time.perf_counter() - t)
        run["explorer_full_ms"] = statistics.median(tf) * 1e3
        runs.append(run)
        print(f"run {rep + 1}: build {run['build_total_s']:.2f} s, search {run['search_total_s']:.2f} s, total "
              f"{run['total_s']:.2f} s; loop/vector {run['loop_predict_ratio']:.3g}x (predict), "
              f"{run['loop_profile_ratio']:.3g}x (profile); explorer {run['explorer_slider_ms']:.0f} ms slider, "
              f"{run['explorer_full_ms']:.0f} ms full")

    med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
    summary = {k: med(k) for k in ("build_total_s", "search_total_s", "total_s", "vector_us_per_item",
                                   "loop_predict_us_per_item", "loop_profile_us_per_item", "loop_predict_ratio",
                                   "loop_profile_ratio", "loop_predict_estimate_total_s",
                                   "loop_profile_estimate_total_s", "explorer_slider_ms", "explorer_full_ms")}
    summary["per_model_build_s"] = {m: statistics.median(r["build_s"][m] for r in runs) for m in a.models}
    summary["per_model_search_s"] = {m: statistics.median(r["search_s"][m] for r in runs) for m in a.models}
    rows = [{"what": f"build (profiles, {len(a.models)} models)", "median": summary["build_total_s"], "unit": "s"},
            {"what": f"search + Monte Carlo ({len(a.models)} models)", "median": summary["search_total_s"], "unit": "s"},
            {"what": "total", "median": summary["total_s"], "unit": "s", "aim": "< 10 s"},
            {"what": "vectorised, per (configuration x draw)", "median": summary["vector_us_per_item"], "unit": "us"},
            {"what": "loop with perf.predict, per item", "median": summary["loop_predict_us_per_item"], "unit": "us"},
            {"what": "loop over prebuilt profiles, per item", "median": summary["loop_profile_us_per_item"],
             "unit": "us"},
            {"what": "ratio loop (predict) / vectorised", "median": summary["loop_predict_ratio"], "unit": "x"},
            {"what": "ratio loop (profiles) / vectorised", "median": summary["loop_profile_ratio"], "unit": "x"},
            {"what": "explorer redraw, slider", "median": summary["explorer_slider_ms"], "unit": "ms",
             "aim": "< 200 ms"},
            {"what": "explorer redraw, platforms changed", "median": summary["explorer_full_ms"], "unit": "ms"}]
    print(_common.table(rows, ["what", "median", "unit", "aim"]))
    print(f"configurations (layout x streams): {runs[0]['configs']}; skipped: {runs[0]['skipped']}; "
          f"draws {a.draws}, targets {a.targets}")
    path = _common.write_result("frontier", {"args": vars(a), "platforms": [p.label for p in plats],
                                             "summary": summary, "runs": runs})
    print(f"written: {path}")


if __name__ == "__main__":
    main()
