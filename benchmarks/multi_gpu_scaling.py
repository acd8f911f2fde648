#!/usr/bin/env python3
"""Scaling over the GPUs of one machine: `forge run` of recipes/genomics_qlora.yaml (QLoRA nf4) on one GPU, then
on all of them with DDP, DeepSpeed ZeRO-2, ZeRO-3 and FSDP at the same effective batch; then a rank killed
mid-run under ZeRO-2 and `forge run --resume`.

The model has Llama-2-7B's shape (hidden 4096, MLP 11008, 32 heads, 32 layers unless --layers says fewer),
random init, built once on GPU 0 and saved in bf16 (nothing is downloaded); every run quantizes it to NF4 as it
loads, as a user's run of a hub model does. Rows are packed (training.packing), so every micro-batch holds
micro x seq real tokens; activation offload is off in every row, so that each strategy runs the same switches.

    python benchmarks/multi_gpu_scaling.py [--rows 1gpu,ddp,zero2,zero3,fsdp,kill] [--steps 16] [--layers 32]
        [--seq 2048] [--micro 4] [--warmup 4] [--out DIR] [--work DIR] [--reference ROWS.json ...]
    python benchmarks/multi_gpu_scaling.py --render ROWS.json [ROWS.json ...]

Tokens/s is the median of the per-step rates after the warm-up steps (all ranks' tokens); peak memory is rank
0's. Rows go to DIR/rows.json as they finish and the table to DIR/scaling.md; each run's log to WORK/logs. --reference takes rows.json
files of earlier calls (the one-GPU row and the uninterrupted ZeRO-2 run the others are compared with), so the
rows can be split across calls.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import build_bf16, device_name, gib  # noqa: E402

STRATEGIES = {
    "1gpu": ("1 GPU", []),
    "ddp": ("DDP", ["distribution.strategy=ddp"]),
    "zero2": ("ZeRO-2", ["distribution.strategy=deepspeed", "distribution.zero_stage=2"]),
    "zero3": ("ZeRO-3", ["distribution.strategy=deepspeed", "distribution.zero_stage=3"]),
    "fsdp": ("FSDP", ["distribution.strategy=fsdp"]),
}
NVLINK_MULTICAST_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


def common(args: argparse.Namespace, model: Path, runs: Path, name: str, processes: int, gpus: int) -> list[str]:
    half = max(args.steps // 2, 1)
    return [f"model.name_or_path={model}", "model.dtype=bfloat16", "optimizer.name=adamw_torch",
            "optimizer.lr=2.0e-4", "training.epochs=1", f"training.max_steps={args.steps}",
            f"training.micro_batch_size={args.micro}", f"training.gradient_accumulation_steps={gpus // processes}",
            f"training.max_seq_length={args.seq}", "training.packing=true", "training.speed.activation_offload=false",
            f"training.save_steps={half}", f"training.eval_steps={half}", "training.logging_steps=1",
            "training.early_stopping.enabled=false", "tracking.enabled=false", "evaluation.enabled=false",
            f"distribution.num_processes={processes}", f"run.output_dir={runs}", f"run.name={name}"]


def forge(args: list[str], log, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "forge", "run", "recipes/genomics_qlora.yaml", *args], cwd=REPO,
                            env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def read_run(run_dir: Path, warmup: int) -> dict:
    """What a finished (or failed) run left: status, steady tokens/s, peak memory, losses per step."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        summary = {}
    try:
        records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    except (OSError, ValueError):
        records = []
    train = [r for r in records if r.get("kind") == "train" and "loss" in r]
    rates = [r["tokens_per_second"] for r in train[warmup:] if r.get("tokens_per_second")]
    return {"status": summary.get("status"), "error": summary.get("error"), "speed": summary.get("speed"),
            "steps": summary.get("steps"), "resumed_from": summary.get("resumed_from"),
            "tokens_per_second": statistics.median(rates) if rates else None,
            "run_tokens_per_second": summary.get("tokens_per_second"), "measured_steps": len(rates),
            "peak_allocated": summary.get("peak_memory_bytes"),
            "peak_reserved": summary.get("peak_memory_reserved_bytes"),
            "peak_per_rank": summary.get("peak_memory_bytes_per_rank"),
            "losses": {str(r["step"]): r["loss"] for r in train}}


def worst_difference(got: dict[str, float], expected: dict[str, float]) -> float | None:
    steps = [k for k in expected if k in got]
    return max((abs(got[k] - expected[k]) / abs(expected[k]) for k in steps), default=None)


def log_tail(log_path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_strategy(key: str, args, model: Path, runs: Path, gpus: int, env, log_dir: Path) -> dict:
    name, extra = STRATEGIES[key]
    processes = 1 if key == "1gpu" else gpus
    started = time.time()
    with open(log_dir / f"{key}.log", "w") as log:
        code = forge(extra + common(args, model, runs, key, processes, gpus), log, env).wait()
    row = {"key": key, "name": name, "gpus": processes, "exit": code, "wall": round(time.time() - started),
           **read_run(runs / key, args.warmup)}
    if row["status"] != "completed":
        row["log_tail"] = log_tail(log_dir / f"{key}.log")
    return row


def kill_and_resume(args, model: Path, runs: Path, gpus: int, env, log_dir: Path) -> dict:
    """ZeRO-2 on every GPU; SIGKILL to rank 1 once the middle checkpoint is complete; then --resume."""
    import psutil

    name = "zero2killed"
    run_args = STRATEGIES["zero2"][1] + common(args, model, runs, name, gpus, gpus)
    marker = runs / name / "checkpoints" / f"checkpoint-{max(args.steps // 2, 1)}" / "forge-complete.json"
    killed = None
    with open(log_dir / "kill.log", "w") as log:
        process = forge(run_args, log, env)
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
        first, after_kill = process.returncode, read_run(runs / name, args.warmup)
        second = forge(run_args + ["--resume"], log, env).wait()
    done = read_run(runs / name, args.warmup)
    return {"key": "kill", "gpus": gpus, "killed_pid": killed, "checkpoint": marker.parent.name,
            "first_exit": first, "first_status": after_kill["status"], "first_error": after_kill["error"],
            "resume_exit": second, "status": done["status"], "steps": done["steps"],
            "resumed_from": done["resumed_from"], "losses": done["losses"], "log_tail": log_tail(log_dir / "kill.log")}


def highest(row: dict) -> str:
    """The highest rank's peak, where the run recorded every rank's (summary.json of runs after 2026-11-26)."""
    ranks = [v for v in row.get("peak_per_rank") or [] if v]
    return f" (highest rank {gib(max(ranks))})" if len(ranks) > 1 else ""


def render(rows: list[dict], header: str = "") -> str:
    by = {r["key"]: r for r in rows}
    base = by.get("1gpu", {})
    lines = [header, "", "| GPUs | strategy | tokens/s | tokens/s per GPU | per-GPU efficiency | peak GiB rank 0 "
             "(allocated / reserved) | largest loss difference from 1 GPU | switches | wall s |",
             "| --- | --- | ---: | ---: | ---: | --- | ---: | --- | ---: |"] if header else []
    for key in STRATEGIES:
        r = by.get(key)
        if not r:
            continue
        if r.get("status") != "completed" or not r.get("tokens_per_second"):
            error = (r.get("error") or (r.get("log_tail") or "").splitlines()[-1:] or ["?"])
            error = error if isinstance(error, str) else error[0]
            lines.append(f"| {r['gpus']} | {r['name']} | failed (exit {r.get('exit')}): {error[:200]} | | | | | | |")
            continue
        tps = r["tokens_per_second"]
        efficiency = f"{tps / r['gpus'] / base['tokens_per_second']:.0%}" if base.get("tokens_per_second") else "-"
        gap = worst_difference(r["losses"], base.get("losses") or {}) if key != "1gpu" else 0.0
        speed = r.get("speed") or {}
        switches = ", ".join(k for k in ("liger_kernels", "fused_lora", "padding_free", "activation_offload")
                             if speed.get(k)) or "none"
        lines.append(f"| {r['gpus']} | {r['name']} | {tps:,.0f} | {tps / r['gpus']:,.0f} | {efficiency} | "
                     f"{gib(r.get('peak_allocated'))} / {gib(r.get('peak_reserved'))}{highest(r)} | "
                     f"{'-' if gap is None else f'{gap:.1e}'} | {switches} | {r['wall']} |")
    kill = by.get("kill")
    if kill:
        gap = worst_difference(kill["losses"], (by.get("zero2") or {}).get("losses") or {})
        lines += ["", f"Kill and resume under ZeRO-2 on {kill['gpus']} GPUs: rank 1 (pid {kill['killed_pid']}) got "
                  f"SIGKILL once {kill['checkpoint']} was complete; the run exited {kill['first_exit']} with status "
                  f"{kill['first_status']} ({str(kill['first_error'] or '')[:220]}); `forge run --resume` exited "
                  f"{kill['resume_exit']}, status {kill['status']}, {kill['steps']} steps, resumed from "
                  f"{Path(kill['resumed_from'] or 'none').name}; largest relative difference of its training loss "
                  f"from the uninterrupted ZeRO-2 run: {'-' if gap is None else f'{gap:.1e}'}."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1gpu,ddp,zero2,zero3,fsdp,kill")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=4, help="steps left out of the median")
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--micro", type=int, default=4, help="micro-batch per GPU")
    parser.add_argument("--out", type=Path, default=Path("scaling-results"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/forge-scaling"))
    parser.add_argument("--reference", type=Path, nargs="*", default=[], help="rows.json of earlier calls")
    args = parser.parse_args()
    import torch

    keys = [k for k in args.rows.split(",") if k]
    unknown = [k for k in keys if k not in STRATEGIES and k != "kill"]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(STRATEGIES) + ['kill']}")
    gpus = torch.cuda.device_count()
    if gpus < 2:
        parser.error(f"this machine has {gpus} GPU(s); scaling needs at least 2")
    args.out.mkdir(parents=True, exist_ok=True)
    runs = args.work / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    logs = args.work / "logs"  # one log per run; failed rows carry its tail in rows.json
    logs.mkdir(exist_ok=True)
    env = {**os.environ, **NVLINK_MULTICAST_OFF, "FORGE_CACHE": str(args.work / "cache"), "PYTHONUNBUFFERED": "1",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    header = (f"{gpus} x {device_name()}, {dt.date.today().isoformat()}: `forge run` of recipes/genomics_qlora.yaml, "
              f"QLoRA nf4 + double quant, LoRA r16 all-linear, Llama-2-7B shape with {args.layers} layers (random "
              f"init), packed rows of {args.seq} tokens, micro-batch {args.micro} per GPU, effective batch "
              f"{args.micro * gpus} rows; {args.steps} steps, tokens/s the median step after {args.warmup}")
    rows: list[dict] = [r for path in args.reference for r in json.loads(path.read_text())]
    started = time.time()
    with open(logs / "build.log", "w") as log:
        model = build_bf16(args.work, args.layers, log)
    print(f"model ready in {time.time() - started:.0f}s", flush=True)

    def save(row: dict) -> None:
        rows[:] = [r for r in rows if r["key"] != row["key"]] + [row]
        (args.out / "rows.json").write_text(json.dumps(rows, indent=1))
        (args.out / "scaling.md").write_text(render(rows, header) + "\n")
        shown = {k: v for k, v in row.items() if k not in ("losses", "log_tail")}
        print(json.dumps(shown), flush=True)
        if row.get("status") != "completed" and row.get("log_tail"):
            print(row["log_tail"], flush=True)

    for key in keys:
        if key == "kill":
            save(kill_and_resume(args, model, runs, gpus, env, logs))
        else:
            save(run_strategy(key, args, model, runs, gpus, env, logs))
    print("\n" + render(rows, header))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--render":
        rendered = [r for p in sys.argv[2:] for r in json.loads(Path(p).read_text())]
        print(render(rendered, "rows of " + ", ".join(sys.argv[2:])))
        sys.exit(0)
    sys.exit(main())
