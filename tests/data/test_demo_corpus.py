"""The shipped demo corpus and the generator that writes it: every paper validates, genes are annotated,
the file is exactly what the generator makes, and the genomics recipe's steps clean it."""
from __future__ import annotations

import json
import re
from pathlib import Path

from forge.data import synthetic
from forge.data.papers import all_text
from forge.data.preprocess import resolve_steps, run_steps
from forge.data.steps import StepContext
from forge.data.vocabulary import GENE_SYMBOLS
from forge.recipe.validate import resolve

ROOT = Path(__file__).resolve().parents[2]


def mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(name.lower())}(?![A-Za-z0-9])", text.lower()) is not None


def test_every_demo_paper_validates_with_gene_annotations(demo_papers: list) -> None:
    raw = json.loads((ROOT / "examples/data/high_quality_papers_demo.json").read_text(encoding="utf-8"))["papers"]
    assert len(demo_papers) == len(raw) == 400  # read with on_error: fail, so none was dropped
    assert len({p.id for p in demo_papers}) == 400
    for p in demo_papers:
        assert p.title and p.abstract and p.genes, p.id
        assert 0 < p.quality_score <= 1 and p.year and p.doi.startswith("10.5555/")
        for gene in p.genes:
            assert gene.symbol in GENE_SYMBOLS
            # An annotated gene is one the paper mentions, by symbol or alias (any case: noise lower-cases some).
            assert any(mentions(all_text(p), name) for name in (gene.symbol, *gene.aliases)), (p.id, gene.symbol)


def test_the_shipped_file_is_what_the_generator_writes(tmp_path: Path) -> None:
    written = synthetic.write_corpus(tmp_path / "demo.json", synthetic.DEMO_PAPERS, synthetic.DEMO_SEED)
    assert written.read_bytes() == (ROOT / "examples/data/high_quality_papers_demo.json").read_bytes()


def test_generator_is_deterministic_and_paper_i_does_not_depend_on_n() -> None:
    assert synthetic.generate_papers(12, seed=3) == synthetic.generate_papers(12, seed=3)
    assert synthetic.generate_papers(12, seed=3)[:5] == synthetic.generate_papers(5, seed=3)
    assert synthetic.generate_papers(5, seed=3) != synthetic.generate_papers(5, seed=4)
    assert synthetic.generate_papers(30, seed=3, defects=False)[:10] == synthetic.generate_papers(10, seed=3)


def test_jsonl_corpus_reads_back_as_the_same_papers(tmp_path: Path) -> None:
    from forge.data.readers import read_sources
    from forge.recipe.schema import DataSource

    path = synthetic.write_corpus(tmp_path / "c.jsonl", 25, seed=9)
    assert read_sources([DataSource(path=str(path))], on_error="fail").papers == synthetic.generate_papers(25, seed=9)


def test_the_genomics_recipe_steps_clean_the_demo_corpus(demo_papers: list) -> None:
    recipe = resolve(ROOT / "recipes/genomics_qlora.yaml").recipe
    steps = [s for s in recipe.preprocess if s.step != "chunk"]
    result = run_steps(demo_papers, resolve_steps(steps), StepContext())
    texts = [all_text(p) for p in result.papers]
    joined = "\n".join(texts)
    assert 0.5 * len(demo_papers) < len(result.papers) < len(demo_papers)
    before = "\n".join(all_text(p) for p in demo_papers)
    # Each kind of noise the generator writes is in the raw corpus and gone after the steps.
    for pattern in (r"\[\d+(?:[-,]\d+)*\]", r"et al\., (?:19|20)\d\d\)", r"</?(?:i|b|sup)>", r"\\textit\{",
                    r"\*\*\w", r"\bRS\d{4}", r"\d(?:uM| micromolar)", r"[P]=\d", "\u2019", r"\u207b"):
        assert re.search(pattern, before), pattern
        assert not re.search(pattern, joined), (pattern, re.search(pattern, joined))
    # ... while the notation it must keep is still there.
    for kept in ("[Ca2+]", "p = ", "rs", " \u03bcM", "c."):
        assert kept in joined, kept
    assert all(p.gene_symbols for p in result.papers)
