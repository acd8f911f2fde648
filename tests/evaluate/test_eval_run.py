"""End to end on the CPU: a run directory with a LoRA adapter on the tiny LLaMA, evaluated on held-out papers
against its base model, with report.json, report.md, plots, gates and `forge eval`'s exit codes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from forge.cli import main
from forge.evaluate import evaluate_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(trained_run: Path) -> dict:
    return evaluate_run(trained_run, progress=False)


def test_report_has_every_task_metric_and_comparison(report: dict, trained_run: Path) -> None:
    saved = json.loads((trained_run / "eval" / "report.json").read_text())
    assert saved["metrics"].keys() == report["metrics"].keys()
    for name in ("perplexity", "gene_precision", "gene_recall", "gene_f1", "rouge1", "rouge2", "rougeL",
                 "qa_exact_match", "qa_f1", "latency_p50_s", "latency_p99_s", "tokens_per_second"):
        assert name in saved["metrics"], name
    assert saved["has_baseline"] and saved["baseline_label"] == "base"
    assert saved["data"]["examples"]["perplexity"] == 20  # max_examples caps the 24 papers
    ppl = saved["metrics"]["perplexity"]
    assert ppl["tuned"] < ppl["baseline"]
    assert ppl["tuned_ci"][0] <= ppl["tuned"] <= ppl["tuned_ci"][1]
    comparison = saved["comparisons"]["perplexity"]
    assert comparison["verdict"] == "significantly better" and comparison["ci_high"] < 0
    assert saved["benchmark"]["tuned"]["requests"] == 20 + 20 + 20  # genes + summaries + questions
    assert "gene_parse_rate" in saved["metrics"] and "bits_per_byte" in saved["metrics"]
    assert saved["bootstrap"]["unit"] == "paper" and saved["metrics"]["perplexity"]["units"] == 20
    assert saved["recorded"] and saved["report_dir"] == str(trained_run / "eval")
    assert saved["benchmark"]["tuned"]["latency_p50_s"] <= saved["benchmark"]["tuned"]["latency_p99_s"]


def test_gates_are_reported_and_one_fails(report: dict) -> None:
    gates = {g["metric"]: g for g in report["gates"]}
    assert gates["perplexity"]["passed"], gates["perplexity"]["reason"]
    assert not gates["gene_f1"]["passed"]
    assert report["gates_passed"] is False


def test_markdown_and_plots(report: dict, trained_run: Path) -> None:
    folder = trained_run / "eval"
    text = (folder / "report.md").read_text()
    assert "## Gates: FAILED" in text and "| perplexity (lower is better) |" in text
    assert "significantly better" in text and "## Generation benchmark" in text
    assert set(report["plots"]) == {"perplexity.png", "gene_recognition.png", "summarization.png",
                                    "question_answering.png"}
    for plot in report["plots"]:
        data = (folder / plot).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
        assert f"]({plot})" in text


def test_forge_eval_exit_codes(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    limited = ["evaluation.tasks=[perplexity]", "evaluation.max_examples=3", "evaluation.bootstrap_samples=100"]
    # a gate that should fail: perplexity must fall by 99 % (the adapter lowers it far less than that)
    failing = limited + ["evaluation.gates=[{metric: perplexity, must: decrease_by, value: 0.99}]"]
    assert main(["eval", str(trained_run), *failing]) == 1
    captured = capsys.readouterr()
    assert "FAIL perplexity decrease_by 0.99" in captured.out
    assert "forge: quality gate failed: perplexity decrease_by 0.99: " in captured.err
    assert "Traceback" not in captured.err
    passing = limited + ["evaluation.gates=[{metric: perplexity, must: decrease_by, value: 0.1}]"]
    assert main(["eval", str(trained_run), *passing, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)  # stdout is the report alone
    assert report["gates_passed"] and report["gates"][0]["passed"]
    # --compare none drops the baseline: a relative gate cannot be checked, so it fails
    assert main(["eval", str(trained_run), *passing, "--compare", "none"]) == 1
    assert "needs a baseline" in capsys.readouterr().err


def test_forge_eval_bad_input_exits_2_with_one_line(trained_run: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err == f"forge: {tmp_path / 'missing'} is neither a run directory nor a recipe file; " \
                                      "check the path (see docs/troubleshooting.md#evaluation-errors)\n"
    # the recipe's gene_f1 gate with only the perplexity task: a recipe error, placed at the override
    assert main(["eval", str(trained_run), "evaluation.tasks=[perplexity]"]) == 2
    err = capsys.readouterr().err
    assert "evaluation.gates.1.metric: gene_f1 is not measured by evaluation.tasks ['perplexity']" in err
    no_adapter = tmp_path / "no-adapter"
    no_adapter.mkdir()
    shutil.copy(trained_run / "recipe.yaml", no_adapter / "recipe.yaml")
    assert main(["eval", str(no_adapter)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("forge: ") and "has no trained model" in err[-1] and "Traceback" not in "".join(err)


def test_compare_with_another_run_and_an_adapter_folder(trained_run: Path, tmp_path: Path, tiny_llama_dir: Path,
                                                        genomics_examples: list[str]) -> None:
    from eval_support import train_adapter

    other = tmp_path / "barely-trained"
    other.mkdir()
    shutil.copy(trained_run / "recipe.yaml", other / "recipe.yaml")
    train_adapter(tiny_llama_dir, genomics_examples, other / "adapter", steps=2)
    only_perplexity = ["evaluation.tasks=[perplexity]", "evaluation.gates=[]", "evaluation.bootstrap_samples=200"]
    report = evaluate_run(trained_run, compare=str(other), progress=False, overrides=only_perplexity)
    assert report["baseline_label"] == "baseline barely-trained"
    ppl = report["metrics"]["perplexity"]
    assert ppl["tuned"] < ppl["baseline"] and report["comparisons"]["perplexity"]["verdict"] == "significantly better"
    # the same adapter given as a folder is the same baseline
    again = evaluate_run(trained_run, compare=str(other / "adapter"), progress=False, overrides=only_perplexity)
    assert again["metrics"]["perplexity"]["baseline"] == pytest.approx(ppl["baseline"], rel=1e-6)
    # and the run compared with itself is no different
    itself = evaluate_run(trained_run, compare=str(trained_run), progress=False, overrides=only_perplexity)
    assert itself["comparisons"]["perplexity"]["difference"] == pytest.approx(0.0, abs=1e-9)
    assert itself["comparisons"]["perplexity"]["verdict"] == "no significant difference"


def test_an_adhoc_evaluation_writes_its_own_report_and_logs_nothing(
        report: dict, trained_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import forge.evaluate.run as run_module

    recorded = (trained_run / "eval" / "report.json").read_bytes()
    tracked: list[Path] = []
    monkeypatch.setattr(run_module, "_track", lambda run_dir, recipe, rep, folder: tracked.append(folder) or
                        {"status": "logged"})
    gates = ["evaluation.tasks=[perplexity]", "evaluation.max_examples=3", "evaluation.bootstrap_samples=100",
             "evaluation.gates=[{metric: perplexity, must: at_most, value: 1.0}]"]
    adhoc = evaluate_run(trained_run, progress=False, overrides=gates)
    against_none = evaluate_run(trained_run, compare="none", progress=False,
                                overrides=gates[:3] + ["evaluation.gates=[]"])
    for result, prefix in ((adhoc, "adhoc-"), (against_none, "compare-none-")):
        folder = Path(result["report_dir"])
        assert folder.parent == trained_run / "eval" and folder.name.startswith(prefix)
        assert json.loads((folder / "report.json").read_text())["tracking"]["status"] == "off"
        assert (folder / "report.md").is_file()
        assert result["recorded"] is False and result["tracking"]["status"] == "off"
    assert adhoc["gates"][0]["passed"] is False  # the ad-hoc gate was applied, in its own report
    assert (trained_run / "eval" / "report.json").read_bytes() == recorded  # the recorded evaluation is untouched
    assert tracked == []  # and nothing reached the run's MLflow metrics
    # the recipe's own evaluation is the recorded one, and is tracked
    evaluate_run(trained_run, progress=False, overrides=[])
    assert tracked == [trained_run / "eval"]
