#!/usr/bin/env python3
"""Single-GPU DeepSpeed next to the plain run: `forge run` of recipes/genomics_qlora.yaml on the demo corpus,
with LoRA (bf16 weights) and QLoRA (4-bit NF4), each plain, under ZeRO-2 and under ZeRO-3; then a kill
and resume under ZeRO-2 (SIGKILL of the training process after a checkpoint, `forge run --resume`, the
resumed losses compared with the uninterrupted run's).

The model is a LLaMA-shaped model that Forge builds (random init, no network): hidden 2048, 8 layers
(~0.4B parameters). Every row goes through the `forge` command, as a user's run would.

    python benchmarks/distributed_single_gpu.py [--steps 20] [--out DIR]

Prints a Markdown table (device, date, tokens/s, peak GPU memory, losses) and writes it to DIR/table.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = ["model.name_or_path=forge:tiny-llama", "model.tiny.hidden_size=2048", "model.tiny.num_layers=8",
         "model.tiny.num_heads=16", "model.tiny.intermediate_size=5504", "model.tiny.vocab_size=8192",
         "model.dtype=bfloat16"]
LORA = ["quantization.mode=none"]
QLORA = ["quantization.mode=4bit"]
VARIANTS = {
    "LoRA, plain": LORA,
    "LoRA, ZeRO-2": LORA + ["distribution.strategy=deepspeed", "distribution.zero_stage=2"],
    "LoRA, ZeRO-3": LORA + ["distribution.strategy=deepspeed", "distribution.zero_stage=3"],
    "QLoRA, plain": QLORA,
    "QLoRA, ZeRO-2": QLORA + ["distribution.strategy=deepspeed", "distribution.zero_stage=2"],
    "QLoRA, ZeRO-3": QLORA + ["distribution.strategy=deepspeed", "distribution.zero_stage=3"],
}


def common(steps: int, out: Path, name: str) -> list[str]:
    return [*MODEL, "optimizer.name=adamw_torch", "optimizer.lr=5.0e-4", "training.epochs=1",
            f"training.max_steps={steps}", "training.micro_batch_size=4", "training.gradient_accumulation_steps=2",
            "training.max_seq_length=1024", f"training.save_steps={max(steps // 2, 1)}",
            f"training.eval_steps={max(steps // 2, 1)}", "training.logging_steps=1", "training.early_stopping.enabled=false",
            "tracking.enabled=false", "evaluation.enabled=false", f"run.output_dir={out}", f"run.name={name}"]


def forge(args: list[str], log, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "forge", "run", "recipes/genomics_qlora.yaml", *args], cwd=REPO,
                            env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def losses(run_dir: Path) -> dict[int, float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if r.get("kind") == "train"}


def row(name: str, run_dir: Path, code: int, seconds: float) -> str:
    try:
        s = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return f"| {name} | failed (exit {code}, no summary) | | | | |"
    if s.get("status") != "completed":
        return f"| {name} | {s.get('status')} (exit {code}): {str(s.get('error', ''))[:120]} | | | | |"
    return (f"| {name} | {s['tokens_per_second']:,.0f} | {s['peak_memory_bytes'] / 2**30:.2f} | "
            f"{s['train_loss_first']:.3f} -> {s['train_loss_last']:.3f} | {s['eval']['loss']:.3f} | {seconds:.0f} |")


def kill_and_resume(steps: int, out: Path, log, env: dict[str, str], reference: Path) -> str:
    """ZeRO-2 QLoRA: SIGKILL the training process once the first checkpoint is complete, then --resume."""
    import psutil

    name = "zero2-killed"
    args = QLORA + ["distribution.strategy=deepspeed", "distribution.zero_stage=2"] + common(steps, out, name)
    run_dir = out / name
    marker = run_dir / "checkpoints" / f"checkpoint-{max(steps // 2, 1)}" / "forge-complete.json"
    process = forge(args, log, env)
    killed = None
    while process.poll() is None:
        if marker.exists() and killed is None:
            for child in psutil.Process(process.pid).children(recursive=True):
                if "forge.train.worker" in " ".join(child.cmdline()):
                    killed = child.pid
                    os.kill(child.pid, signal.SIGKILL)
        time.sleep(0.2)
    first = process.returncode
    summary = json.loads((run_dir / "summary.json").read_text())
    resumed = forge(args + ["--resume"], log, env)
    second = resumed.wait()
    done = json.loads((run_dir / "summary.json").read_text())
    expected, got = losses(reference), losses(run_dir)
    worst = max((abs(got[k] - expected[k]) / abs(expected[k]) for k in expected if k in got), default=math.nan)
    return (f"SIGKILL of the training process after {marker.parent.name}: first run exit {first}, status "
            f"{summary.get('status')}, last checkpoint {Path(summary.get('last_checkpoint') or 'none').name}; "
            f"`forge run --resume` exit {second}, status {done.get('status')}, steps {done.get('steps')}, resumed from "
            f"{Path(done.get('resumed_from') or 'none').name}; largest relative difference of the training loss "
            f"from the uninterrupted ZeRO-2 QLoRA run over {len(got)} steps: {worst:.2e}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None, help="where table.md and runs.log go")
    parser.add_argument("--only", nargs="*", default=None, help="variant names to run (default: all)")
    args = parser.parse_args()
    import torch

    out_dir = args.out or Path(tempfile.mkdtemp(prefix="forge-dist-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = Path(tempfile.mkdtemp(prefix="forge-dist-runs-"))
    env = {**os.environ, "FORGE_CACHE": str(runs / "cache"), "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    lines = [f"Device: {device}; date {dt.date.today().isoformat()}; {args.steps} steps of 8 x 1024 tokens "
             "(micro-batch 4, accumulation 2), LLaMA-shaped 0.4B model (hidden 2048, 8 layers), LoRA r16 all-linear, "
             "gradient checkpointing, bf16, AdamW; tokens/s over the whole run (first steps included).", "",
             "| run | tokens/s | peak GPU memory (GiB) | train loss first -> last | validation loss | wall s |",
             "| --- | --- | --- | --- | --- | --- |"]
    names = [n for n in VARIANTS if args.only is None or n in args.only]
    with open(out_dir / "runs.log", "w") as log:
        for name in names:
            slug = name.lower().replace(", ", "-").replace(" ", "")
            started = time.time()
            code = forge(VARIANTS[name] + common(args.steps, runs, slug), log, env).wait()
            lines.append(row(name, runs / slug, code, time.time() - started))
            print(lines[-1], flush=True)
            (out_dir / "table.md").write_text("\n".join(lines) + "\n")  # what is done survives a timeout
        if args.only is None or "resume" in args.only:
            lines += ["", kill_and_resume(args.steps, runs, log, env, runs / "qlora-zero-2")]
    table = "\n".join(lines)
    print("\n" + table)
    (out_dir / "table.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
