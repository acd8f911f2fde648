#!/usr/bin/env python3
"""Where a QLoRA training step spends its GPU time: one step of `forge run` (through run_recipe, with a
profiler callback) and of Unsloth (when --unsloth-site is given), on the 7B-shaped model and corpus of
benchmarks/train_throughput.py, printed as the top kernels by GPU time. With --compile, also the graph breaks
of Forge's regional compile.

    python benchmarks/profile_step.py [--work /tmp/forge-throughput] [--shape 2048x8] [--unsloth-site DIR]
        [--compile] [--set KEY=VALUE ...]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_throughput as tt  # noqa: E402

ROWS = 25


def top_kernels(prof) -> str:
    """Kernels (not CPU ops) grouped by name, by total GPU time, with their share of the step."""
    totals: dict[str, float] = {}
    for event in prof.events():
        if getattr(event, "device_type", None) is not None and str(event.device_type).endswith("CUDA"):
            totals[event.name] = totals.get(event.name, 0.0) + event.device_time_total
    if not totals:
        return prof.key_averages().table(sort_by="self_device_time_total", row_limit=ROWS)
    whole = sum(totals.values()) or 1.0
    lines = [f"GPU kernel time in the step: {whole / 1e3:.1f} ms"]
    for name, t in sorted(totals.items(), key=lambda kv: -kv[1])[:ROWS]:
        lines.append(f"{t / 1e3:9.2f} ms {100 * t / whole:5.1f}%  {name[:110]}")
    return "\n".join(lines)


def profile_forge(recipe: Path, overrides: list[str], compile_counters: bool) -> None:
    import torch
    from transformers import TrainerCallback

    sys.path.insert(0, str(tt.REPO))
    from forge.plan import compile_plan
    from forge.recipe import resolve
    from forge.train.run import run_recipe

    class Profile(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 3:
                torch.cuda.synchronize()
                self.start = time.perf_counter()
                self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                               torch.profiler.ProfilerActivity.CUDA])
                self.prof.__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 4:
                torch.cuda.synchronize()
                self.prof.__exit__(None, None, None)
                print(f"forge step (profiled): {time.perf_counter() - self.start:.3f} s", flush=True)
                print(top_kernels(self.prof), flush=True)

    resolved = resolve(recipe, ["run.name=profile", "training.max_steps=5", *overrides])
    summary = run_recipe(resolved, compile_plan(resolved.recipe), progress=False, callbacks=[Profile()])
    print("forge:", summary["status"], summary.get("speed"), summary.get("error"), flush=True)
    if compile_counters:
        from torch._dynamo.utils import counters

        breaks = counters["graph_break"]
        print(f"graph breaks: {sum(breaks.values())} in {len(breaks)} kinds", flush=True)
        for reason, n in sorted(breaks.items(), key=lambda kv: -kv[1])[:12]:
            print(f"  {n:5d}  {str(reason)[:200]}", flush=True)


def profile_unsloth(model_dir: str, batches: str, shape: str) -> None:
    seq, batch = tt.parse_shapes(shape)[0]
    model = tt.unsloth_model(model_dir, seq)  # imports unsloth before torch, as it asks

    import torch

    ids = torch.tensor(json.loads(Path(batches).read_text())[f"{seq}x{batch}"], device="cuda")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-4)
    for _ in range(3):
        tt.train_step(model, ids, params, optimizer)
    torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                            torch.profiler.ProfilerActivity.CUDA]) as prof:
        tt.train_step(model, ids, params, optimizer)
        torch.cuda.synchronize()
    print(f"unsloth step (profiled): {time.perf_counter() - start:.3f} s", flush=True)
    print(top_kernels(prof), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/forge-throughput"))
    parser.add_argument("--shape", default="2048x8")
    parser.add_argument("--unsloth-site", type=Path)
    parser.add_argument("--compile", action="store_true", help="also profile training.speed.compile=regional")
    parser.add_argument("--set", action="append", default=[], help="recipe override for the forge step")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    (seq, batch), = tt.parse_shapes(args.shape)
    with open(args.work / "profile-log.txt", "a") as log:
        model = tt.build_model(args.work, log)
    recipe = tt.write_recipe(args.work, model, tt.write_corpus(args.work, batch, seq), seq, batch, 5)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    runs = [["_forge", str(recipe), json.dumps(args.set), ""]]
    if args.compile:
        runs.append(["_forge", str(recipe), json.dumps([*args.set, "training.speed.compile=regional"]), "counters"])
    for cmd in runs:
        subprocess.call([sys.executable, __file__, *cmd], env=env)
    if args.unsloth_site:
        batches = tt.token_batches(args.work, {(seq, batch): recipe}, model)
        subprocess.call([sys.executable, __file__, "_unsloth", str(model), str(batches), args.shape],
                        env={**env, "PYTHONPATH": str(args.unsloth_site)}, cwd=args.work)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_forge":
        profile_forge(Path(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4] == "counters")
    elif len(sys.argv) > 1 and sys.argv[1] == "_unsloth":
        profile_unsloth(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(main())
