"""ROUGE and SQuAD answer metrics against values computed by hand."""
from __future__ import annotations

import pytest

from forge.evaluate.text_metrics import exact_match, normalize_answer, rouge, token_f1


def test_rouge_by_hand() -> None:
    # prediction: the cat sat on the mat (6 tokens); reference: the cat lay on the mat (6 tokens)
    # ROUGE-1: shared unigrams the x2, cat, on, mat = 5 -> P = R = 5/6, F = 5/6
    # ROUGE-2: bigrams of the prediction: the-cat cat-sat sat-on on-the the-mat; shared: the-cat on-the
    #          the-mat = 3 of 5 on both sides -> F = 3/5
    # ROUGE-L: longest common subsequence the cat on the mat = 5 -> F = 5/6
    scores = rouge("the cat sat on the mat", "the cat lay on the mat")
    assert scores == pytest.approx({"rouge1": 5 / 6, "rouge2": 3 / 5, "rougeL": 5 / 6})


def test_rouge_takes_the_best_reference_and_stems() -> None:
    # against "BRCA1 repairs damaged DNA" (stems brca1 repair damag dna): prediction brca1 repair dna
    # ROUGE-1: 3 shared; P = 3/3, R = 3/4, F = 2 * 1 * 0.75 / 1.75 = 6/7
    # ROUGE-2: brca1-repair shared of 2 predicted and 3 reference bigrams: P 1/2, R 1/3, F = (1/3) / (5/6) = 0.4
    # ROUGE-L: LCS brca1 repair dna = 3 -> 6/7. The other reference shares nothing.
    scores = rouge("BRCA1 repairs DNA", ["TP53 suppresses tumors", "BRCA1 repairs damaged DNA"])
    assert scores == pytest.approx({"rouge1": 6 / 7, "rouge2": 0.4, "rougeL": 6 / 7})
    # Porter stemming: genes -> gene, regulate and regulation -> regul
    assert rouge("genes regulate", "gene regulation") == pytest.approx({"rouge1": 1, "rouge2": 1, "rougeL": 1})
    assert rouge("", "a reference") == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    with pytest.raises(ValueError, match="at least one reference"):
        rouge("text", [])


def test_exact_match_and_token_f1_by_hand() -> None:
    assert normalize_answer("The  Lung.") == "lung"  # lower case, no punctuation, no article
    assert exact_match("the Lung.", "lung") == 1.0
    assert exact_match("lung tissue", ["breast", "lung"]) == 0.0
    # "The BRCA1 gene" -> brca1 gene; reference brca1: 1 shared word; P = 1/2, R = 1/1, F1 = 2 * 0.5 / 1.5 = 2/3
    assert token_f1("The BRCA1 gene", "BRCA1") == pytest.approx(2 / 3)
    # best over references: "colon cells" vs "colon" (P 1/2, R 1, F1 2/3) and vs "colon cells" (1)
    assert token_f1("colon cells", ["colon", "colon cells"]) == 1.0
    assert token_f1("", "") == 1.0 and token_f1("", "lung") == 0.0 and token_f1("liver", "lung") == 0.0
