"""Task prompts and the parsing of analysis answers."""
from __future__ import annotations

from pathlib import Path

from forge.data.formats import LIST_GENES_PROMPT
from forge.serve.prompts import encode, fit_text, parse_analysis, parse_findings, parse_list, task_prompt


def test_genes_use_the_training_template_and_parse_as_symbols() -> None:
    assert task_prompt("genes", "TP53 text") == LIST_GENES_PROMPT.format(text="TP53 text")
    # genes are read as evaluation reads them (forge.data.gene_mentions): tp53 is TP53 again, a trailing
    # "gene" and a parenthetical are not part of the name, a sentence is not a name
    assert parse_analysis("genes", "BRCA1, TP53; tp53\nHLA-DRB1 gene, KRAS (a GTPase), which regulates growth "
                                   "in many tissues, BRCA1.") == ["BRCA1", "TP53", "HLA-DRB1", "KRAS"]
    assert parse_analysis("genes", "None.") == []
    assert parse_analysis("methods", "CRISPR screens, RNA-seq, CRISPR screens") == ["CRISPR screens", "RNA-seq"]
    assert parse_list("CRISPR screens; RNA-seq.") == ["CRISPR screens", "RNA-seq"]


def test_findings_are_one_per_line_or_sentence() -> None:
    assert parse_findings("1. TP53 loss drives growth.\n- BRCA1 repairs DNA. PTEN is lost.") == \
        ["TP53 loss drives growth.", "BRCA1 repairs DNA.", "PTEN is lost."]


def test_fit_text_cuts_a_paper_to_the_token_budget(tiny_llama_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    text = "BRCA1 regulates DNA repair in breast cells. " * 50
    for chat in (False, True):
        cut = fit_text(tokenizer, "summary", text, "A title", 120, chat=chat)
        assert text.startswith(cut) and 0 < len(cut) < len(text)
        assert len(encode(tokenizer, task_prompt("summary", cut, "A title"), chat=chat)) <= 120
    assert fit_text(tokenizer, "genes", "TP53.", "", 120, chat=False) == "TP53."
