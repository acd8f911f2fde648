#!/usr/bin/env python3
"""Where a QLoRA training step spends its GPU time: one step of `forge run` (through run_recipe, with a
profiler callback) and of Unsloth (when --unsloth-site is given), on the 7B-shaped model and corpus of
benchmarks/train_throughput.py, printed as the top kernels by GPU time. With --compile, also the graph breaks
of Forge's regional compile. With --host, where the host's time goes instead: a step's time without a
profiler, the share of a profiled step the GPU was busy, and the host syncs (with the Python frames asking for
them) and CPU operators of a step profiled with stacks, and a step under cProfile (Python functions by own time).

    python benchmarks/profile_step.py [--work /tmp/forge-throughput] [--shape 2048x8] [--unsloth-site DIR]
        [--compile] [--host] [--stacks forge,unsloth] [--set KEY=VALUE ...]
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


SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
OUR_FRAMES = ("forge/", "trl/", "transformers/trainer", "accelerate/", "peft/", "benchmarks/")
STACK_FILES = (*OUR_FRAMES, "transformers/", "liger_kernel/", "bitsandbytes/", "unsloth", "torch/utils/checkpoint",
               "torch/autograd/")


def device_spans(prof) -> list[tuple[float, float]]:
    """(start, end) of every kernel and copy on the GPU in the profile, in microseconds, sorted."""
    spans = []
    for event in prof.events():
        if str(getattr(event, "device_type", "")).endswith("CUDA"):
            start = event.time_range.start
            spans.append((start, start + event.device_time_total))
    return sorted(spans)


def busy_report(prof, wall: float) -> str:
    """How much of the step the GPU was busy: the union of its kernels' and copies' intervals."""
    spans = device_spans(prof)
    busy, end = 0.0, float("-inf")
    for a, b in spans:
        if b > end:
            busy += b - max(a, end)
            end = b
    return (f"step {wall * 1e3:.1f} ms (profiled); GPU busy {busy / 1e3:.1f} ms "
            f"({100 * busy / 1e3 / (wall * 1e3):.0f}%), {len(spans)} kernels and copies")


def gap_report(prof, top: int = 12) -> str:
    """The GPU's idle gaps in the profiled window (longest first, those over 0.2 ms), each with the outermost CPU
    operators running during it: what the host was doing while the GPU waited."""
    spans = device_spans(prof)
    outer = [e for e in prof.events() if not str(getattr(e, "device_type", "")).endswith("CUDA")
             and e.cpu_parent is None]
    gaps, end = [], spans[0][1] if spans else 0
    for a, b in spans[1:]:
        if a > end + 200:
            gaps.append((a - end, end, a))
        end = max(end, b)
    first = spans[0][0] if spans else 0
    lines = [f"GPU idle gaps over 0.2 ms: {len(gaps)}, {sum(g[0] for g in gaps) / 1e3:.1f} ms in all"]
    for length, a, b in sorted(gaps, reverse=True)[:top]:
        during = []
        for event in outer:
            if event.time_range.start < b and event.time_range.end > a and event.name not in during:
                during.append(event.name)
        lines.append(f"  {length / 1e3:7.2f} ms at +{(a - first) / 1e3:7.1f} ms: {'; '.join(during)[:240]}")
    return "\n".join(lines)


def sync_report(prof, wall: float) -> str:
    """The host syncs of the step (each with the Python frames that asked for it) and the CPU operators by their
    own time (from a profile with Python stacks, which slows the host)."""
    syncs = []
    for event in prof.events():
        if event.name in SYNCS:
            # the Python frames come as the call's parents ("file(line): function"); the first operator among
            # them (aten::item, ...) is what asked for the sync
            operator, frames, parent = None, [], event.cpu_parent
            while parent is not None:
                if operator is None and parent.name.startswith("aten::"):
                    operator = parent.name
                if "): " in parent.name and any(k in parent.name for k in OUR_FRAMES):
                    frames.append(parent.name)
                parent = parent.cpu_parent
            syncs.append((event.cpu_time_total, operator or event.name, frames[:3]))
    lines = [f"step {wall * 1e3:.1f} ms (profiled with stacks); {len(syncs)} host syncs waiting "
             f"{sum(s[0] for s in syncs) / 1e3:.1f} ms"]
    for waited, name, frames in syncs[:20]:
        lines.append(f"  sync {waited / 1e3:7.2f} ms under {name}: {' <- '.join(frames)[:300]}")
    lines.append("CPU operators by own time:")
    for avg in sorted(prof.key_averages(), key=lambda a: -a.self_cpu_time_total)[:ROWS]:
        lines.append(f"  {avg.self_cpu_time_total / 1e3:9.2f} ms {avg.count:6d} calls  {avg.key[:90]}")
    return "\n".join(lines)


def python_report(prof, wall: float) -> str:
    """Where the host's Python time goes in a step profiled with cProfile (which slows Python-heavy code most):
    functions by their own time, and Forge's, TRL's, PEFT's and transformers' functions by time inside them."""
    import pstats

    stats = pstats.Stats(prof).stats  # (file, line, name) -> (calls, primitive calls, own, inclusive, callers)

    def where(key) -> str:
        file, line, name = key
        return name if file == "~" else f"{'/'.join(Path(file).parts[-3:])}:{line}({name})"

    rows = sorted(stats.items(), key=lambda kv: -kv[1][2])[:ROWS]
    lines = [f"step {wall * 1e3:.1f} ms (under cProfile); functions by own time:"]
    lines += [f"  {own * 1e3:8.2f} ms {calls:7d} calls  {where(key)[:110]}" for key, (_, calls, own, _, _) in rows]
    ours = sorted(((k, v) for k, v in stats.items() if any(f in k[0] for f in STACK_FILES)),
                  key=lambda kv: -kv[1][3])[:ROWS]
    lines.append("functions of the stacks by time inside them:")
    lines += [f"  {inside * 1e3:8.2f} ms {calls:7d} calls  {where(key)[:110]}"
              for key, (_, calls, _, inside, _) in ours]
    return "\n".join(lines)


class Windows:
    """The measured steps: in host mode, the first timed without a profiler, the second profiled for GPU busy
    time, the third profiled with Python stacks for syncs, the fourth under cProfile; otherwise one step
    profiled for kernels."""

    def __init__(self, name: str, host: bool) -> None:
        self.name = name
        self.plans = ["plain", "busy", "stacks", "python"] if host else ["kernels"]

    def begin(self, index: int) -> None:
        import torch

        self.plan = self.plans[index]
        torch.cuda.synchronize()
        self.prof = None
        if self.plan == "python":
            import cProfile

            self.prof = cProfile.Profile()
            self.prof.enable()
        elif self.plan != "plain":
            self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                          torch.profiler.ProfilerActivity.CUDA],
                                               with_stack=self.plan == "stacks")
            self.prof.__enter__()
        self.start = time.perf_counter()

    def end(self) -> None:
        import torch

        torch.cuda.synchronize()
        wall = time.perf_counter() - self.start
        if self.plan == "python":
            self.prof.disable()
        elif self.prof is not None:
            self.prof.__exit__(None, None, None)
        report = {"plain": lambda: f"step {wall * 1e3:.1f} ms (no profiler)",
                  "busy": lambda: busy_report(self.prof, wall) + "\n" + gap_report(self.prof),
                  "stacks": lambda: sync_report(self.prof, wall), "kernels": lambda: top_kernels(self.prof),
                  "python": lambda: python_report(self.prof, wall)}
        print(f"{self.name} step: {wall:.3f} s\n{report[self.plan]()}", flush=True)


def profile_forge(recipe: Path, overrides: list[str], compile_counters: bool, host: bool = False) -> None:
    from transformers import TrainerCallback

    sys.path.insert(0, str(tt.REPO))
    from forge.plan import compile_plan
    from forge.recipe import resolve
    from forge.train.run import run_recipe

    windows, first = Windows("forge", host), 3

    class Profile(TrainerCallback):
        """Each window runs from one step's end to the next one's: the logging and data loading between steps
        included, as they are in a step's share of the run."""

        def on_step_end(self, args, state, control, **kwargs):
            index = state.global_step - first
            if 0 < index <= len(windows.plans):
                windows.end()
            if 0 <= index < len(windows.plans):
                windows.begin(index)

    steps = first + len(windows.plans) + 1
    resolved = resolve(recipe, ["run.name=profile", f"training.max_steps={steps}", *overrides])
    # a fresh run each time: an earlier profile of the same recipe left its final checkpoint to resume from
    summary = run_recipe(resolved, compile_plan(resolved.recipe), resume="never", progress=False,
                         callbacks=[Profile()])
    print("forge:", summary["status"], summary.get("speed"), summary.get("error"), flush=True)
    if compile_counters:
        from torch._dynamo.utils import counters

        breaks = counters["graph_break"]
        print(f"graph breaks: {sum(breaks.values())} in {len(breaks)} kinds", flush=True)
        for reason, n in sorted(breaks.items(), key=lambda kv: -kv[1])[:12]:
            print(f"  {n:5d}  {str(reason)[:200]}", flush=True)


def profile_unsloth(model_dir: str, batches: str, shape: str, host: bool = False) -> None:
    seq, batch = tt.parse_shapes(shape)[0]
    model = tt.unsloth_model(model_dir, seq)  # imports unsloth before torch, as it asks

    import torch

    ids = torch.tensor(json.loads(Path(batches).read_text())[f"{seq}x{batch}"], device="cuda")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-4)
    for _ in range(3):
        tt.train_step(model, ids, params, optimizer)
    windows = Windows("unsloth", host)
    for index in range(len(windows.plans)):
        windows.begin(index)
        tt.train_step(model, ids, params, optimizer)
        windows.end()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/forge-throughput"))
    parser.add_argument("--shape", default="2048x8")
    parser.add_argument("--unsloth-site", type=Path)
    parser.add_argument("--compile", action="store_true", help="also profile training.speed.compile=regional")
    parser.add_argument("--set", action="append", default=[], help="recipe override for the forge step")
    parser.add_argument("--host", action="store_true",
                        help="report host time instead of kernels: GPU busy share, host syncs, CPU operators, "
                             "Python functions (cProfile)")
    parser.add_argument("--stacks", default="forge,unsloth")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    (seq, batch), = tt.parse_shapes(args.shape)
    with open(args.work / "profile-log.txt", "a") as log:
        model = tt.build_model(args.work, log)
    recipe = tt.write_recipe(args.work, model, tt.write_corpus(args.work, batch, seq, 16), seq, batch, 5)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    mode = "host" if args.host else ""
    runs = [["_forge", str(recipe), json.dumps(args.set), mode]] if "forge" in args.stacks else []
    if args.compile:
        runs.append(["_forge", str(recipe), json.dumps([*args.set, "training.speed.compile=regional"]),
                     ",".join(filter(None, [mode, "counters"]))])
    for cmd in runs:
        subprocess.call([sys.executable, __file__, *cmd], env=env)
    if args.unsloth_site and "unsloth" in args.stacks:
        batches = tt.token_batches(args.work, {(seq, batch): recipe}, model)
        subprocess.call([sys.executable, __file__, "_unsloth", str(model), str(batches), args.shape, mode],
                        env={**env, "PYTHONPATH": str(args.unsloth_site)}, cwd=args.work)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_forge":
        flags = sys.argv[4].split(",")
        profile_forge(Path(sys.argv[2]), json.loads(sys.argv[3]), "counters" in flags, "host" in flags)
    elif len(sys.argv) > 1 and sys.argv[1] == "_unsloth":
        profile_unsloth(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "host")
    else:
        sys.exit(main())
