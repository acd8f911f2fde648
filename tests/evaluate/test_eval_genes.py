"""Gene-name recognition scoring against hand-computed counts: normalisation (case, Greek letters, aliases),
parsing a model's list, the empty-set conventions, duplicates, and micro-averaging over a set."""
from __future__ import annotations

import numpy as np
import pytest

from forge.data.gene_mentions import normalize_symbol, parse_gene_list
from forge.evaluate.genes import (GeneCounts, GoldGene, f1_statistic, gold_genes, micro, precision_statistic,
                                  recall_statistic, score_example, units)


@pytest.mark.parametrize("spellings,key", [
    (["TNF-α", "TNF-alpha", "TNF alpha", "tnfα", "TNFΑ"], "tnfalpha"),  # Greek letter or its name, any case
    (["IFN-γ", "IFN gamma", "ifn-Γ"], "ifngamma"),
    (["IL-6", "IL6", "il 6", "Il-6."], "il6"),
    (["TP53", "tp53", "ＴＰ５３"], "tp53"),  # full-width characters (NFKC)
    (["TNF-ς", "TNF-σ"], "tnfsigma"),  # final sigma folds to sigma
])
def test_spellings_of_one_symbol_share_a_key(spellings: list[str], key: str) -> None:
    assert {normalize_symbol(s) for s in spellings} == {key}


# ------------------------------------------------------------------------------------- one example, by hand
def test_partly_right() -> None:
    # gold {BRCA1, TP53, EGFR}, predicted {BRCA1, TP53, KRAS, MYC}: tp 2 (BRCA1, TP53), fp 2 (KRAS, MYC),
    # fn 1 (EGFR). precision 2/4 = 0.5, recall 2/3, F1 = 2 * 0.5 * 2/3 / (0.5 + 2/3) = (2/3) / (7/6) = 4/7
    counts = score_example(["BRCA1", "TP53", "KRAS", "MYC"], ["BRCA1", "TP53", "EGFR"])
    assert counts == GeneCounts(tp=2, fp=2, fn=1)
    assert counts.precision == pytest.approx(0.5)
    assert counts.recall == pytest.approx(2 / 3)
    assert counts.f1 == pytest.approx(4 / 7)


def test_no_genes_in_gold_and_none_predicted_is_perfect() -> None:
    # nothing to find and nothing claimed: tp = fp = fn = 0; by the documented convention P = R = F1 = 1
    counts = score_example([], [])
    assert counts == GeneCounts(0, 0, 0)
    assert (counts.precision, counts.recall, counts.f1) == (1.0, 1.0, 1.0)
    assert score_example(parse_gene_list("none"), []) == GeneCounts(0, 0, 0)


def test_no_genes_in_gold_but_some_predicted() -> None:
    # tp 0, fp 2, fn 0: precision 0/2 = 0; recall has no denominator and something was claimed: 0; F1 0
    counts = score_example(["BRCA1", "TP53"], [])
    assert counts == GeneCounts(0, 2, 0)
    assert (counts.precision, counts.recall, counts.f1) == (0.0, 0.0, 0.0)


def test_genes_in_gold_and_none_predicted() -> None:
    # tp 0, fp 0, fn 2: recall 0/2 = 0; precision has no denominator and something was missed: 0; F1 0
    counts = score_example([], ["BRCA1", "TP53"])
    assert counts == GeneCounts(0, 0, 2)
    assert (counts.precision, counts.recall, counts.f1) == (0.0, 0.0, 0.0)


def test_all_wrong() -> None:
    # gold {BRCA1, TP53}, predicted {EGFR, KRAS, MYC}: tp 0, fp 3, fn 2; P = 0/3, R = 0/2, F1 = 0 (P + R = 0)
    counts = score_example(["EGFR", "KRAS", "MYC"], ["BRCA1", "TP53"])
    assert counts == GeneCounts(0, 3, 2)
    assert (counts.precision, counts.recall, counts.f1) == (0.0, 0.0, 0.0)


def test_duplicates_count_once() -> None:
    # TP53 predicted four times, as itself and as its alias p53: one true positive, no false positive.
    # gold lists BRCA1 twice: one gene to find. tp 1 (TP53), fp 0, fn 1 (BRCA1): P = 1, R = 1/2, F1 = 2/3
    gold = [GoldGene("TP53", ("p53",)), GoldGene("BRCA1"), GoldGene("BRCA1")]
    counts = score_example(["TP53", "tp53", "TP-53", "p53"], gold)
    assert counts == GeneCounts(tp=1, fp=0, fn=1)
    assert counts.f1 == pytest.approx(2 / 3)


def test_case_greek_letters_and_aliases_match() -> None:
    # every prediction is a gold gene in another spelling: tp 4, fp 0, fn 0
    gold = [GoldGene("BRCA1"), GoldGene("TNF-α"), GoldGene("IFNG", ("IFN-γ",)), GoldGene("STK11", ("LKB1",))]
    counts = score_example(["brca1", "TNF-alpha", "IFN gamma", "Lkb1"], gold)
    assert counts == GeneCounts(tp=4, fp=0, fn=0)
    # without the alias from the data, IFN gamma is another name: tp 3, fp 1 (ifngamma), fn 1 (IFNG)
    assert score_example(["brca1", "TNF-alpha", "IFN gamma", "Lkb1"],
                         [GoldGene("BRCA1"), GoldGene("TNF-α"), GoldGene("IFNG"), GoldGene("STK11", ("LKB1",))]) \
        == GeneCounts(tp=3, fp=1, fn=1)


def test_a_shared_alias_table_and_symbols_win_over_aliases() -> None:
    # a table valid for every example (name -> symbol): HER2 is ERBB2
    assert score_example(["HER2"], ["ERBB2"], aliases={"HER2": "ERBB2"}) == GeneCounts(1, 0, 0)
    # TP53 is a gold symbol and (oddly) also listed as an alias of TP63: predicting TP53 finds TP53
    assert score_example(["TP53"], [GoldGene("TP53"), GoldGene("TP63", ("TP53",))]) == GeneCounts(1, 0, 1)


def test_gold_genes_from_symbols_and_annotations() -> None:
    class Annotation:  # the shape of a paper's gene annotation
        symbol, aliases = "STK11", ["LKB1"]

    assert gold_genes(["BRCA1", Annotation()]) == [GoldGene("BRCA1"), GoldGene("STK11", ("LKB1",))]


# ------------------------------------------------------------------------------------------ over a set
def test_micro_average_over_examples() -> None:
    # example 1: tp 2, fp 2, fn 1; example 2: tp 1, fp 0, fn 1; example 3: nothing to find, nothing claimed.
    # summed: tp 3, fp 2, fn 2 -> P = 3/5, R = 3/5, F1 = 0.6.
    # (a macro average of per-example F1 would be (4/7 + 2/3 + 1) / 3 = 0.7460: micro weighs genes, not examples)
    counts = [score_example(["BRCA1", "TP53", "KRAS", "MYC"], ["BRCA1", "TP53", "EGFR"]),
              score_example(["PTEN"], ["PTEN", "APOE"]),
              score_example([], [])]
    total = micro(counts)
    assert total == GeneCounts(3, 2, 2)
    assert (total.precision, total.recall, total.f1) == pytest.approx((0.6, 0.6, 0.6))
    table = units(counts)
    assert table.tolist() == [[2, 2, 1], [1, 0, 1], [0, 0, 0]]
    assert float(precision_statistic(table)) == pytest.approx(0.6)
    assert float(recall_statistic(table)) == pytest.approx(0.6)
    assert float(f1_statistic(table)) == pytest.approx(0.6)


def test_statistics_on_resamples_follow_the_same_conventions() -> None:
    table = units([GeneCounts(2, 2, 1), GeneCounts(0, 0, 0), GeneCounts(0, 3, 2)])
    # resample rows: [0, 0] -> tp 4, fp 4, fn 2: P 0.5, R 2/3, F1 4/7
    #                [1, 1] -> nothing at all: P = R = F1 = 1
    #                [2, 1] -> tp 0, fp 3, fn 2: all 0
    resampled = table[np.array([[0, 0], [1, 1], [2, 1]])]
    assert precision_statistic(resampled) == pytest.approx([0.5, 1.0, 0.0])
    assert recall_statistic(resampled) == pytest.approx([2 / 3, 1.0, 0.0])
    assert f1_statistic(resampled) == pytest.approx([4 / 7, 1.0, 0.0])
    assert units([]).shape == (0, 3)
