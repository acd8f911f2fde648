"""Deduplication: exact duplicates by normalized text, near duplicates by MinHash + LSH, first kept."""
from __future__ import annotations

import random

import pytest

from data_support import long_paper, paper, run_step
from forge.data.dedup import exact_key, find_duplicates, lsh_bands, minhash_signatures, near_duplicates
from forge.data.papers import all_text


def words(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"w{rng.randrange(100_000)}" for _ in range(n)]


def shingles(text: str, k: int) -> set[tuple[str, ...]]:
    tokens = text.lower().split()
    return {tuple(tokens[i:i + k]) for i in range(len(tokens) - k + 1)}


def jaccard(a: str, b: str, k: int = 5) -> float:
    sa, sb = shingles(a, k), shingles(b, k)
    return len(sa & sb) / len(sa | sb)


def test_exact_key_ignores_case_and_spacing_only() -> None:
    assert exact_key("TP53  binds\nMDM2") == exact_key("tp53 binds mdm2")
    assert exact_key("TP53 binds MDM2") != exact_key("TP53 binds MDM2.")


def test_exact_duplicates_keep_the_first() -> None:
    texts = ["alpha beta gamma", "ALPHA  beta gamma", "delta", "alpha beta gamma"]
    found = find_duplicates(texts, near=False)
    assert [(d.index, d.of, d.kind) for d in found] == [(1, 0, "exact"), (3, 0, "exact")]


def test_minhash_agreement_estimates_jaccard_similarity() -> None:
    base = words(400, seed=1)
    pairs = []
    for changed in (10, 40, 80, 150, 300):  # replace this many words at random positions
        rng = random.Random(changed)
        other = list(base)
        for position in rng.sample(range(len(base)), changed):
            other[position] = f"x{position}"
        pairs.append((" ".join(base), " ".join(other)))
    signatures = minhash_signatures([t for pair in pairs for t in pair], shingle_size=5, num_perm=256, seed=3)
    for i, (a, b) in enumerate(pairs):
        estimate = float((signatures[2 * i] == signatures[2 * i + 1]).mean())
        # 256 one-permutation bins: the standard error is at most sqrt(0.25 / 256) ~ 0.03.
        assert estimate == pytest.approx(jaccard(a, b), abs=0.1), (i, estimate, jaccard(a, b))


def test_signatures_are_deterministic_and_depend_on_the_seed() -> None:
    texts = [" ".join(words(50, seed=s)) for s in range(3)]
    assert (minhash_signatures(texts, seed=1) == minhash_signatures(texts, seed=1)).all()
    assert not (minhash_signatures(texts, seed=1) == minhash_signatures(texts, seed=2)).all()


def test_signatures_do_not_depend_on_the_batches() -> None:
    # Batches of at most 3 texts or 700 bytes (each text ~550 bytes: most batches hold one) against one batch.
    texts = [" ".join(words(80, seed=s)) for s in range(7)] + ["TP53 binds", ""]
    whole = minhash_signatures(texts, batch=len(texts), batch_bytes=1 << 30)
    assert (minhash_signatures(texts, batch=3, batch_bytes=700) == whole).all()
    assert len({row.tobytes() for row in whole}) == len(texts)


def test_short_texts_still_compare() -> None:
    # Fewer words than a shingle: the whole text is one shingle, so equal short texts match.
    signatures = minhash_signatures(["TP53 binds", "tp53 binds", "BRCA1 binds"], shingle_size=5, num_perm=32)
    assert (signatures[0] == signatures[1]).all()
    assert (signatures[0] != signatures[2]).any()


def test_lsh_bands_fit_the_signature_and_put_the_midpoint_below_the_threshold() -> None:
    for num_perm, threshold in [(64, 0.8), (128, 0.5), (16, 0.95)]:
        bands, rows = lsh_bands(num_perm, threshold)
        assert bands * rows <= num_perm
        assert (1 / bands) ** (1 / rows) <= threshold


def test_near_duplicates_compare_signatures_against_the_threshold() -> None:
    import numpy as np

    signatures = np.array([[1, 2, 3, 4], [1, 2, 3, 9], [1, 2, 8, 9], [5, 6, 7, 8]], dtype=np.uint32)
    # Row 1 agrees with row 0 on 3/4 positions; row 2 agrees with row 1 on 3/4 but with row 0 on 2/4.
    assert near_duplicates(signatures, threshold=0.75) == [(1, 0)]
    # Row 2 is compared with kept rows only (row 1 was dropped), so it is not chained onto row 0.
    assert near_duplicates(signatures, threshold=0.5) == [(1, 0), (2, 0)]


def test_near_duplicate_found_and_distinct_texts_kept() -> None:
    original = words(300, seed=7)
    edited = list(original)
    edited[100] = "changed"  # one word: 5 of 296 shingles differ
    distinct = words(300, seed=8)
    texts = [" ".join(original), " ".join(distinct), " ".join(edited)]
    assert jaccard(texts[0], texts[2]) > 0.95
    found = find_duplicates(texts, threshold=0.8)
    assert [(d.index, d.of, d.kind) for d in found] == [(2, 0, "near")]
    assert find_duplicates(texts, near=False) == []


def test_step_counts_both_kinds_and_keeps_input_order() -> None:
    a = long_paper("a", gene="BRCA1")
    a_copy = paper("a-copy", title=a.title.upper(), abstract=a.abstract)  # same text, other case
    b = long_paper("b", gene="TP53", sentences=4)
    # A near copy of b: one word changed in a long text.
    b_near = paper("b-near", title=b.title, abstract=b.abstract.replace("higher", "greater", 1))
    c = paper("c", abstract="A different paper about EGFR signalling in lung adenocarcinoma and its inhibitors.")
    output = run_step("deduplicate", [a, b, a_copy, c, b_near])
    assert [p.id for p in output.papers] == ["a", "b", "c"]
    assert output.dropped == {"exact_duplicate": 1, "near_duplicate": 1}
    assert jaccard(all_text(b), all_text(b_near)) > 0.8  # what made it a near duplicate
    exact_only = run_step("deduplicate", [a, b, a_copy, c, b_near], near=False)
    assert [p.id for p in exact_only.papers] == ["a", "b", "c", "b-near"]


def test_step_finds_the_demo_corpus_duplicates(demo_papers: list) -> None:
    output = run_step("deduplicate", demo_papers)
    texts = {p.id: " ".join(all_text(p).lower().split()) for p in demo_papers}
    kept_texts = [texts[p.id] for p in output.papers]
    assert len(kept_texts) == len(set(kept_texts))  # no exact duplicate survives
    repeated = len(texts) - len(set(texts.values()))
    assert output.dropped["exact_duplicate"] == repeated > 0
    assert output.dropped.get("near_duplicate", 0) > 0  # the generator writes edited copies too


def test_the_result_is_the_same_in_any_process_for_a_seed() -> None:
    """Python salts str and bytes hashes per process; the duplicates found must not depend on it."""
    import json
    import os
    import subprocess
    import sys

    base = [words(200, seed=s) for s in range(6)]
    texts = [" ".join(b) for b in base] + [" ".join(b[:150] + ["edited"] + b[151:]) for b in base[:3]]
    planted = [[len(base) + i, i, "near"] for i in range(3)]  # each edited copy repeats its original
    script = ("import json, sys; from forge.data.dedup import find_duplicates; "
              "print(json.dumps([[d.index, d.of, d.kind] for d in find_duplicates(json.load(sys.stdin), seed=5)]))")
    runs = [subprocess.run([sys.executable, "-c", script], input=json.dumps(texts), capture_output=True, text=True,
                           check=True, env={**os.environ, "PYTHONHASHSEED": salt}).stdout for salt in ("1", "2")]
    here = [[d.index, d.of, d.kind] for d in find_duplicates(texts, seed=5)]
    assert json.loads(runs[0]) == json.loads(runs[1]) == here == planted
