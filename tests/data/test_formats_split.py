"""Training examples (causal text, instruction pairs, chat) and the seeded split by paper, alone and
through `build_datasets`."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from data_support import paper, write_json, write_recipe
from forge.data.errors import DataError
from forge.data.formats import build_examples, example_text
from forge.data.gene_mentions import genes_in_text
from forge.data.pipeline import build_datasets, percentile
from forge.data.split import split_paper_ids
from forge.recipe.validate import resolve

PAPER = paper("f1", title="BRCA1 and TP53 in breast cancer",
              abstract="Loss of BRCA1 raised p53 levels. Tumours grew faster. TP53 was not mutated.",
              sections=[{"heading": "Results", "text": "EGFR was unchanged."}],
              genes=[{"symbol": "TP53", "aliases": ["p53"]}, {"symbol": "BRCA1"}, {"symbol": "KRAS"}])


def test_causal_lm_rows_are_the_chosen_fields() -> None:
    rows = build_examples([PAPER], "causal_lm", fields=("title", "abstract"))
    assert rows == [{"text": f"{PAPER.title}\n\n{PAPER.abstract}", "paper_id": "f1"}]


def test_genes_are_found_by_symbol_or_alias_in_order_of_first_mention() -> None:
    found = genes_in_text(PAPER.genes, PAPER.abstract)
    assert [g.symbol for g in found] == ["BRCA1", "TP53"]  # p53 comes before TP53 but after BRCA1
    assert genes_in_text(PAPER.genes, "KRASX and xTP53 are other words") == []


def test_instruction_rows_put_the_answer_in_the_completion_only() -> None:
    rows = build_examples([PAPER], "instruction", templates=("summarize", "list_genes", "answer_question"), seed=1)
    by_kind = {row["prompt"].split("\n", 1)[0]: row for row in rows}
    assert len(rows) == 3 and all(set(r) == {"prompt", "completion", "paper_id"} for r in rows)
    # each prompt ends with its cue, and the completion starts with the space that separates it from the cue
    summary = by_kind["Summarize the findings of this genomics paper in a few sentences."]
    assert summary["completion"] == " " + PAPER.abstract and summary["prompt"].endswith("\n\nSummary:")
    assert PAPER.abstract not in summary["prompt"] and "EGFR was unchanged." in summary["prompt"]
    genes = by_kind["List the human genes mentioned in this text, as official gene symbols separated by commas."]
    assert genes["completion"] == " BRCA1, TP53" and PAPER.abstract in genes["prompt"]
    assert genes["prompt"].endswith(PAPER.abstract + "\n\nGenes:")
    question = by_kind["Read the passage and answer the question."]
    gene = question["prompt"].rsplit("about ", 1)[1].split("?")[0]
    expected = {"BRCA1": "Loss of BRCA1 raised p53 levels.",
                "TP53": "Loss of BRCA1 raised p53 levels. TP53 was not mutated."}  # p53 is TP53's alias
    assert question["completion"] == " " + expected[gene] and question["prompt"].endswith("?\n\nAnswer:")


def test_instruction_format_compiles_to_completion_only_loss() -> None:
    from forge.plan import compile_plan

    recipe = resolve("recipes/quickstart.yaml", ["data.format=instruction"]).recipe
    assert compile_plan(recipe).trainer["completion_only_loss"] is True
    recipe = resolve("recipes/quickstart.yaml", []).recipe
    assert compile_plan(recipe).trainer["completion_only_loss"] is False


def test_templates_that_do_not_fit_make_no_row() -> None:
    bare = paper("bare", title="A title", full_text="Body without genes.")
    assert build_examples([bare], "instruction", templates=("summarize", "list_genes", "answer_question")) == []


def test_chat_rows_are_user_and_assistant_messages(demo_bpe_tokenizer) -> None:
    rows = build_examples([PAPER], "chat", templates=("list_genes",))
    assert rows == [{"messages": [{"role": "user", "content": rows[0]["messages"][0]["content"]},
                                  {"role": "assistant", "content": "BRCA1, TP53"}], "paper_id": "f1"}]
    rendered = example_text(rows[0], demo_bpe_tokenizer)  # through the tokenizer's chat template
    assert rendered.startswith("<|user|>List the human genes") and rendered.endswith("<|assistant|>BRCA1, TP53\n")


def test_chunks_make_one_summary_and_their_own_gene_lists() -> None:
    first = PAPER.model_copy(update={"full_text": "BRCA1 part.", "sections": (), "chunk_index": 0})
    second = PAPER.model_copy(update={"full_text": "KRAS part.", "sections": (), "chunk_index": 1})
    rows = build_examples([first, second], "instruction", templates=("summarize", "list_genes"))
    assert [(r["prompt"][:9], r["completion"]) for r in rows] == [
        ("Summarize", " " + PAPER.abstract), ("List the ", " BRCA1"), ("List the ", " KRAS")]


def test_split_is_seeded_disjoint_and_independent_of_input_order() -> None:
    ids = [f"p{i:03d}" for i in range(200)]
    split = split_paper_ids(ids, validation=0.1, test=0.15, seed=7)
    assert [len(split[s]) for s in ("train", "validation", "test")] == [150, 20, 30]
    assert set().union(*split.values()) == set(ids)
    assert not split["train"] & split["test"] and not split["train"] & split["validation"]
    shuffled = random.Random(0).sample(ids, len(ids))
    assert split_paper_ids(shuffled + ids[:5], 0.1, 0.15, seed=7) == split  # duplicates and order do not matter
    assert split_paper_ids(ids, 0.1, 0.15, seed=8)["test"] != split["test"]


def test_split_holds_out_at_least_one_paper_and_refuses_too_few() -> None:
    split = split_paper_ids(["a", "b", "c"], validation=0.01, test=0.0, seed=1)
    assert len(split["validation"]) == 1 and split["test"] == set() and len(split["train"]) == 2
    with pytest.raises(DataError, match="too few"):
        split_paper_ids(["a", "b"], validation=0.5, test=0.5, seed=1)


def test_percentile_interpolates() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10], 90) == 10.0 and percentile([], 50) == 0.0
    assert percentile(list(range(101)), 99) == 99.0


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory, demo_papers: list) -> Path:
    """The first 80 demo papers as a JSON file."""
    path = tmp_path_factory.mktemp("corpus") / "papers.json"
    return write_json(path, [p.model_dump(mode="json", exclude={"chunk_index"}) for p in demo_papers[:80]])


def recipe_for(tmp_path: Path, corpus: Path, data: str = "", preprocess: str = "[]", seed: int = 42) -> object:
    """A recipe over the corpus: split 70/10/20 by paper, 128-token examples, the given preprocess list."""
    path = write_recipe(tmp_path / "r.yaml", "\n".join([
        f"run: {{seed: {seed}}}",
        f"data: {{sources: [{{path: {corpus}}}], split: {{validation: 0.1, test: 0.2}}{data}}}",
        f"preprocess: {preprocess}",
        "training: {max_seq_length: 128}",
    ]))
    return resolve(path).recipe


def test_build_datasets_splits_chunks_by_paper(tmp_path: Path, small_corpus: Path, demo_bpe_tokenizer) -> None:
    recipe = recipe_for(tmp_path, small_corpus, preprocess="[{step: normalize_whitespace}, {step: chunk, overlap: 16}]")
    bundle = build_datasets(recipe, tokenizer=demo_bpe_tokenizer, progress=False)
    ids = {split: set(getattr(bundle, split)["paper_id"]) for split in ("train", "validation", "test")}
    assert not ids["train"] & ids["test"] and not ids["train"] & ids["validation"] and not ids["validation"] & ids["test"]
    assert len(bundle.train) > 80 * 0.7  # the papers were cut into several chunks each
    stats = bundle.stats
    assert stats.units_after_preprocess > stats.papers_after_preprocess == 80
    assert stats.papers_by_split == {"train": 56, "validation": 8, "test": 16}
    assert stats.examples_by_split == {s: len(getattr(bundle, s)) for s in ("train", "validation", "test")}
    assert stats.token_lengths["train"]["max"] <= 128 and stats.token_lengths["train"]["over_max_seq_length"] == 0
    assert {p.id for p in bundle.papers_test} == ids["test"] and all(p.chunk_index is None for p in bundle.papers_test)
    assert stats.gene_tokens["terms"] > 0
    again = build_datasets(recipe, tokenizer=demo_bpe_tokenizer, progress=False)
    assert again.test["paper_id"] == bundle.test["paper_id"]  # the same seed, the same split


def test_build_datasets_instruction_columns(tmp_path: Path, small_corpus: Path, demo_papers: list) -> None:
    recipe = recipe_for(tmp_path, small_corpus, ", format: instruction, templates: [summarize, list_genes]")
    bundle = build_datasets(recipe, progress=False)
    assert bundle.train.column_names == ["prompt", "completion", "paper_id"]
    train = [p for p in demo_papers[:80] if p.id in set(bundle.train["paper_id"])]
    summaries = sum(bool(p.abstract.strip() and p.sections) for p in train)
    gene_lists = sum(any(name in p.abstract for g in p.genes for name in (g.symbol, *g.aliases)) for p in train)
    assert len(train) == 56 and len(bundle.train) == summaries + gene_lists > 56
    assert bundle.stats.token_lengths == {} and bundle.stats.gene_tokens is None  # no tokenizer, no counts


def test_build_datasets_reports_bad_records_and_empty_results(tmp_path: Path) -> None:
    records = [{"id": f"p{i}", "title": f"Paper {i} on BRCA1"} for i in range(10)] + [{"id": "bad"}, "fine text"]
    corpus = write_json(tmp_path / "c.json", records)
    bundle = build_datasets(recipe_for(tmp_path, corpus), progress=False)
    assert bundle.stats.papers_read == 11 and bundle.stats.bad_records == 1
    assert bundle.stats.bad_examples == [f"{corpus}: record 10: no text: title, abstract, sections and full_text are all empty"]
    assert bundle.stats.dropped_by_reason() == {
        "read: no text: title, abstract, sections and full_text are all empty": 1}
    empty = write_json(tmp_path / "empty.json", [{"id": "x"}])
    with pytest.raises(DataError, match=f"no papers could be read from data.sources: {empty}: record 0: no text"):
        build_datasets(recipe_for(tmp_path, empty), progress=False)
    with pytest.raises(DataError, match=r"emptied the corpus at step 0 \(filter_quality\): 11 papers in, 0 out \(too_short: 11\)"):
        build_datasets(recipe_for(tmp_path, corpus, preprocess="[{step: filter_quality}]"), progress=False)
