"""The statistics of a report: papers (not the questions or chunks inside one) are resampled, fewer than 20 of
them is a small sample with no verdict, perplexities of models with different tokenizers are not compared
(bits per byte are), and the confidence level is written from one constant."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

import forge.evaluate
from forge.evaluate.bootstrap import (BETTER, MIN_UNITS, NOT_COMPARABLE, SMALL_SAMPLE, cluster, interval, mean_of,
                                      paired_bootstrap)
from forge.evaluate.genes import f1_statistic, precision_statistic, recall_statistic
from forge.evaluate.markdown import render_markdown
from forge.evaluate.perplexity import bits_per_byte_statistic, perplexity_statistic
from forge.evaluate.report import build_report, draw_plots
from forge.evaluate.results import TaskResult


def test_rows_of_one_paper_are_summed_into_one_unit() -> None:
    # paper a has two questions (right, right), paper b one (wrong): rows (value, count)
    rows = np.array([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    assert cluster(rows, ["a", "a", "b"]).tolist() == [[2.0, 2.0], [0.0, 1.0]]
    assert cluster(rows, None).tolist() == rows.tolist()
    statistic = mean_of(0, count_column=1)
    assert float(statistic(rows)) == float(statistic(cluster(rows, ["a", "a", "b"]))) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="2 groups for 3 rows"):
        cluster(rows, ["a", "b"])


def test_the_bootstrap_resamples_papers_not_the_questions_inside_one() -> None:
    # 20 papers of 5 questions each; the tuned model answers all 5 questions of papers 0-9 right and none of
    # papers 10-19, the baseline answers none. 100 questions, but only 20 independent papers.
    tuned = np.array([[1.0 if paper < 10 else 0.0, 1.0] for paper in range(20) for _ in range(5)])
    baseline = np.column_stack([np.zeros(100), np.ones(100)])
    groups = [f"paper{paper}" for paper in range(20) for _ in range(5)]
    statistic = mean_of(0, count_column=1)
    by_paper = paired_bootstrap(tuned, baseline, statistic, metric="qa_exact_match", higher_is_better=True,
                                groups=groups, seed=1)
    by_question = paired_bootstrap(tuned, baseline, statistic, metric="qa_exact_match", higher_is_better=True, seed=1)
    assert (by_paper.examples, by_paper.units, by_question.units) == (100, 20, 100)
    assert by_paper.difference == by_question.difference == pytest.approx(0.5)
    # resampling questions treats 100 correlated answers as independent: its interval is too narrow by about
    # sqrt(5) (the questions per paper); the paper interval is the honest one
    width = lambda c: c.ci_high - c.ci_low  # noqa: E731
    assert width(by_paper) > 1.8 * width(by_question)
    assert by_paper.verdict == BETTER
    low, high = interval(tuned, statistic, groups=groups, seed=1)
    assert (low, high) == pytest.approx((by_paper.ci_low, by_paper.ci_high))  # baseline all 0: the same draws


def test_fewer_than_20_units_is_a_small_sample_without_a_verdict() -> None:
    assert MIN_UNITS == 20
    ones, zeros = np.ones(19), np.zeros(19)
    small = paired_bootstrap(ones, zeros, mean_of(0), metric="m", higher_is_better=True)
    assert small.verdict == SMALL_SAMPLE and (small.ci_low, small.ci_high) == (1.0, 1.0)  # the interval is kept
    assert paired_bootstrap(np.ones(20), np.zeros(20), mean_of(0), metric="m", higher_is_better=True).verdict == BETTER
    # 40 examples, but from 10 papers: still a small sample
    groups = [f"p{i // 4}" for i in range(40)]
    assert paired_bootstrap(np.ones(40), np.zeros(40), mean_of(0), metric="m", higher_is_better=True,
                            groups=groups).verdict == SMALL_SAMPLE


def _genes(label: str, rows: list[list[int]]) -> TaskResult:
    return TaskResult("gene_recognition", label, units=np.array(rows, dtype=float), groups=[str(i) for i in
                      range(len(rows))], statistics={"gene_precision": precision_statistic,
                                                     "gene_recall": recall_statistic, "gene_f1": f1_statistic}).finish()


def test_a_small_sample_is_noted_in_the_report() -> None:
    results = {"gene_recognition": {"tuned": _genes("fine-tuned", [[1, 0, 0]] * 12),
                                    "baseline": _genes("base", [[0, 1, 1]] * 12)}}
    report = build_report(results=results, gates=[], samples=100, seed=0, info={"run_dir": "/r"}, unit="paper")
    assert report["comparisons"]["gene_f1"]["verdict"] == SMALL_SAMPLE
    assert report["metrics"]["gene_f1"]["units"] == 12
    assert any(n.startswith("gene_recognition: a small sample (12 papers, fewer than 20)") for n in report["notes"])
    assert "small sample: no verdict" in render_markdown(report)


def _perplexity(label: str, nll_per_byte: float) -> TaskResult:
    # 20 documents of 10 tokens and 40 bytes
    units = np.array([[40 * nll_per_byte, 10.0, 40.0]] * 20)
    return TaskResult("perplexity", label, units=units, groups=[f"d{i}" for i in range(20)],
                      statistics={"perplexity": perplexity_statistic,
                                  "bits_per_byte": bits_per_byte_statistic}).finish()


def test_bits_per_byte_by_hand() -> None:
    # NLL 8 ln 2 nats over 8 bytes is 8 bits over 8 bytes: 1 bit per byte, whatever the token count
    assert float(bits_per_byte_statistic(np.array([[8 * math.log(2), 3.0, 8.0]]))) == pytest.approx(1.0)
    assert float(bits_per_byte_statistic(np.array([[8 * math.log(2), 30.0, 8.0]]))) == pytest.approx(1.0)


def test_perplexities_of_different_tokenizers_are_not_compared(tmp_path: Path) -> None:
    results = {"perplexity": {"tuned": _perplexity("fine-tuned", 0.5), "baseline": _perplexity("other", 1.0)}}
    reason = "the two models have different tokenizers"
    gates = [{"metric": "perplexity", "must": "decrease_by", "value": 0.1},
             {"metric": "bits_per_byte", "must": "decrease_by", "value": 0.1}]
    report = build_report(results=results, gates=gates, samples=100, seed=0, info={"run_dir": "/r"},
                          not_comparable={"perplexity": reason})
    assert report["comparisons"]["perplexity"] == {"metric": "perplexity", "verdict": NOT_COMPARABLE,
                                                   "reason": reason}
    bpb = report["comparisons"]["bits_per_byte"]  # 0.5 / ln 2 against 1 / ln 2 bits per byte
    assert bpb["tuned"] == pytest.approx(0.5 / math.log(2)) and bpb["verdict"] == BETTER
    outcomes = {g["metric"]: g for g in report["gates"]}
    assert not outcomes["perplexity"]["passed"] and reason in outcomes["perplexity"]["reason"]
    assert outcomes["bits_per_byte"]["passed"]
    assert f"not comparable ({reason})" in render_markdown(report)
    assert draw_plots(report, tmp_path) == ["perplexity.png"]  # drawn in bits per byte, the comparable scale


def test_the_confidence_level_is_written_from_one_constant() -> None:
    report = build_report(results={"gene_recognition": {"tuned": _genes("fine-tuned", [[1, 0, 0]] * 20),
                                                        "baseline": None}},
                          gates=[], samples=50, seed=0, info={"run_dir": "/r"})
    assert report["bootstrap"]["confidence"] == 0.95 and "fine-tuned [95 % CI]" in render_markdown(report)
    report["bootstrap"]["confidence"] = 0.9
    assert "fine-tuned [90 % CI]" in render_markdown(report) and "95 %" not in render_markdown(report)
    # no module but bootstrap.py types the level
    package = Path(forge.evaluate.__file__).parent
    typed = [p.name for p in package.glob("*.py") if p.name != "bootstrap.py"
             and re.search(r"95 ?%|confidence\W+0\.95|97\.5|2\.5th", p.read_text(encoding="utf-8"))]
    assert typed == []


def test_tokenizers_are_told_apart_by_their_vocabulary(tiny_llama_dir: Path) -> None:
    from transformers import AutoTokenizer

    from forge.evaluate.run import same_tokenizer

    one, again = AutoTokenizer.from_pretrained(tiny_llama_dir), AutoTokenizer.from_pretrained(tiny_llama_dir)
    assert same_tokenizer(one, one) and same_tokenizer(one, again)
    again.add_tokens(["BRCA1"])  # a run with a domain token splits text differently
    assert not same_tokenizer(one, again)


def test_adhoc_report_folders_are_named_for_what_differs() -> None:
    from forge.evaluate.run import adhoc_name

    assert adhoc_name("runs/production", []) == "compare-production"
    assert adhoc_name("none", []) == "compare-none"
    assert adhoc_name(None, ["evaluation.max_examples=5"]) == adhoc_name(None, ["evaluation.max_examples=5"])
    assert adhoc_name(None, ["evaluation.max_examples=5"]).startswith("adhoc-")
    assert adhoc_name(None, ["evaluation.max_examples=5"]) != adhoc_name(None, ["evaluation.max_examples=6"])
    assert adhoc_name("runs/x", ["a=1"]).startswith("compare-x-")
