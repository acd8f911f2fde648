"""A deterministic generator of synthetic genomics papers: the shipped demo corpus and larger corpora
for tests and benchmarks (`generate_papers(n, seed)`).

Papers are templated sentences over real human gene symbols, diseases, methods, rs IDs, HGVS variants,
p-values, Greek-letter aliases and citations, with markup noise that grows as the quality score falls, and
a few defects (exact and near duplicates, stubs, non-English papers) so every preprocessing step has work.
Associations, numbers and loci are invented: the text is for training plumbing, not for facts.

    python -m forge.data.synthetic --n 400 --out examples/data/high_quality_papers_demo.json
"""
from __future__ import annotations

import argparse
import json
import random
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

from forge.data import synthetic_text as T
from forge.data.papers import ScientificPaper
from forge.data.vocabulary import DISEASES, GENES

DEMO_SEED = 2026
DEMO_PAPERS = 400
DEMO_PATH = Path(__file__).resolve().parents[2] / "examples" / "data" / "high_quality_papers_demo.json"
AMINO_ACIDS = ("Ala", "Arg", "Asn", "Asp", "Cys", "Gln", "Glu", "Gly", "His", "Ile", "Leu", "Lys", "Met", "Phe",
               "Pro", "Ser", "Thr", "Trp", "Tyr", "Val")
# Share of papers that are each kind of defect (the rest are ordinary papers).
DEFECTS = (("exact_duplicate", 0.02), ("near_duplicate", 0.03), ("stub", 0.02), ("foreign", 0.015))


def _genes_by_disease() -> MappingProxyType[str, tuple[int, ...]]:
    found: dict[str, list[int]] = {}
    for index, (_, _, diseases) in enumerate(GENES):
        for disease in diseases:
            found.setdefault(disease, []).append(index)
    return MappingProxyType({k: tuple(v) for k, v in found.items()})


GENES_BY_DISEASE = _genes_by_disease()


def generate_papers(n: int, seed: int = 0, defects: bool = True) -> list[ScientificPaper]:
    """`n` validated papers; the same (n, seed) always gives the same papers, and paper i does not depend on n."""
    return [ScientificPaper.from_record(record, str(i)) for i, record in enumerate(generate_records(n, seed, defects))]


def generate_records(n: int, seed: int = 0, defects: bool = True) -> Iterator[dict[str, Any]]:
    """The papers of `generate_papers` as JSON-ready mappings."""
    for i in range(n):
        yield _record(i, seed, defects)


def write_corpus(path: Path, n: int, seed: int = 0, defects: bool = True) -> Path:
    """Write a corpus as a demo-format JSON file (.json) or JSON Lines (.jsonl)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    records = generate_records(n, seed, defects)
    if path.suffix == ".jsonl":
        with path.open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        body = ",\n".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records)
        path.write_text(f'{{"description": "Synthetic genomics papers written by Forge\'s generator '
                        f'(forge.data.synthetic, seed {seed}); associations and numbers are invented.",\n'
                        f'"papers": [\n{body}\n]}}\n', encoding="utf-8")
    return path


def _record(i: int, seed: int, defects: bool) -> dict[str, Any]:
    rng = random.Random(f"forge-synthetic:{seed}:{i}")
    kind = _kind(rng)  # drawn even when unused, so a paper's text does not depend on `defects`
    if not defects or i < 10:
        kind = "paper"
    if kind in ("exact_duplicate", "near_duplicate"):
        original = rng.randrange(i)
        record = _record(original, seed, defects=False)
        if kind == "near_duplicate":
            record = _near_copy(record, rng)
        return {**record, "id": _paper_id(seed, i), "doi": _doi(seed, i)}
    return _paper(i, seed, rng, kind)


def _kind(rng: random.Random) -> str:
    roll = rng.random()
    for kind, share in DEFECTS:
        if roll < share:
            return kind
        roll -= share
    return "paper"


def _paper_id(seed: int, i: int) -> str:
    return f"forge-demo-{seed}-{i:06d}"


def _doi(seed: int, i: int) -> str:
    return f"10.5555/forge-demo.{seed}.{i:06d}"  # 10.5555 is a prefix reserved for tests and examples


def _paper(i: int, seed: int, rng: random.Random, kind: str) -> dict[str, Any]:
    quality = round(min(1.0, max(0.05, rng.betavariate(4, 2))), 2)
    slots = _slots(rng)
    fill = _Filler(rng, slots, noise=0.6 * (1 - quality))
    if kind == "foreign":
        language = rng.choice(sorted(T.FOREIGN))
        abstract = " ".join(fill(s) for s in T.FOREIGN[language][:3])
        sections = [{"heading": "", "text": " ".join(fill(s) for s in T.FOREIGN[language][2:])}]
        title = fill(T.FOREIGN_TITLES[language])
    elif kind == "stub":
        title, abstract, sections = fill(rng.choice(T.TITLES)), fill(rng.choice(T.RESULTS)), []
    else:
        title = fill(rng.choice(T.TITLES))
        abstract = " ".join([fill(rng.choice(T.BACKGROUND[:3])), fill(T.METHODS_SENTENCES[0]),
                             *(fill(s) for s in rng.sample(T.RESULTS, 2)), fill(rng.choice(T.CONCLUSIONS))])
        sections = [
            {"heading": "Introduction", "text": " ".join(fill(s) for s in rng.sample(T.BACKGROUND, 3))},
            {"heading": rng.choice(("Methods", "Materials and Methods")),
             "text": " ".join(fill(s) for s in rng.sample(T.METHODS_SENTENCES[1:], 3))},
            {"heading": "Results", "text": " ".join(fill(s) for s in rng.sample(T.RESULTS, 3))},
            {"heading": "Discussion", "text": " ".join(fill(s) for s in rng.sample(T.DISCUSSION, 2))},
        ]
        if rng.random() < 0.3:
            sections.append({"heading": "Acknowledgements", "text": rng.choice(T.ACKNOWLEDGEMENTS)})
        if rng.random() < 0.4:
            sections.append({"heading": "References", "text": "\n".join(
                f"[{k}] {_reference(rng)}" for k in range(1, rng.randint(3, 6)))})
        if rng.random() < 0.05:
            sections.append({"heading": "Supplementary Material", "text": ""})
    text = " ".join([title, abstract, *(s["text"] for s in sections)])
    genes = [{"symbol": GENES[g][0], "aliases": list(GENES[g][1])}
             for g in slots["genes"] if _mentions(text, GENES[g][0], GENES[g][1])]
    return {
        "id": _paper_id(seed, i), "title": title, "abstract": abstract, "sections": sections,
        "authors": [f"{rng.choice(T.SURNAMES)} {rng.choice('ABCDEFGHJKLMNPRSTW')}" for _ in range(rng.randint(2, 6))],
        "year": rng.randint(2005, 2026), "journal": rng.choice(T.JOURNALS), "doi": _doi(seed, i),
        "keywords": [DISEASES[slots["disease"]], GENES[slots["genes"][0]][0], slots["m"]],
        "quality_score": quality, "genes": genes,
    }


def _slots(rng: random.Random) -> dict[str, Any]:
    first = rng.randrange(len(GENES))
    disease = rng.choice(GENES[first][2])
    related = [g for g in GENES_BY_DISEASE[disease] if g != first]
    others = rng.sample(related, min(2, len(related)))
    while len(others) < 2:
        pick = rng.randrange(len(GENES))
        if pick != first and pick not in others:
            others.append(pick)
    return {"genes": [first, *others], "disease": disease, "m": rng.choice(T.METHODS), "cell": rng.choice(T.CELLS)}


class _Filler:
    """Fills a template's slots with fresh numbers each time, then adds markup noise."""

    def __init__(self, rng: random.Random, slots: dict[str, Any], noise: float) -> None:
        self.rng, self.slots, self.noise = rng, slots, noise

    def __call__(self, template: str) -> str:
        rng, slots = self.rng, self.slots
        g1, g2, g3 = (GENES[g] for g in slots["genes"])
        disease = DISEASES[slots["disease"]]
        values = {
            "g1": g1[0], "g2": g2[0], "g3": g3[0], "a1": g1[1][0] if g1[1] else g1[0],
            "A1": (g1[1][0] if g1[1] else g1[0]), "d": disease, "D": disease[0].upper() + disease[1:],
            "m": slots["m"], "M": slots["m"][0].upper() + slots["m"][1:], "cell": slots["cell"],
            "n": rng.randint(120, 25000), "n2": rng.randint(100, 20000), "depth": rng.choice((30, 60, 100, 250)),
            "p": self._p_value(), "rs": self._rs(), "hgvs": self._hgvs(), "protein": self._protein(),
            "band": _band(g1[0], rng), "fc": round(rng.uniform(1.5, 6.0), 1), "or": round(rng.uniform(1.1, 3.5), 2),
            "conc": self._concentration(), "cite": self._citation(), "k": rng.randint(2, 9),
            "pct": rng.randint(20, 80), "size": round(rng.uniform(1.5, 12.0), 1),
        }
        return self._noisy(template.format_map(values))

    def _messy(self) -> bool:
        return self.rng.random() < self.noise

    def _p_value(self) -> str:
        rng = self.rng
        if rng.random() < 0.3:
            return rng.choice(("p < 0.05", "p < 0.01", "p < 0.001", "p = 0.003", "p = 0.02"))
        mantissa, exponent = round(rng.uniform(1.0, 9.9), 1), -rng.randint(3, 12)
        if not self._messy():
            return f"p = {mantissa} × 10^{exponent}"
        return rng.choice((f"P={mantissa}x10^{exponent}", f"P = {mantissa} × 10<sup>{exponent}</sup>",
                           f"$p = {mantissa} \\times 10^{{{exponent}}}$", f"p-value of {mantissa}e{exponent}",
                           f"P = {mantissa} × 10{_superscript(exponent)}"))

    def _rs(self) -> str:
        number = self.rng.randint(1000, 99_999_999)
        return f"RS{number}" if self._messy() else f"rs{number}"

    def _hgvs(self) -> str:
        rng = self.rng
        ref, alt = rng.sample("ACGT", 2)
        text = f"c.{rng.randint(20, 4000)}{ref}>{alt}"
        return text.lower() if self._messy() else text

    def _protein(self) -> str:
        rng = self.rng
        text = f"p.{rng.choice(AMINO_ACIDS)}{rng.randint(10, 1300)}{rng.choice(AMINO_ACIDS)}"
        return text.lower() if self._messy() else text

    def _concentration(self) -> str:
        amount = self.rng.choice((1, 5, 10, 20, 50))
        return self.rng.choice((f"{amount}uM", f"{amount} µM", f"{amount} micromolar")) if self._messy() \
            else f"{amount} μM"

    def _citation(self) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.25:
            return ""
        if roll < 0.6:
            start = rng.randint(1, 40)
            return rng.choice((f" [{start}]", f" [{start}-{start + rng.randint(1, 4)}]", f" [{start},{start + 3}]"))
        year = rng.randint(1995, 2025)
        if roll < 0.85:
            return f" ({rng.choice(T.SURNAMES)} et al., {year})"
        return f" ({rng.choice(T.SURNAMES)} and {rng.choice(T.SURNAMES)}, {year}; {rng.choice(T.SURNAMES)}, {year - 2})"

    def _noisy(self, sentence: str) -> str:
        """Markup and typography a less careful paper would carry."""
        if not self._messy():
            return sentence
        rng = self.rng
        symbol = GENES[rng.choice(self.slots["genes"])][0]
        if symbol in sentence:
            style = rng.choice(("<i>{}</i>", "\\textit{{{}}}", "**{}**", "*{}*", "lower"))
            marked = symbol.lower() if style == "lower" else style.format(symbol)
            sentence = re.sub(rf"(?<![\w-]){re.escape(symbol)}(?![\w-])", lambda _: marked, sentence, count=1)
        if rng.random() < 0.3:
            sentence = sentence.replace(" - ", " — ").replace("'s ", "’s ")
        if rng.random() < 0.2:
            sentence = sentence.replace(" ", "  ", 1)
        return sentence


def _band(symbol: str, rng: random.Random) -> str:
    code = zlib.crc32(symbol.encode())
    chromosome = str(code % 22 + 1) if code % 23 else "X"
    band = f"{chromosome}{'pq'[code >> 5 & 1]}{code >> 6 & 31 or 1}.{code >> 11 & 3 or 1}"
    return band.upper() if rng.random() < 0.05 else band


def _superscript(exponent: int) -> str:
    return str(exponent).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))


def _reference(rng: random.Random) -> str:
    return (f"{rng.choice(T.SURNAMES)} {rng.choice('ABCDEFGHJK')}, {rng.choice(T.SURNAMES)} {rng.choice('LMNPRSTW')}. "
            f"{rng.choice(T.JOURNALS)}. {rng.randint(1995, 2025)};{rng.randint(1, 40)}:{rng.randint(1, 900)}.")


def _mentions(text: str, symbol: str, aliases: tuple[str, ...]) -> bool:
    lowered = text.lower()
    return any(re.search(rf"(?<![A-Za-z0-9]){re.escape(name.lower())}(?![A-Za-z0-9])", lowered)
               for name in (symbol, *aliases))


def _near_copy(record: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The same paper with a few numbers and words changed (a preprint and its published version)."""
    def edit(text: str) -> str:
        numbers = re.findall(r"\b\d{3,5}\b", text)
        for number in rng.sample(numbers, min(2, len(numbers))):
            text = text.replace(number, str(int(number) + rng.randint(1, 50)), 1)
        return text.replace("increased", "elevated", 1)

    return {**record, "abstract": edit(record["abstract"]),
            "sections": [{**s, "text": edit(s["text"])} for s in record["sections"]]}


def main(argv: list[str] | None = None) -> int:
    """Write a synthetic corpus (by default, the demo corpus)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=DEMO_PAPERS, help="number of papers")
    parser.add_argument("--seed", type=int, default=DEMO_SEED, help="generator seed")
    parser.add_argument("--out", type=Path, default=DEMO_PATH, help="output .json or .jsonl file")
    args = parser.parse_args(argv)
    path = write_corpus(args.out, args.n, args.seed)
    print(f"wrote {args.n} papers to {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
