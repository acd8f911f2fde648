#!/usr/bin/env python3
"""Scaling over the GPUs of one machine: `forge run` of recipes/genomics_qlora.yaml (QLoRA nf4) on one GPU, then
on all of them with DDP, DeepSpeed ZeRO-2 and ZeRO-3 at the same effective batch; then a rank killed mid-run
under ZeRO-2 and `forge run --resume`.

The model has Llama-2-7B's layer shapes (hidden 4096, MLP 11008, 32 heads) with 8 of its 32 layers, so that
each run loads in seconds; Forge builds it (random init, no network).

    python benchmarks/multi_gpu_scaling.py [--steps 12] [--out DIR]

Prints a Markdown table (GPUs, strategy, tokens/s, per-GPU efficiency, peak memory of rank 0, loss agreement
with the one-GPU run) and writes it to DIR/scaling.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = ["model.name_or_path=forge:tiny-llama", "model.tiny.hidden_size=4096", "model.tiny.num_layers=8",
         "model.tiny.num_heads=32", "model.tiny.intermediate_size=11008", "model.tiny.vocab_size=32000",
         "model.dtype=bfloat16"]
MICRO = 2


def common(steps: int, out: Path, name: str, accumulation: int) -> list[str]:
    half = max(steps // 2, 1)
    return [*MODEL, "optimizer.name=adamw_torch", "optimizer.lr=3.0e-4", "training.epochs=1",
            f"training.max_steps={steps}", f"training.micro_batch_size={MICRO}",
            f"training.gradient_accumulation_steps={accumulation}", "training.max_seq_length=1024",
            f"training.save_steps={half}", f"training.eval_steps={half}", "training.logging_steps=1",
            "training.early_stopping.enabled=false", "tracking.enabled=false", "evaluation.enabled=false",
            f"run.output_dir={out}", f"run.name={name}"]


def forge(args: list[str], log, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "forge", "run", "recipes/genomics_qlora.yaml", *args], cwd=REPO,
                            env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def losses(run_dir: Path) -> dict[int, float]:
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return {}
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if r.get("kind") == "train"}


def summary(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


def worst_difference(got: dict[int, float], expected: dict[int, float]) -> float:
    common_steps = [k for k in expected if k in got]
    return max((abs(got[k] - expected[k]) / abs(expected[k]) for k in common_steps), default=float("nan"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-kill", action="store_true", help="skip the kill-and-resume part")
    args = parser.parse_args()
    import torch

    gpus = torch.cuda.device_count()
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="forge-scaling-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = Path(tempfile.mkdtemp(prefix="forge-scaling-runs-"))
    env = {**os.environ, "FORGE_CACHE": str(runs / "cache"), "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    effective = MICRO * gpus
    lines = [f"Device: {gpus} x {torch.cuda.get_device_name()}; date {dt.date.today().isoformat()}; QLoRA nf4 + double "
             f"quant, LoRA r16 all-linear, Llama-2-7B layer shapes with 8 layers; {args.steps} steps of "
             f"{effective} x 1024 tokens (micro-batch {MICRO}); gradient checkpointing, bf16, AdamW.", "",
             "| GPUs | strategy | tokens/s | tokens/s per GPU | per-GPU efficiency | peak memory rank 0 (GiB) | "
             "largest loss difference from 1 GPU | wall s |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    plans = [("1 GPU", 1, []), ("DDP", gpus, ["distribution.strategy=ddp"]),
             ("ZeRO-2", gpus, ["distribution.strategy=deepspeed", "distribution.zero_stage=2"]),
             ("ZeRO-3", gpus, ["distribution.strategy=deepspeed", "distribution.zero_stage=3"])]
    base_tps, base_losses = None, {}
    with open(out_dir / "runs.log", "w") as log:
        for name, n, extra in plans:
            slug = name.lower().replace(" ", "").replace("-", "")
            accumulation = effective // (MICRO * n)
            started = time.time()
            code = forge(extra + [f"distribution.num_processes={n}"] + common(args.steps, runs, slug, accumulation),
                         log, env).wait()
            s = summary(runs / slug)
            if s.get("status") != "completed":
                lines.append(f"| {n} | {name} | failed (exit {code}): {str(s.get('error', ''))[:150]} | | | | | |")
            else:
                tps = s["tokens_per_second"]
                base_tps = base_tps or tps
                base_losses = base_losses or losses(runs / slug)
                lines.append(f"| {n} | {name} | {tps:,.0f} | {tps / n:,.0f} | {tps / n / base_tps:.0%} | "
                             f"{s['peak_memory_bytes'] / 2**30:.2f} | "
                             f"{worst_difference(losses(runs / slug), base_losses):.1e} | {time.time() - started:.0f} |")
            print(lines[-1], flush=True)
            (out_dir / "scaling.md").write_text("\n".join(lines) + "\n")

        if args.no_kill:
            table = "\n".join(lines)
            print("\n" + table)
            (out_dir / "scaling.md").write_text(table + "\n")
            return 0
        import psutil  # a rank killed mid-run, then --resume

        name = "zero2killed"
        args_killed = ["distribution.strategy=deepspeed", "distribution.zero_stage=2", f"distribution.num_processes={gpus}"]
        args_killed += common(args.steps, runs, name, 1)
        marker = runs / name / "checkpoints" / f"checkpoint-{max(args.steps // 2, 1)}" / "forge-complete.json"
        process, killed = forge(args_killed, log, env), None
        while process.poll() is None:
            if marker.exists() and killed is None:
                for child in psutil.Process(process.pid).children(recursive=True):
                    try:
                        if "forge.train.worker" in " ".join(child.cmdline()) and child.environ().get("RANK") == "1":
                            killed = child.pid
                            os.kill(child.pid, signal.SIGKILL)
                    except psutil.Error:
                        continue
            time.sleep(0.2)
        first, after_kill = process.returncode, summary(runs / name)
        second = forge(args_killed + ["--resume"], log, env).wait()
        done = summary(runs / name)
        reference = losses(runs / "zero2")
        lines += ["", f"Kill and resume under ZeRO-2 on {gpus} GPUs: rank 1 (pid {killed}) got SIGKILL after "
                  f"{marker.parent.name}; the run exited {first} with status {after_kill.get('status')} "
                  f"({str(after_kill.get('error', ''))[:200]}); `forge run --resume` exited {second}, status "
                  f"{done.get('status')}, {done.get('steps')} steps, resumed from "
                  f"{Path(done.get('resumed_from') or 'none').name}; largest relative difference of its training "
                  f"loss from the uninterrupted ZeRO-2 run: {worst_difference(losses(runs / name), reference):.1e}."]
    table = "\n".join(lines)
    print("\n" + table)
    (out_dir / "scaling.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
