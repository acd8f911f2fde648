#!/usr/bin/env python3
"""training.memory's predictions against measurement: `forge run` of the throughput benchmark's QLoRA recipe on a
random-init model of Llama-2-7B's layer shape (all 32 layers, or fewer with --layers, quantized as it loads) at
each shape and budget, printing what the planner chose, its predicted peak against the measured one (allocated
and reserved) and tokens/s with MFU.

    python benchmarks/memory_plan.py [--layers 8] [--shapes 2048x8,8192x1] [--budgets auto,off,16GiB]
        [--steps 3] [--warmup 2] [--out DIR] [--work DIR]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_throughput as bench  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--shapes", default="2048x8,8192x1")
    parser.add_argument("--budgets", default="auto,off,16GiB")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("memory-plan-results"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/forge-memory-plan"))
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    env = {**bench.os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    device = bench.device_name()
    rows = []
    with open(args.out / "log.txt", "a") as log:
        started = time.time()
        model = bench.build_bf16(args.work, args.layers, log)
        print(f"model ready in {time.time() - started:.0f}s", flush=True)
        for seq, batch in bench.parse_shapes(args.shapes):
            total = args.warmup + args.steps
            corpus = bench.write_corpus(args.work, batch, seq, total + 1)
            recipe = bench.write_recipe(args.work, model, corpus, seq, batch, total)
            for budget in args.budgets.split(","):
                name = f"m-{seq}x{batch}-{budget}"
                row = bench.run_forge(recipe, name, [f"training.memory={budget}"], args.work, args.warmup, log, env,
                                      seq, batch, args.timeout)
                row["budget"] = budget
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "losses"})[:600], flush=True)
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1))
    text = render(rows, device, args.layers, args.steps)
    (args.out / "table.md").write_text(text + "\n")
    print(text)
    return 0


def render(rows: list[dict], device: str, layers: int, steps: int) -> str:
    lines = [f"training.memory, predicted against measured, {device}, {dt.date.today().isoformat()} (random-init "
             f"Llama-2-7B layer shape, {layers} layers, NF4 on load, LoRA r16 all-linear; median step of {steps})", "",
             "| seq x batch | training.memory | plan | predicted peak GiB | measured GiB (allocated / reserved) | "
             "measured / predicted | tokens/s | MFU | losses (first 3) |", "|---|---|---|---:|---|---:|---:|---:|---|"]
    for r in rows:
        key = f"{r['seq']}x{r['batch']}"
        if r.get("error") or not r.get("tokens_per_second"):
            lines.append(f"| {key} | {r['budget']} | {r.get('error') or 'no steps'} | | | | | | |")
            continue
        plan, flops = r.get("memory") or {}, r.get("flops") or {}
        choice = plan.get("choice") or {}
        predicted = plan.get("predicted_peak_bytes")
        ratio = f"{r['peak_allocated'] / predicted:.2f}" if predicted and r.get("peak_allocated") else "-"
        what = f"ckpt {choice['checkpointed']}/{choice['layers']}, offl. {choice['offloaded']}" if choice else "every layer"
        mfu = f"{flops['model_per_token'] * r['tokens_per_second'] / flops['peak_flops']:.1%}" \
            if flops.get("peak_flops") else "-"
        lines.append(f"| {key} | {r['budget']} | {what} | {bench.gib(predicted)} | {bench.gib(r.get('peak_allocated'))}"
                     f" / {bench.gib(r.get('peak_reserved'))} | {ratio} | {r['tokens_per_second']:,.0f} | {mfu} | "
                     f"{', '.join(f'{x:.4f}' for x in (r.get('losses') or [])[:3])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
