"""Duplicate detection for the `deduplicate` step: exact duplicates by a hash of the normalized text,
near duplicates by MinHash signatures over word shingles with LSH banding.

Forge's own code, weighed against datasketch's MinHash + MinHashLSH (benchmarks/dedup.py, BENCHMARKS.md):
with the same banding both drop the same planted duplicates up to the estimators' noise at the threshold, and
this one takes about a fifth of the CPU time (numpy over a batch of texts in place of a hash call per
shingle) and needs nothing beyond numpy. Hashes are stable (fixed polynomial and seeds), so a corpus
deduplicates the same way every run, in any process.
The first paper of a group is kept, in input order.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported inside the functions: importing the step registry stays light
    import numpy

_P = 0x100000001B3  # odd, so it has an inverse mod 2^64
_P_INVERSE = pow(_P, -1, 1 << 64)
_EMPTY = (1 << 64) - 1
_WORD_BYTES = tuple(c >= 0x80 or chr(c).isalnum() for c in range(256))  # letters, digits, UTF-8


@dataclass(frozen=True)
class Duplicate:
    """Paper `index` duplicates the kept paper `of`; `kind` is exact or near."""

    index: int
    of: int
    kind: str


def exact_key(text: str) -> bytes:
    """A digest of the text with case and whitespace differences removed."""
    return hashlib.blake2b(" ".join(text.lower().split()).encode("utf-8"), digest_size=16).digest()


def find_duplicates(texts: Sequence[str], exact: bool = True, near: bool = True, threshold: float = 0.8,
                    shingle_size: int = 5, num_perm: int = 64, seed: int = 1) -> list[Duplicate]:
    """Every text that repeats an earlier kept text, exactly or with estimated Jaccard >= threshold."""
    found: list[Duplicate] = []
    first: dict[bytes, int] = {}
    candidates: list[int] = []
    for i, text in enumerate(texts):
        key = exact_key(text) if exact else i.to_bytes(8, "little")
        if key in first:
            found.append(Duplicate(i, first[key], "exact"))
        else:
            first[key] = i
            candidates.append(i)
    if near and len(candidates) > 1:
        signatures = minhash_signatures([texts[i] for i in candidates], shingle_size, num_perm, seed)
        for position, kept in near_duplicates(signatures, threshold):
            found.append(Duplicate(candidates[position], candidates[kept], "near"))
    return sorted(found, key=lambda d: d.index)


def minhash_signatures(texts: Sequence[str], shingle_size: int = 5, num_perm: int = 64, seed: int = 1,
                       batch: int = 1024, batch_bytes: int = 1 << 20) -> numpy.ndarray:
    """A (len(texts), num_perm) uint32 array of one-permutation MinHash signatures over word shingles:
    each shingle hash falls in one of num_perm bins by its value, a bin keeps its minimum, and the rows of
    two texts agree on about a Jaccard-similarity fraction of their positions.

    Texts are hashed `batch` at a time, and at most `batch_bytes` of UTF-8 at a time (a longer text alone):
    a batch's arrays take tens of bytes per byte of text, so the bytes bound the peak memory whatever the
    papers' length. A text's signature does not depend on its batch."""
    import numpy as np

    batches = _batches([t.lower().encode("utf-8") for t in texts], batch, batch_bytes)
    longest = max((sum(len(p) + 1 for p in parts) for parts in batches), default=0)
    with np.errstate(over="ignore"):  # P^i and P^-i mod 2^64, once for the longest batch
        powers = np.cumprod(np.full(longest, _P, dtype=np.uint64))
        inverse = np.cumprod(np.full(longest, _P_INVERSE, dtype=np.uint64))
    out = [_signature_batch(parts, shingle_size, num_perm, seed, powers, inverse) for parts in batches]
    return np.concatenate(out) if out else np.empty((0, num_perm), dtype=np.uint32)


def _batches(parts: list[bytes], most: int, most_bytes: int) -> list[list[bytes]]:
    """Consecutive runs of at most `most` parts and `most_bytes` bytes (a longer part is a run of its own)."""
    batches: list[list[bytes]] = []
    size = 0
    for part in parts:
        if not batches or len(batches[-1]) >= most or size + len(part) > most_bytes:
            batches.append([])
            size = 0
        batches[-1].append(part)
        size += len(part) + 1
    return batches


def _signature_batch(parts: list[bytes], k: int, num_perm: int, seed: int, powers: numpy.ndarray,
                     inverse: numpy.ndarray) -> numpy.ndarray:
    import numpy as np

    # Word hashes for the whole batch at once, in numpy: a word is a run of letters, digits or non-ASCII
    # bytes; its hash is a polynomial rolling hash (mod 2^64) read off prefix sums.
    data = np.frombuffer(b"\n".join(parts), dtype=np.uint8)
    wordy = np.array(_WORD_BYTES, dtype=np.int8)[data]
    edge = np.zeros(1, dtype=np.int8)
    edges = np.diff(np.concatenate((edge, wordy, edge)))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    with np.errstate(over="ignore"):
        prefix = np.concatenate((np.zeros(1, dtype=np.uint64), np.cumsum(data * powers[:len(data)])))
        words = _mix((prefix[ends] - prefix[starts]) * inverse[starts] ^ np.uint64(seed))
    text_ends = np.cumsum([len(part) + 1 for part in parts])
    word_text = np.searchsorted(text_ends, starts, side="right")
    # A shingle is k consecutive words of one text (a text with fewer words is one shingle of them all).
    counts = np.bincount(word_text, minlength=len(parts))
    n = len(words)
    shingles = np.zeros(max(n - k + 1, 0), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            shingles ^= words[j:n - k + 1 + j] * np.uint64(2 * j + 1)
    keep = word_text[:len(shingles)] == word_text[k - 1:]
    hashes, owner = _mix(shingles[keep]), word_text[:len(shingles)][keep]
    short = np.flatnonzero((counts > 0) & (counts < k))
    if len(short):
        first = np.concatenate(([0], np.cumsum(counts)[:-1]))
        extra = [np.bitwise_xor.reduce(words[first[t]:first[t] + counts[t]] * np.uint64(1)) for t in short]
        hashes, owner = np.concatenate((hashes, _mix(np.array(extra, dtype=np.uint64)))), np.concatenate((owner, short))
    signature = np.full(len(parts) * num_perm, _EMPTY, dtype=np.uint64)
    np.minimum.at(signature, owner * num_perm + (hashes % np.uint64(num_perm)).astype(np.int64), hashes >> np.uint64(32))
    signature = signature.reshape(len(parts), num_perm)
    for row in np.flatnonzero((signature == _EMPTY).any(axis=1)):
        _densify(signature[row])
    return signature.astype(np.uint32)


def _mix(values: numpy.ndarray) -> numpy.ndarray:
    """The splitmix64 finalizer: spreads every input bit over the 64 output bits."""
    import numpy as np

    with np.errstate(over="ignore"):
        values = values ^ (values >> np.uint64(30))
        values = values * np.uint64(0xBF58476D1CE4E5B9)
        values = values ^ (values >> np.uint64(27))
        values = values * np.uint64(0x94D049BB133111EB)
        return values ^ (values >> np.uint64(31))


def _densify(row: numpy.ndarray) -> None:
    """Fill empty bins from the next filled bin to the right (circularly), offset by the distance, so two
    short texts still compare bin by bin (rotation densification)."""
    filled = [j for j in range(len(row)) if row[j] != _EMPTY]
    if not filled:
        row[:] = 0
        return
    size = len(row)
    for j in range(size):
        if row[j] == _EMPTY:
            distance = min((f - j) % size for f in filled)
            row[j] = (int(row[(j + distance) % size]) + distance * 0x9E3779B1) & 0xFFFFFFFF


def lsh_bands(num_perm: int, threshold: float) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm whose S-curve midpoint (1/b)^(1/r) is closest to the
    threshold from below, so that pairs at the threshold are very likely candidates."""
    best = (num_perm, 1)
    best_gap = float("inf")
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        midpoint = (1 / bands) ** (1 / rows)
        gap = threshold - midpoint
        if 0 <= gap < best_gap:
            best, best_gap = (bands, rows), gap
    return best


def near_duplicates(signatures: numpy.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(index, kept index) for each row whose signature agrees with an earlier kept row's on at least
    `threshold` of its positions; rows are compared only when they share an LSH band."""
    bands, rows = lsh_bands(signatures.shape[1], threshold)
    buckets: dict[tuple[int, bytes], list[int]] = {}
    found: list[tuple[int, int]] = []
    for i in range(signatures.shape[0]):
        keys = [(band, signatures[i, band * rows:(band + 1) * rows].tobytes()) for band in range(bands)]
        seen: set[int] = set()
        match = None
        for key in keys:
            for j in buckets.get(key, ()):
                if j not in seen:
                    seen.add(j)
                    if (signatures[i] == signatures[j]).mean() >= threshold:
                        match = j
                        break
            if match is not None:
                break
        if match is not None:
            found.append((i, match))
            continue
        for key in keys:
            buckets.setdefault(key, []).append(i)
    return found
