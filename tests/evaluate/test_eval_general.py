"""The general task: lm-evaluation-harness tasks on the fine-tuned model and its base.

End to end on the CPU (slow): a local multiple-choice task and a local generation task (tests/evaluate/
general_tasks/, JSONL data beside their YAMLs, no network) on the tiny LoRA run, into report.json and
report.md with paired intervals; a gate that fails exits 1; a named task whose data is not cached exits 2
with one line. Fast: how harness results become metrics, gates with a tolerance, the recipe rules.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from forge.cli import main
from forge.evaluate import evaluate_run
from forge.evaluate.gates import check_gate
from forge.evaluate.general import listed_names, metric_name, split_metric
from forge.recipe import RecipeError, resolve

TASKS_DIR = Path(__file__).parent / "general_tasks"
ENDINGS, COMPLETE = TASKS_DIR / "endings.yaml", TASKS_DIR / "complete.yaml"
GENERAL = ["evaluation.tasks=[general]", f"evaluation.general.tasks=[{ENDINGS}, {COMPLETE}]",
           "evaluation.bootstrap_samples=200"]


def _jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (TASKS_DIR / name).read_text().splitlines()]


@pytest.fixture(scope="module")
def general_run(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny LoRA run, so this module's reports do not replace the other modules'."""
    run = tmp_path_factory.mktemp("general") / "tiny-eval"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("eval"))
    return run


@pytest.fixture(scope="module")
def report(general_run: Path) -> dict:
    gates = ("evaluation.gates=[{metric: general/forge_complete/exact_match, must: not_decrease, tolerance: 0.02},"
             " {metric: general/forge_endings/acc, must: not_decrease}]")
    return evaluate_run(general_run, progress=False, overrides=[*GENERAL, gates])


@pytest.mark.slow
def test_both_tasks_scored_on_the_tuned_model_and_its_base(report: dict, general_run: Path) -> None:
    saved = json.loads((Path(report["report_dir"]) / "report.json").read_text())  # an ad-hoc evaluation's own folder
    assert saved["metrics"].keys() == report["metrics"].keys() == {
        "general/forge_endings/acc", "general/forge_endings/acc_norm", "general/forge_complete/exact_match"}
    parts = saved["tasks"]["general"]["tuned"]["parts"]
    assert parts["forge_endings"]["details"]["documents"] == len(_jsonl("endings.jsonl"))
    assert parts["forge_complete"]["details"]["documents"] == len(_jsonl("complete.jsonl"))
    assert parts["forge_endings"]["details"]["source"] == str(ENDINGS)
    for name, entry in saved["metrics"].items():
        assert entry["task"] == "general" and entry["higher_is_better"] is True
        assert 0.0 <= entry["tuned"] <= 1.0 and 0.0 <= entry["baseline"] <= 1.0
        low, high = entry["tuned_ci"]
        assert low <= entry["tuned"] <= high, name
        comparison = saved["comparisons"][name]
        assert comparison["difference"] == pytest.approx(entry["tuned"] - entry["baseline"])
        assert comparison["ci_low"] <= comparison["difference"] <= comparison["ci_high"]
        assert comparison["examples"] == parts[name.split("/")[1]]["details"]["documents"]
    # the adapter is on for the fine-tuned model and off for the base: only the fine-tune finishes the corpus's
    # sentences ("... in lung" -> "cells"), which the random base model cannot
    complete = saved["comparisons"]["general/forge_complete/exact_match"]
    assert complete["tuned"] > 0.5 and complete["baseline"] == 0.0
    assert complete["verdict"] == "significantly better"
    assert saved["gates_passed"] is True and [g["tolerance"] for g in saved["gates"]] == [0.02, 0.0]


@pytest.mark.slow
def test_markdown_and_plot(report: dict, general_run: Path) -> None:
    folder = Path(report["report_dir"])
    text = (folder / "report.md").read_text()
    assert "## General ability (lm-evaluation-harness)" in text
    assert "| general/forge_complete/exact_match (higher is better) |" in text and "significantly better" in text
    assert "`general/forge_complete/exact_match not_decrease 0, tolerance 0.02` | pass" in text
    assert "- `forge_endings`: documents 36" in text and "Sample outputs of `forge_complete` (base):" in text
    assert report["plots"] == ["general.png"]
    assert (folder / "general.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_a_failing_gate_exits_1(general_run: Path, tmp_path: Path, tiny_llama_dir: Path,
                                genomics_examples: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A fine-tune that lost what an earlier run knew: trained where every finding ends in "tissue", it no
    longer finishes "... in lung" with "cells", and the earlier run is its baseline."""
    from eval_support import train_adapter

    worse = tmp_path / "tissue-run"
    worse.mkdir()
    shutil.copy(general_run / "recipe.yaml", worse / "recipe.yaml")
    train_adapter(tiny_llama_dir, [t.replace(" cells.", " tissue.") for t in genomics_examples], worse / "adapter")
    gate = "evaluation.gates=[{metric: general/forge_complete/exact_match, must: not_decrease, tolerance: 0.05}]"
    assert main(["eval", str(worse), *GENERAL, gate, "--compare", str(general_run)]) == 1
    captured = capsys.readouterr()
    assert "FAIL general/forge_complete/exact_match not_decrease 0, tolerance 0.05" in captured.out
    assert "forge: quality gate failed: general/forge_complete/exact_match not_decrease 0, tolerance 0.05: " in captured.err
    assert "Traceback" not in captured.err
    saved = json.loads(next((worse / "eval").glob("compare-*/report.json")).read_text())  # --compare's own folder
    outcome = saved["gates"][0]
    assert saved["baseline_label"] == "baseline tiny-eval" and not saved["gates_passed"]
    assert outcome["tuned"] < outcome["baseline"] - 0.05 and outcome["threshold"] == pytest.approx(
        outcome["baseline"] - 0.05)


@pytest.mark.slow
def test_a_named_task_without_cached_data_exits_2(general_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import datasets.config
    import huggingface_hub.constants

    # an empty Hugging Face cache, whatever this machine has downloaded
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert main(["eval", str(general_run), "evaluation.tasks=[general]", "evaluation.general.tasks=[arc_easy]",
                 "evaluation.gates=[]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # the progress line, then the error
    assert len(err) == 2 and "loading lm-evaluation-harness tasks" in err[0], err
    assert err[1].startswith("forge: evaluation.general.tasks: the data of arc_easy (allenai/ai2_arc, ARC-Easy) is "
                             "not in the Hugging Face cache and evaluation.general.offline is true; ")
    assert "datasets.load_dataset('allenai/ai2_arc', 'ARC-Easy')" in err[1] and "dataset_path: json" in err[1]
    assert err[1].endswith("(see docs/troubleshooting.md#harness-data-not-cached)")
    # a misspelt name: the same one line, with the harness's name it meant
    assert main(["eval", str(general_run), "evaluation.tasks=[general]", "evaluation.general.tasks=[arc_eazy]",
                 "evaluation.gates=[]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[1:] == ["forge: evaluation.general.tasks: 'arc_eazy' is not an lm-evaluation-harness task; did you mean "
                   "'arc_easy'? (see docs/troubleshooting.md#evaluation-errors)"]


# ------------------------------------------------------------------------------------------------ fast
def _sample(doc_id: int, filter_name: str = "none", **scores: object) -> dict:
    return {"doc_id": doc_id, "filter": filter_name, "target": "x", "filtered_resps": ["x"],
            "metrics": list(scores), **scores}


def test_harness_results_become_metrics_with_units_where_samples_reproduce_them() -> None:
    from forge.evaluate.harness import harness_parts

    out = {
        "results": {
            "grp": {"alias": "grp", "acc,none": 0.6, "acc_stderr,none": "N/A"},  # pooled: (2 + 1) / 5
            "t1": {"alias": " - t1", "acc,none": 2 / 3, "acc_stderr,none": 0.1, "bleu,none": 12.5},
            "t2": {"alias": " - t2", "acc,none": 0.5},
            "gen": {"exact_match,strict-match": 0.5, "exact_match,flexible-extract": 1.0},
        },
        "group_subtasks": {"grp": ["t1", "t2"]},
        "higher_is_better": {"t1": {"acc": True, "bleu": True}, "gen": {"exact_match": True}},
        "samples": {
            # out of doc order, as a multi-process run may log them
            "t1": [_sample(2, acc=1.0, bleu=["ref", "hyp"]), _sample(0, acc=1.0, bleu=["r", "h"]),
                   _sample(1, acc=0.0, bleu=["r", "h"])],
            "t2": [_sample(0, acc=True), _sample(1, acc=False)],
            "gen": [_sample(0, "strict-match", exact_match=1.0), _sample(0, "flexible-extract", exact_match=1.0),
                    _sample(1, "strict-match", exact_match=0.0), _sample(1, "flexible-extract", exact_match=1.0)],
        },
        "n-shot": {"t1": 0, "t2": 5}, "versions": {"t1": 1.0},
    }
    parts = harness_parts(out, "fine-tuned")
    t1 = parts["t1"]
    assert t1.metrics == {"general/t1/acc": pytest.approx(2 / 3), "general/t1/bleu": 12.5}
    # bleu is a corpus score (its samples carry inputs): reported, never resampled
    assert list(t1.statistics) == ["general/t1/acc"]
    assert t1.units[:, 0].tolist() == [1.0, 0.0, 1.0]  # doc order
    assert t1.details["documents"] == 3 and parts["t2"].details["num_fewshot"] == 5
    # a group's score pools its tasks' documents: 5 rows, and the pooled mean is the harness's 0.6
    group = parts["grp"]
    assert group.units.shape == (5, 1) and float(group.statistics["general/grp/acc"](group.units)) == 0.6
    assert group.details["subtasks"] == 2
    # filters name the metric; each filter is its own column over the same two documents
    gen = parts["gen"]
    assert set(gen.metrics) == {"general/gen/exact_match/strict-match", "general/gen/exact_match/flexible-extract"}
    assert gen.units.shape == (2, 2) and len(gen.statistics) == 2
    # a score the samples do not reproduce (a macro average) keeps no interval
    out["results"]["grp"]["acc,none"] = (2 / 3 + 0.5) / 2
    assert harness_parts(out, "fine-tuned")["grp"].statistics == {}


def test_report_pairs_parts_and_keeps_point_metrics() -> None:
    from forge.evaluate.report import NO_INTERVAL, build_report
    from forge.evaluate.results import TaskResult
    from forge.evaluate.bootstrap import mean_of

    def result(label: str, acc: list[float], bleu: float) -> TaskResult:
        part = TaskResult("general/t", label, metrics={"general/t/acc": float(np.mean(acc)), "general/t/bleu": bleu},
                          units=np.array(acc).reshape(-1, 1), statistics={"general/t/acc": mean_of(0)},
                          higher_is_better={"general/t/acc": True, "general/t/bleu": True})
        return TaskResult("general", label, parts={"t": part})

    tuned, base = result("fine-tuned", [1, 1, 0, 1, 1, 1], 20.0), result("base", [0, 1, 0, 0, 1, 0], 25.0)
    report = build_report(results={"general": {"tuned": tuned, "baseline": base}}, samples=200, seed=0,
                          info={}, gates=[{"metric": "general/t/bleu", "must": "not_decrease", "tolerance": 4.0}])
    acc = report["comparisons"]["general/t/acc"]
    assert acc["difference"] == pytest.approx(5 / 6 - 2 / 6) and acc["examples"] == 6
    bleu = report["comparisons"]["general/t/bleu"]
    assert bleu["difference"] == -5.0 and bleu["verdict"] == NO_INTERVAL and bleu["ci_low"] is None
    assert report["metrics"]["general/t/bleu"]["tuned_ci"] is None
    # 20 < 25 - 4: the tolerance is in BLEU points
    assert report["gates"][0]["passed"] is False and report["gates"][0]["threshold"] == 21.0


@pytest.mark.parametrize("must,tolerance,passed,threshold", [
    ("not_decrease", 0.0, False, 0.62),   # 0.60 < 0.62
    ("not_decrease", 0.03, True, 0.59),   # 0.60 >= 0.62 - 0.03
    ("not_decrease", 0.01, False, 0.61),  # 0.60 < 0.62 - 0.01
    ("not_increase", 0.0, True, 0.62),    # 0.60 <= 0.62
])
def test_gate_tolerance_is_in_the_metrics_units(must: str, tolerance: float, passed: bool, threshold: float) -> None:
    metrics = {"general/arc_easy/acc": {"tuned": 0.60, "baseline": 0.62}}
    outcome = check_gate({"metric": "general/arc_easy/acc", "must": must, "tolerance": tolerance}, metrics)
    assert outcome.passed is passed and outcome.threshold == pytest.approx(threshold)
    assert outcome.line().startswith(("PASS " if passed else "FAIL ") + f"general/arc_easy/acc {must} 0")


def test_metric_names() -> None:
    assert metric_name("arc_easy", "acc") == "general/arc_easy/acc"
    assert metric_name("gsm8k", "exact_match", "strict-match") == "general/gsm8k/exact_match/strict-match"
    assert metric_name("a,b", "acc(x)") == "general/a_b/acc_x_"  # MLflow refuses , ( ) in metric names
    assert split_metric("general/mmlu/acc") == ("mmlu", "acc") and split_metric("gene_f1") is None
    assert listed_names([str(ENDINGS), "hellaswag"]) == ["forge_endings", "hellaswag"]


GENERAL_RECIPE = """\
data: {{sources: [{{path: papers.json}}]}}
model: {{name_or_path: forge:tiny-llama}}
evaluation:
  tasks: {tasks}
  general: {{tasks: {general}}}
  gates: {gates}
"""


def _issues(tmp_path: Path, tasks: str, general: str, gates: str) -> list[str]:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(GENERAL_RECIPE.format(tasks=tasks, general=general, gates=gates), encoding="utf-8")
    try:
        resolve(recipe)
    except RecipeError as e:
        return [i.format().split("r.yaml:", 1)[1] for i in e.issues]
    return []


def test_recipe_rules_for_general(tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    shutil.copy(ENDINGS, tmp_path / "tasks" / "endings.yaml")
    ok = _issues(tmp_path, "[perplexity, general]", "[arc_easy, tasks/endings.yaml]",
                 "[{metric: general/forge_endings/acc, must: not_decrease, tolerance: 0.02},"
                 " {metric: general/arc_easy/acc_norm, must: at_least, value: 0.5}]")
    assert ok == []
    # the YAML path is made absolute against the recipe, a task name is left as it is
    recipe = resolve(tmp_path / "r.yaml").recipe
    assert recipe.evaluation.general.tasks == ["arc_easy", str(tmp_path / "tasks" / "endings.yaml")]
    problems = _issues(tmp_path, "[perplexity, general]", "[arc_easy, tasks/missing.yaml]",
                       "[{metric: general/arc_eazy/acc, must: not_decrease},"
                       " {metric: general/arc_easy/acc, must: at_least, value: 0.5, tolerance: 0.1}]")
    assert any("evaluation.general.tasks.1: task file" in p and "missing.yaml does not exist" in p for p in problems)
    assert any("evaluation.gates.0.metric: general/arc_eazy/acc: 'arc_eazy' is not in evaluation.general.tasks; "
               "did you mean 'arc_easy'?" in p for p in problems), problems
    assert any("evaluation.gates.1.tolerance: tolerance applies to not_decrease and not_increase" in p
               for p in problems)
    no_task = _issues(tmp_path, "[perplexity]", "[arc_easy]", "[{metric: general/arc_easy/acc, must: not_decrease}]")
    assert any("is measured by the general task, which evaluation.tasks lacks" in p for p in no_task)
    empty = _issues(tmp_path, "[general]", "[]", "[]")
    assert any("evaluation.general.tasks: evaluation.tasks has general but no harness task is listed" in p
               for p in empty)


def test_the_missing_data_line_names_the_dataset_and_how_to_fetch_it() -> None:
    from types import SimpleNamespace

    from forge.evaluate.harness import _not_cached

    task = SimpleNamespace(cfg={"dataset_path": "allenai/ai2_arc", "dataset_name": "ARC-Easy"})
    manager = SimpleNamespace(task_index={"arc_easy": task, "mmlu": SimpleNamespace(cfg={"group": "mmlu"})})
    one = _not_cached(manager, "arc_easy", ConnectionError("Couldn't reach 'allenai/ai2_arc' on the Hub"), True)
    assert one.message.endswith("the data of arc_easy (allenai/ai2_arc, ARC-Easy) is not in the Hugging Face cache "
                                "and evaluation.general.offline is true")
    assert one.hint.startswith("run `python -c \"import datasets; datasets.load_dataset('allenai/ai2_arc', "
                               "'ARC-Easy')\"` where the Hub is reachable")
    # a group's datasets are the harness's business: its command fetches them all
    group = _not_cached(manager, "mmlu", ConnectionError("Couldn't reach 'cais/mmlu' on the Hub"), False)
    assert "the data of mmlu (first missing: cais/mmlu)" in group.message
    assert group.message.endswith("the Hugging Face Hub could not be reached")
    assert "--tasks mmlu --limit 1" in group.hint and "offline: false" not in group.hint


def test_local_task_files_a_group_and_a_broken_one(tmp_path: Path) -> None:
    """Task YAMLs load without the built-in index; their data files are read beside them, wherever the process
    runs; a group YAML brings the tasks of its folder (whose data files the harness reads as they are written:
    absolute here); a broken YAML is one line that names it."""
    from types import SimpleNamespace

    from forge.evaluate.errors import EvaluationError
    from forge.evaluate.harness import load_harness_tasks

    def settings(*tasks: Path) -> SimpleNamespace:
        return SimpleNamespace(tasks=[str(t) for t in tasks], offline=True)

    loaded = load_harness_tasks(settings(ENDINGS, COMPLETE))
    assert loaded.listed == ["forge_endings", "forge_complete"]
    assert [len(t.eval_docs) for t in loaded.objects] == [36, 36]
    folder = tmp_path / "suite"
    folder.mkdir()
    for name in ("endings", "complete"):
        text = (TASKS_DIR / f"{name}.yaml").read_text(encoding="utf-8")
        (folder / f"{name}.yaml").write_text(text.replace(f"test: {name}.jsonl", f"test: {TASKS_DIR / name}.jsonl"),
                                             encoding="utf-8")
    group = folder / "both.yaml"
    group.write_text("group: forge_both\ntask: [forge_endings, forge_complete]\n", encoding="utf-8")
    loaded = load_harness_tasks(settings(group))
    assert loaded.listed == ["forge_both"] and loaded.sources["forge_endings"] == str(group)
    broken = tmp_path / "broken.yaml"
    broken.write_text("task: forge_broken\ndataset_path: json\noutput_type: no_such_type\n", encoding="utf-8")
    with pytest.raises(EvaluationError) as error:
        load_harness_tasks(settings(broken))
    assert error.value.message.startswith(f"evaluation.general.tasks: lm-evaluation-harness cannot load task file "
                                          f"{broken}: ") and "\n" not in str(error.value)


def test_without_the_harness_installed_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    from types import SimpleNamespace

    from forge.evaluate.errors import EvaluationError
    from forge.evaluate.harness import load_harness_tasks

    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval raises ImportError
    with pytest.raises(EvaluationError) as error:
        load_harness_tasks(SimpleNamespace(tasks=["arc_easy"], offline=True))
    assert "lm-evaluation-harness, and it is not installed" in error.value.message
    assert "pip install 'forge-finetune[harness]'" in error.value.hint


def test_offline_switch_is_put_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import datasets.config
    import huggingface_hub.constants

    from forge.evaluate.harness import _offline

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    with _offline(True):
        assert datasets.config.HF_HUB_OFFLINE and huggingface_hub.constants.is_offline_mode()
        assert os.environ["HF_DATASETS_OFFLINE"] == "1"
    assert not datasets.config.HF_HUB_OFFLINE and not huggingface_hub.constants.is_offline_mode()
    assert "HF_DATASETS_OFFLINE" not in os.environ
