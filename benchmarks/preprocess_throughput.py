#!/usr/bin/env python3
"""Throughput of the preprocessing steps on a large synthetic corpus, with 1 and 2 processes.

Generates --papers synthetic genomics papers with forge.data.synthetic (deterministic: the same
--papers and --seed give the same corpus), then runs the `preprocess` list of --recipe (default:
recipes/genomics_qlora.yaml, the demo's genomics recipe) over them once per --processes value, as
`data.num_proc` would. Prints Markdown ready for BENCHMARKS.md: the machine and date, one row per
process count (wall seconds, papers/s, CPU seconds of this process and its children, the load average
before the run, and the parallel capacity: how many times one process's work N busy loops got done at
once just before, which is N on N free cores and less on a shared machine), and the seconds of each step.

Without --tokenizer the `chunk` step counts words, as `build_datasets` does without a tokenizer;
with --tokenizer (a from_pretrained folder or hub id) it counts that tokenizer's tokens.

    python benchmarks/preprocess_throughput.py                       # 100,000 papers, 1 and 2 processes
    python benchmarks/preprocess_throughput.py --papers 20000 --processes 1 2 4
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import resource
import sys
import time
from pathlib import Path

from machine import cpu_model  # benchmarks/machine.py (the script's own folder is on the path)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from forge.data.preprocess import PreprocessResult, resolve_steps, run_steps  # noqa: E402
from forge.data.steps import StepContext  # noqa: E402
from forge.data.synthetic import generate_papers  # noqa: E402
from forge.recipe.validate import resolve  # noqa: E402


def cpu_seconds() -> float:
    """User + system time of this process and of its children that have ended (the pool's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def busy_loop(n: int = 6_000_000) -> float:
    """Seconds a pure-Python loop takes: the unit of CPU throughput for `parallel_capacity`."""
    started = time.perf_counter()
    total = 0
    for i in range(n):
        total += i
    return time.perf_counter() - started


def parallel_capacity(processes: int) -> float:
    """How many times the work of one process the machine did with `processes` busy loops at once (2.0
    on two free cores; less when the cores are shared with other work, as on a busy VM)."""
    import multiprocessing

    alone = busy_loop()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        together = max(pool.map(busy_loop, [6_000_000] * processes))
    return processes * alone / together


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "genomics_qlora.yaml"))
    parser.add_argument("--tokenizer", default=None, help="tokenizer for the chunk step (default: words)")
    args = parser.parse_args(argv)

    recipe = resolve(args.recipe).recipe
    steps = resolve_steps(recipe.preprocess)
    tokenizer = None
    if args.tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    context = StepContext(tokenizer=tokenizer, max_seq_length=recipe.training.max_seq_length,
                          fields=tuple(recipe.data.fields), format=recipe.data.format, seed=recipe.run.seed)

    started = time.perf_counter()
    papers = generate_papers(args.papers, seed=args.seed)
    generated = time.perf_counter() - started
    print(f"generated {len(papers)} papers in {generated:.1f} s", file=sys.stderr, flush=True)

    runs: list[tuple[int, float, float, float, float, PreprocessResult]] = []
    for processes in args.processes:
        capacity = parallel_capacity(processes) if processes > 1 else 1.0
        load = os.getloadavg()[0]
        cpu, started = cpu_seconds(), time.perf_counter()
        result = run_steps(papers, steps, context, num_proc=processes)
        wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        print(f"{processes} process(es): {wall:.1f} s", file=sys.stderr, flush=True)
        runs.append((processes, wall, cpu, load, capacity, result))
    outputs = {len(r.papers) for *_, r in runs}
    assert len(outputs) == 1, f"process counts disagree on the output: {outputs}"  # sharding must not change it

    cores = len(os.sched_getaffinity(0))
    print(f"Machine: {cpu_model()}, {cores} cores available (os.sched_getaffinity), Python "
          f"{platform.python_version()}; {_dt.date.today().isoformat()}.")
    recipe_name = Path(args.recipe).resolve()
    recipe_name = recipe_name.relative_to(REPO) if recipe_name.is_relative_to(REPO) else recipe_name
    chunk_unit = f"tokens of {args.tokenizer}" if args.tokenizer else "words"
    print(f"Corpus: {len(papers):,} synthetic papers (forge.data.synthetic, seed {args.seed}), generated in "
          f"{generated:.0f} s; the steps of `{recipe_name}` ({', '.join(s.name for s in steps)}), chunk "
          f"counting {chunk_unit}; {outputs.pop():,} papers or chunks out.\n")
    print("| papers | processes | seconds | papers/s | CPU seconds | load average before | parallel capacity |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for processes, wall, cpu, load, capacity, _ in runs:
        print(f"| {len(papers):,} | {processes} | {wall:.1f} | {len(papers) / wall:,.0f} | {cpu:.1f} | {load:.2f} "
              f"| {capacity:.2f} |")
    print("\nSeconds per step (with several processes, summed over the processes that ran it):\n")
    print("| step | " + " | ".join(f"{p} process{'es' if p > 1 else ''}" for p, *_ in runs) + " | papers in | papers out |")
    print("| --- | " + " | ".join("---:" for _ in runs) + " | ---: | ---: |")
    first = runs[0][-1]
    for i, stat in enumerate(first.steps):
        times = " | ".join(f"{r.steps[i].seconds:.1f}" for *_, r in runs)
        print(f"| {stat.name} | {times} | {stat.papers_in:,} | {stat.papers_out:,} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
