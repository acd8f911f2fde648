#!/usr/bin/env python3
"""Near-duplicate detection: Forge's own MinHash + LSH (forge/data/dedup.py) next to datasketch's MinHash and
MinHashLSH, on the same corpus, with the same num_perm, threshold, shingles and exact-duplicate pass.

The corpus is --papers synthetic genomics papers (forge.data.synthetic, which writes a few exact and near
copies of its own) plus planted pairs whose true Jaccard similarity of 5-word shingle sets is known: for each
level of --levels, --pairs documents of 1,000 random words and a copy with words replaced at evenly spaced
places until the true similarity is just at or above the level, and --pairs exact copies that differ in
case and spacing. Both implementations get the same texts and keep the first paper of a group.

datasketch runs twice: with the bands and rows MinHashLSH picks for the threshold (its default, which weighs
false positives and false negatives equally) and with Forge's banding (`lsh_bands`, which puts the S-curve's
midpoint just below the threshold so pairs at the threshold are candidates). Prints Markdown for
BENCHMARKS.md: the machine and date, then one row per implementation: the fewest wall and CPU seconds of
--repeat runs, documents/s, the peak memory that tracemalloc saw during the call (numpy's arrays included;
a separate run), what each found, the share of each planted level it dropped, and how many of all documents
it decided (kept or dropped) as Forge did. datasketch is no dependency of Forge's: `pip install
datasketch==2.0.0` first.

    python benchmarks/dedup.py                      # 20,000 papers + 4 x 100 planted pairs + 100 exact copies
    python benchmarks/dedup.py --papers 5000 --repeat 1
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import random
import re
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from machine import cpu_model  # benchmarks/machine.py (the script's own folder is on the path)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from forge.data.dedup import Duplicate, exact_key, find_duplicates, lsh_bands  # noqa: E402
from forge.data.papers import all_text  # noqa: E402
from forge.data.synthetic import generate_papers  # noqa: E402

# A word as forge/data/dedup.py reads one: a run of ASCII letters and digits or non-ASCII characters.
WORD = re.compile(r"[0-9a-z\x80-\U0010ffff]+")
PLANTED_WORDS = 1000


def shingles(text: str, k: int) -> list[bytes]:
    """k-word shingles of the lowercased text as Forge forms them (fewer words than k: one shingle)."""
    words = WORD.findall(text.lower())
    if 0 < len(words) < k:
        return [" ".join(words).encode("utf-8")]
    return [" ".join(words[i:i + k]).encode("utf-8") for i in range(len(words) - k + 1)]


def jaccard(a: str, b: str, k: int = 5) -> float:
    sa, sb = set(shingles(a, k)), set(shingles(b, k))
    return len(sa & sb) / len(sa | sb)


def datasketch_duplicates(texts: Sequence[str], threshold: float = 0.8, shingle_size: int = 5, num_perm: int = 64,
                          seed: int = 1, forge_bands: bool = False) -> list[Duplicate]:
    """find_duplicates' contract with datasketch doing the MinHash and the LSH: exact duplicates first, then
    each remaining text is dropped when a kept text that shares an LSH band with it has an estimated Jaccard
    >= threshold (the earliest such kept text is its group), else it is kept and inserted."""
    from datasketch import MinHash, MinHashLSH

    found: list[Duplicate] = []
    first: dict[bytes, int] = {}
    params = lsh_bands(num_perm, threshold) if forge_bands else None
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, params=params)
    permutations = MinHash(num_perm=num_perm, seed=seed).permutations  # drawn once, shared by every MinHash
    kept: dict[int, MinHash] = {}
    for i, text in enumerate(texts):
        key = exact_key(text)
        if key in first:
            found.append(Duplicate(i, first[key], "exact"))
            continue
        first[key] = i
        minhash = MinHash(num_perm=num_perm, seed=seed, permutations=permutations, scheme="affine32")
        minhash.update_batch(shingles(text, shingle_size))
        match = next((j for j in sorted(lsh.query(minhash)) if minhash.jaccard(kept[j]) >= threshold), None)
        if match is None:
            lsh.insert(i, minhash)
            kept[i] = minhash
        else:
            found.append(Duplicate(i, match, "near"))
    return found


def planted(levels: Sequence[float], pairs: int, seed: int) -> tuple[list[str], list[tuple[str, int, int, float]]]:
    """Texts, and (level, original index, copy index, true Jaccard) for each planted pair; the level of an
    exact copy is "exact". Indices are into the returned texts."""
    rng = random.Random(seed)
    texts: list[str] = []
    truth: list[tuple[str, int, int, float]] = []
    shingle_count = PLANTED_WORDS - 4
    for level in [*levels, None]:
        for _ in range(pairs):
            original = [f"p{rng.getrandbits(40):x}" for _ in range(PLANTED_WORDS)]
            if level is None:
                copy = " ".join(original).upper().replace(" ", "  ")
                truth.append(("exact", len(texts), len(texts) + 1, 1.0))
            else:
                # m words replaced 5+ apart: 5m shingles leave and 5m arrive, J = (S - 5m) / (S + 5m).
                m = int(shingle_count * (1 - level) / (5 * (1 + level)))
                edited = list(original)
                for n in range(m):
                    edited[2 + n * (PLANTED_WORDS - 4) // max(m, 1)] = f"q{rng.getrandbits(40):x}"
                copy = " ".join(edited)
                truth.append((f"{level:g}", len(texts), len(texts) + 1, jaccard(" ".join(original), copy)))
            texts += [" ".join(original), copy]
    return texts, truth


def timed(run: Callable[[], list[Duplicate]], repeat: int) -> tuple[float, float, list[Duplicate]]:
    """The fewest wall seconds and the fewest CPU seconds (of this process) of `repeat` runs, and the result."""
    wall, cpu, result = float("inf"), float("inf"), []
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), time.process_time()
        result = run()
        wall, cpu = min(wall, time.perf_counter() - started), min(cpu, time.process_time() - cpu_started)
    return wall, cpu, result


def peak_mib(run: Callable[[], list[Duplicate]]) -> float:
    tracemalloc.start()
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


@dataclass
class Row:
    """What one implementation did with the corpus."""

    name: str
    seconds: float
    cpu: float
    peak_mib: float
    found: list[Duplicate]
    deterministic: bool
    caught: dict[str, int] = field(default_factory=dict)  # planted copies dropped, by level


def measure(name: str, run: Callable[[], list[Duplicate]], truth: list[tuple[str, int, int, float]],
            repeat: int) -> Row:
    seconds, cpu, found = timed(run, repeat)
    deterministic = found == run()  # one more run with the same seed gives the same duplicates
    dropped = {d.index for d in found}
    caught: dict[str, int] = {}
    for level, _, copy, _ in truth:
        caught[level] = caught.get(level, 0) + (copy in dropped)
    print(f"{name}: {seconds:.2f} s", file=sys.stderr, flush=True)
    return Row(name, seconds, cpu, peak_mib(run), found, deterministic, caught)


def print_table(rows: list[Row], documents: int, pairs: int) -> None:
    reference = {d.index for d in rows[0].found}
    levels = list(rows[0].caught)
    print("| implementation | seconds | CPU seconds | documents/s | peak MiB | groups | exact dropped | near dropped | "
          + " | ".join(f"planted {level} dropped" for level in levels) + " | decided as Forge | same on a rerun |")
    print("| --- | " + " | ".join("---:" for _ in range(7 + len(levels) + 1)) + " | --- |")
    for row in rows:
        exact = sum(d.kind == "exact" for d in row.found)
        same = documents - len({d.index for d in row.found} ^ reference)
        print(f"| {row.name} | {row.seconds:.2f} | {row.cpu:.2f} | {documents / row.seconds:,.0f} | {row.peak_mib:.0f} "
              f"| {len({d.of for d in row.found}):,} | {exact:,} | {len(row.found) - exact:,} | "
              + " | ".join(f"{row.caught[level]}/{pairs}" for level in levels)
              + f" | {same:,}/{documents:,} | {'yes' if row.deterministic else 'no'} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0, help="generator seed (corpus and planted pairs)")
    parser.add_argument("--levels", type=float, nargs="+", default=[0.9, 0.8, 0.7, 0.5])
    parser.add_argument("--pairs", type=int, default=100, help="planted pairs per level, and exact copies")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--shingle-size", type=int, default=5)
    parser.add_argument("--num-perm", type=int, default=64)
    parser.add_argument("--minhash-seed", type=int, default=1, help="the seed of the hashes (the run's seed)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        import datasketch
        from datasketch.lsh import _optimal_param  # the bands and rows MinHashLSH(threshold, num_perm) picks
    except ImportError:
        parser.exit(2, "benchmarks/dedup.py needs datasketch: pip install datasketch==2.0.0\n")
    import numpy

    started = time.perf_counter()
    texts = [all_text(p) for p in generate_papers(args.papers, seed=args.seed)]
    extra, truth = planted(args.levels, args.pairs, args.seed)
    truth = [(level, a + len(texts), b + len(texts), j) for level, a, b, j in truth]
    texts += extra
    print(f"corpus of {len(texts):,} documents in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)

    settings = dict(threshold=args.threshold, shingle_size=args.shingle_size, num_perm=args.num_perm,
                    seed=args.minhash_seed)
    bands, rows = lsh_bands(args.num_perm, args.threshold)
    own_bands, own_rows = _optimal_param(args.threshold, args.num_perm, 0.5, 0.5)
    library = f"datasketch {datasketch.__version__} MinHash + MinHashLSH"
    results = [
        measure(f"Forge (one-permutation MinHash, numpy; LSH {bands}x{rows})",
                lambda: find_duplicates(texts, **settings), truth, args.repeat),
        measure(f"{library} (its banding, {own_bands}x{own_rows})",
                lambda: datasketch_duplicates(texts, **settings), truth, args.repeat),
        measure(f"{library} (Forge's banding, {bands}x{rows})",
                lambda: datasketch_duplicates(texts, **settings, forge_bands=True), truth, args.repeat),
    ]

    print(f"Machine: {cpu_model()}, {len(os.sched_getaffinity(0))} cores available, Python "
          f"{platform.python_version()}, numpy {numpy.__version__}, datasketch {datasketch.__version__}; "
          f"{_dt.date.today().isoformat()}.")
    similarity: dict[str, list[float]] = {}
    for level, _, _, j in truth:
        similarity.setdefault(level, []).append(j)
    planted_text = ", ".join(f"{level} (true Jaccard {min(js):.3f}-{max(js):.3f})" for level, js in similarity.items())
    print(f"Corpus: {len(texts):,} documents: {args.papers:,} synthetic papers (forge.data.synthetic, seed "
          f"{args.seed}) and {len(extra):,} planted: {args.pairs} pairs of {PLANTED_WORDS}-word documents per "
          f"level {planted_text}. Settings: threshold {args.threshold}, {args.shingle_size}-word shingles, "
          f"num_perm {args.num_perm}, seed {args.minhash_seed}; fewest seconds of {args.repeat} runs; peak memory "
          "by tracemalloc in a further run.\n")
    print_table(results, len(texts), args.pairs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
