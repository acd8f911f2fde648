"""Instruction and chat examples keep their whole answer within training.max_seq_length: the passage is shortened
(at sentence boundaries, the answer made again from what is left) or the example dropped, and both are counted."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from data_support import write_recipe
from forge.cli import main
from forge.data.formats import build_examples, example_text
from forge.data.gene_mentions import genes_in_text
from forge.data.pipeline import token_count

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("format", ["chat", "instruction"])
def test_every_example_fits_with_its_whole_answer(demo_papers: list, demo_bpe_tokenizer, format: str) -> None:
    papers = demo_papers[:40]
    templates = ("summarize", "list_genes", "answer_question")
    whole = build_examples(papers, format, templates)
    longest = max(token_count(row, demo_bpe_tokenizer) for row in whole)
    limit = 160
    assert longest > limit  # the corpus has examples that truncation would have cut
    fitted: dict = {}
    rows = build_examples(papers, format, templates, max_length=limit,
                          count_tokens=lambda row: token_count(row, demo_bpe_tokenizer), fitted=fitted)
    assert rows and all(token_count(row, demo_bpe_tokenizer) <= limit for row in rows)
    assert sum(fitted["shortened"].values()) > 0
    assert sum(fitted.get("shortened", {}).values()) + sum(fitted.get("dropped", {}).values()) == sum(
        token_count(row, demo_bpe_tokenizer) > limit for row in whole)
    by_id = {p.id: p for p in papers}
    for row in rows:
        paper = by_id[row["paper_id"]]
        prompt, answer = (row["messages"][0]["content"], row["messages"][1]["content"]) if format == "chat" else \
            (row["prompt"], row["completion"].strip())
        if prompt.startswith("Summarize"):
            assert answer == paper.abstract  # the whole summary, never cut
        elif prompt.startswith("List the human genes"):
            passage = prompt.split("Passage: ", 1)[1].rsplit("\n\nGenes:", 1)[0]
            assert answer == ", ".join(g.symbol for g in genes_in_text(paper.genes, passage))  # the genes of the passage shown
        else:
            passage = prompt.split("Passage: ", 1)[1].split("\n\nQuestion:", 1)[0]
            assert all(sentence.strip() in passage for sentence in answer.split(". ") if sentence.strip())


def test_preview_and_summary_say_how_many_were_shortened_or_dropped(tmp_path: Path, capsys, demo_bpe_tokenizer) -> None:
    import json

    model = tmp_path / "model"
    demo_bpe_tokenizer.save_pretrained(model)
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": len(demo_bpe_tokenizer),
                                                   "hidden_size": 32, "num_hidden_layers": 1,
                                                   "num_attention_heads": 2, "intermediate_size": 64}))
    recipe = write_recipe(tmp_path / "chat.yaml", f"""
        extends: {ROOT / 'recipes' / 'quickstart.yaml'}
        preprocess: []
        model:
          name_or_path: {model}
        data:
          format: chat
          templates: [summarize, list_genes, answer_question]
          max_papers: 60
        training:
          max_seq_length: 160
        """)
    assert main(["data", "preview", str(recipe), "-n", "0", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)["stats"]
    assert sum(stats["fitted"]["shortened"].values()) > 0
    assert all(lengths["max"] <= 160 for lengths in stats["token_lengths"].values())
    assert all(lengths["over_max_seq_length"] == 0 for lengths in stats["token_lengths"].values())
    assert main(["data", "preview", str(recipe), "-n", "0"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"over max_seq_length: passage shortened to keep the whole answer: \w+ \d+", out), out
