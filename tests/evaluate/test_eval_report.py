"""The report from task results (no model): metrics with intervals, A/B comparisons, gates, the benchmark,
report.md and the PNG plots; and generation latency statistics by hand."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from forge.evaluate.bootstrap import mean_of
from forge.evaluate.generation import Generation, latency_summary
from forge.evaluate.genes import f1_statistic, precision_statistic, recall_statistic
from forge.evaluate.markdown import render_markdown
from forge.evaluate.perplexity import perplexity_statistic
from forge.evaluate.report import build_report, write_report
from forge.evaluate.results import TaskResult


def perplexity_result(label: str, nll_per_token: float) -> TaskResult:
    # 20 documents of 10 tokens, each with the same NLL per token: perplexity exp(nll_per_token) exactly
    units = np.array([[10 * nll_per_token, 10.0]] * 20)
    return TaskResult("perplexity", label, units=units, statistics={"perplexity": perplexity_statistic}).finish()


def gene_result(label: str, rows: list[list[int]], seconds: float) -> TaskResult:
    result = TaskResult("gene_recognition", label, units=np.array(rows, dtype=float),
                        statistics={"gene_precision": precision_statistic, "gene_recall": recall_statistic,
                                    "gene_f1": f1_statistic})
    result.generations = [Generation("BRCA1", 50, 4, seconds)] * len(rows)
    return result.finish()


@pytest.fixture
def report() -> dict:
    results = {
        # tuned: NLL 3 per token (perplexity e^3 = 20.0855); base: NLL 7 per token (e^7 = 1096.63)
        "perplexity": {"tuned": perplexity_result("fine-tuned", 3.0), "baseline": perplexity_result("base", 7.0)},
        # tuned: 20 examples with (tp 1, fp 0, fn 1): P = 1, R = 1/2, F1 = 2/3; base: (0, 1, 2): all 0
        "gene_recognition": {"tuned": gene_result("fine-tuned", [[1, 0, 1]] * 20, 0.5),
                             "baseline": gene_result("base", [[0, 1, 2]] * 20, 0.25)},
        "summarization": {"tuned": TaskResult("summarization", "fine-tuned", skipped="no references"),
                          "baseline": TaskResult("summarization", "base", skipped="no references")},
    }
    gates = [{"metric": "perplexity", "must": "decrease_by", "value": 0.10},
             {"metric": "gene_f1", "must": "at_least", "value": 0.9}]
    return build_report(results=results, gates=gates, samples=200, seed=0,
                        info={"run_name": "demo", "run_dir": "/runs/demo", "baseline_label": "base",
                              "tasks_requested": ["perplexity", "gene_recognition", "summarization"],
                              "data": {"source": "test split", "examples": {"perplexity": 20}}})


def test_metrics_intervals_and_comparisons(report: dict) -> None:
    ppl = report["metrics"]["perplexity"]
    assert ppl["tuned"] == pytest.approx(np.exp(3)) and ppl["baseline"] == pytest.approx(np.exp(7))
    # identical documents: every resample has the same perplexity, so the interval is the point
    assert ppl["tuned_ci"] == pytest.approx([np.exp(3)] * 2)
    comparison = report["comparisons"]["perplexity"]
    assert comparison["difference"] == pytest.approx(np.exp(3) - np.exp(7))
    assert comparison["verdict"] == "significantly better"
    f1 = report["metrics"]["gene_f1"]
    assert f1["tuned"] == pytest.approx(2 / 3) and f1["baseline"] == 0.0
    assert report["comparisons"]["gene_f1"]["verdict"] == "significantly better"
    assert report["tasks"]["summarization"]["tuned"]["skipped"] == "no references"
    assert "rouge1" not in report["metrics"]


def test_benchmark_and_gates(report: dict) -> None:
    # 20 requests of 0.5 s and 4 tokens each: 80 tokens / 10 s = 8 tokens/s (base: 80 / 5 = 16)
    assert report["benchmark"]["tuned"]["tokens_per_second"] == pytest.approx(8.0)
    assert report["metrics"]["tokens_per_second"] == {"task": "benchmark", "higher_is_better": True,
                                                      "tuned": pytest.approx(8.0), "baseline": pytest.approx(16.0)}
    gates = {g["metric"]: g for g in report["gates"]}
    assert gates["perplexity"]["passed"] and not gates["gene_f1"]["passed"]
    assert report["gates_passed"] is False


def test_written_report_json_markdown_and_plots(report: dict, tmp_path: Path) -> None:
    write_report(report, tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["metrics"].keys() == report["metrics"].keys()
    assert saved["plots"] == ["perplexity.png", "gene_recognition.png"]
    for plot in saved["plots"]:
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "report.md").read_text()
    assert text == render_markdown(saved)
    assert "## Gates: FAILED" in text and "| `gene_f1 at_least 0.9` | **FAIL** |" in text
    assert "| perplexity (lower is better) | 20.09 [20.09, 20.09] | 1097 [1097, 1097] |" in text
    # relative change (e^3 - e^7) / e^7 = e^-4 - 1 = -0.98168
    assert "| -1077 [-1077, -1077] (-98.2%) | significantly better |" in text
    assert "| gene_f1 (higher is better) | 0.6667 [0.6667, 0.6667] | 0 [0, 0] |" in text
    assert "![Perplexity](perplexity.png)" in text and "Skipped: no references." in text
    assert "| fine-tuned | 20 | 0.500 | 0.500 | 8.0 |" in text


def test_json_has_no_nan(tmp_path: Path) -> None:
    # one example: no interval (nan) -> null in JSON, n/a in markdown
    results = {"perplexity": {"tuned": TaskResult("perplexity", "fine-tuned", units=np.array([[2.0, 1.0]]),
                                                  statistics={"perplexity": perplexity_statistic}).finish(),
                              "baseline": None}}
    report = build_report(results=results, gates=[], samples=100, seed=0, info={"run_dir": "/r"})
    write_report(report, tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["metrics"]["perplexity"]["tuned_ci"] == [None, None]
    assert "No quality gates are set" in (tmp_path / "report.md").read_text()


def test_latency_summary_by_hand() -> None:
    # latencies 0.1 0.2 0.3 0.4 s, 10 tokens each. p50 (linear interpolation) = (0.2 + 0.3) / 2 = 0.25;
    # p99 at rank 0.99 x 3 = 2.97: 0.3 + 0.97 x 0.1 = 0.397; tokens/s = 40 / (0.1 + 0.2 + 0.3 + 0.4) = 40
    generations = [Generation("x", 5, 10, s) for s in (0.1, 0.2, 0.3, 0.4)]
    summary = latency_summary(generations)
    assert summary["requests"] == 4 and summary["generated_tokens"] == 40 and summary["prompt_tokens"] == 20
    assert summary["latency_p50_s"] == pytest.approx(0.25)
    assert summary["latency_p99_s"] == pytest.approx(0.397)
    assert summary["latency_mean_s"] == pytest.approx(0.25)
    assert summary["tokens_per_second"] == pytest.approx(40.0)
    assert latency_summary([]) == {"requests": 0}


def test_mean_statistic() -> None:
    assert float(mean_of(1)(np.array([[0.0, 1.0], [0.0, 0.5]]))) == 0.75
