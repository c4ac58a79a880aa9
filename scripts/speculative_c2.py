"""What speculative decoding does to C2 (per-user speed, LPU over GPU) for Llama 3.1 70B:
Groq LPU v1 (int8, the fewest chips that hold the model at each concurrency) against eight
H100 SXM (fp8, TP8), 550 tokens in and 150 out, at 1 and 64 streams, plain and with
llama-3.1-8b drafting (k and alpha from data/serving.toml), with the calibrated knobs; then
the speed-up over a grid of k and alpha at one stream, DeepSeek-V3's own MTP head on eight
B200, and a disaggregated split (H100 prefill, LPU decode). docs/speculative.md quotes its
output.

    .venv/bin/python scripts/speculative_c2.py
"""

from __future__ import annotations

from lpulab import calibration, catalog, perf, speculative, speed, workload
from lpulab.parallel import Layout

PROMPT, OUTPUT = 550, 150


def main() -> None:
    cal, measured, _ = speed.calibrate()
    m70, m8 = catalog.load_model("llama-3.1-70b"), catalog.load_model("llama-3.1-8b")
    lpu, h100 = catalog.load_device("groq-lpu-v1"), catalog.load_device("nvidia-h100-sxm")
    p8 = workload.Precision.of("int8")
    k, a = speculative.default("draft")
    spec = speculative.Speculation(k, a, m8)
    print(f"draft llama-3.1-8b, k={k}, alpha={a} ({spec.tokens_per_step:.2f} tokens per verification step)")
    print("| side | streams | layout | chips (draft) | plain tok/s/user | speculative tok/s/user | speed-up |")
    print("|---|---|---|---|---|---|---|")
    user: dict = {}
    for c in (1, 64):
        deps = {"Groq LPU v1": perf.Deployment(lpu, speed.sram_layout(m70, lpu, p8, c, PROMPT + OUTPUT), p8),
                "8x H100 SXM": perf.Deployment(h100, Layout(1, 8, 1), "fp8")}
        for name, dep in deps.items():
            f0 = speed.forecast(m70, dep, c, PROMPT, OUTPUT, cal, measured)
            f1 = speed.forecast(m70, dep, c, PROMPT, OUTPUT, cal, measured, speculation=spec)
            e = f1.prediction.extra
            u0, u1 = float(f0.prediction.per_user_tok_s), float(f1.prediction.per_user_tok_s)
            user[(name, c)] = (u0, u1)
            where = "on the target's" if e["draft_colocated"] else f"{e['draft_chips']} own"
            print(f"| {name} | {c} | {dep.layout.label()} | {f1.prediction.chips} ({where}) | {u0:.0f} | {u1:.0f} | "
                  f"{float(e['speedup_per_user']):.2f}x |")
    print()
    for c in (1, 64):
        lp, gp = user[("Groq LPU v1", 1)], user[("8x H100 SXM", c)]
        print(f"C2, LPU at 1 stream over H100 at {c}: plain {lp[0] / gp[0]:.2f}x, both speculative "
              f"{lp[1] / gp[1]:.2f}x, LPU speculative only {lp[1] / gp[0]:.2f}x")
    ref = speculative.reference_speedups()["groq_llama_3_1_70b"]
    print(f"published (Groq, Llama 3.1 70B): {ref['with']:.0f} tok/s with, {ref['without']:.0f} without: "
          f"{ref['ratio']:.2f}x")
    print()
    print("speed-up at one stream, alpha (rows) x k (columns 1, 2, 4, 8):")
    for name, dev, dep in (("LPU", lpu, perf.Deployment(lpu, speed.sram_layout(m70, lpu, p8, 1, PROMPT + OUTPUT), p8)),
                           ("H100", h100, perf.Deployment(h100, Layout(1, 8, 1), "fp8"))):
        kn = calibration.knobs_for(speed.side_of(dev), cal.values)
        for al in (0.55, 0.7, 0.85, 0.95):
            ups = [float(speculative.predict(m70, dep, speculative.Speculation(kk, al, m8), 1, PROMPT, OUTPUT, kn)
                         .extra["speedup_per_user"]) for kk in (1, 2, 4, 8)]
            print(f"  {name} alpha {al}: " + ", ".join(f"{u:.2f}x" for u in ups))
    print()
    ds = catalog.load_model("deepseek-v3")
    km, am = speculative.default("mtp")
    b200 = perf.Deployment(catalog.load_device("nvidia-b200"), Layout(1, 8, 1), "fp8")
    for c in (1, 64):
        f = speed.forecast(ds, b200, c, PROMPT, OUTPUT, cal, measured, speculation=speculative.Speculation(km, am))
        up = float(f.prediction.extra["speedup_per_user"])
        print(f"deepseek-v3, MTP k={km} alpha={am}, 8x B200 fp8, {c} stream(s): "
              f"{float(f.prediction.per_user_tok_s):.0f} tok/s/user, {up:.2f}x")
    print()
    dl = perf.Deployment(lpu, speed.sram_layout(m70, lpu, p8, 1, PROMPT + OUTPUT), p8)
    f = speed.forecast(m70, dl, 1, PROMPT, OUTPUT, cal, measured, prefill=perf.Deployment(h100, Layout(1, 8, 1), "fp8"))
    f0 = speed.forecast(m70, dl, 1, PROMPT, OUTPUT, cal, measured)
    e = f.prediction.extra
    print(f"disaggregated, 8x H100 prefill -> LPU decode, 1 stream: TTFT {float(f.prediction.ttft_s) * 1e3:.1f} ms "
          f"(prefill {float(e['prefill_s']) * 1e3:.1f} ms + KV {float(e['kv_transfer_s']) * 1e3:.2f} ms for "
          f"{e['kv_bytes'] / 1e6:.0f} MB) against {float(f0.prediction.ttft_s) * 1e3:.1f} ms on the LPU alone; "
          f"{f.prediction.chips} chips ({e['prefill_chips']} + {e['decode_chips']})")


if __name__ == "__main__":
    main()
