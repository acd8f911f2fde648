"""`forge runs list|show|compare` on a store holding runs written the way `forge run` and `forge eval` write them:
tables of what differs, plots written as PNG and logged back to the runs, one-line errors with exit 2."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from forge.cli import main

RECIPE_A = "run:\n  name: qs-a\noptimizer:\n  lr: 0.002\ntraining:\n  epochs: 2\n"


def make_run(client: Any, experiment_id: str, name: str, lr: str, scale: float, folder: Path, started: int,
             overrides: str = "") -> str:
    from mlflow.entities import Metric, Param, RunTag

    run_id = client.create_run(experiment_id, start_time=started, run_name=name).info.run_id
    params = {"run.name": name, "optimizer.lr": lr, "training.epochs": "2", "lora.r": "16"}
    tags = {"forge.recipe.chain": "recipes/base/defaults.yaml -> recipes/quickstart.yaml",
            "forge.recipe.overrides": overrides, "forge.device": "cpu (2 cores)", "forge.version.torch": "2.13.0",
            "forge.git.commit": "0123456789abcdef", "forge.git.dirty": "false", "forge.run_dir": f"runs/{name}"}
    metrics = [Metric("loss", 6.0 - scale * step / 10, 1000 + step, step) for step in range(1, 11)]
    metrics += [Metric("eval_loss", 6.2 - scale * step / 10, 2000 + step, step) for step in (0, 5, 10)]
    metrics += [Metric("eval/perplexity", 80.0 / scale, 3000, 0), Metric("eval/perplexity_baseline", 400.0, 3000, 0),
                Metric("eval/gene_f1", 0.3 * scale, 3000, 0), Metric("eval/gene_f1_baseline", 0.1, 3000, 0)]
    client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()],
                     tags=[RunTag(k, v) for k, v in tags.items()])
    recipe = folder / name / "recipe.yaml"
    recipe.parent.mkdir()
    recipe.write_text(RECIPE_A.replace("qs-a", name).replace("0.002", lr))
    client.log_artifact(run_id, str(recipe))
    client.set_terminated(run_id, "FINISHED")
    return run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, new_store: Callable[[Path], Path]) -> dict[str, Any]:
    """Two quickstart-like runs that differ in optimizer.lr (experiment forge) and one in experiment other."""
    from mlflow import MlflowClient

    tmp_path = tmp_path_factory.mktemp("compare-store")
    folder = new_store(tmp_path / "runs")
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    artifacts = (tmp_path / "runs" / "mlartifacts").as_uri()
    forge_id = client.create_experiment("forge", artifact_location=artifacts)
    other_id = client.create_experiment("other", artifact_location=artifacts)
    now = int(time.time() * 1000)
    ids = {"a": make_run(client, forge_id, "qs-a", "0.002", 2.0, tmp_path, now - 3000),
           "b": make_run(client, forge_id, "qs-b", "0.0005", 1.0, tmp_path, now - 2000, overrides="optimizer.lr=5e-4"),
           "c": make_run(client, other_id, "other-run", "0.001", 1.5, tmp_path, now - 1000)}
    return {"folder": folder, "client": client, "ids": ids}


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_the_runs_and_filters_by_experiment(store: dict[str, Any],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    ids, uri = store["ids"], str(store["folder"])
    code, out, _ = run_cli(capsys, "runs", "list", "--uri", uri)
    assert code == 0
    for key, name in (("a", "qs-a"), ("b", "qs-b"), ("c", "other-run")):
        assert ids[key][:8] in out and name in out
    assert "3 run(s)" in out and "FINISHED" in out

    code, out, _ = run_cli(capsys, "runs", "list", "--uri", uri, "--experiment", "other")
    assert code == 0 and "other-run" in out and "qs-a" not in out

    code, out, _ = run_cli(capsys, "runs", "list", "--uri", uri, "--experiment", "forge", "--json")
    records = json.loads(out)
    assert [r["name"] for r in records] == ["qs-b", "qs-a"]  # newest first
    assert records[1]["metrics"]["eval/perplexity"] == 40.0


def test_show_prints_one_runs_recipe_environment_and_results(store: dict[str, Any],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    ids, uri = store["ids"], str(store["folder"])
    code, out, _ = run_cli(capsys, "runs", "show", ids["a"][:6], "--uri", uri)
    assert code == 0
    assert ids["a"] in out and "recipes/base/defaults.yaml -> recipes/quickstart.yaml" in out
    assert "cpu (2 cores)" in out and "torch 2.13.0" in out and "0123456789ab" in out
    assert "eval/gene_f1" in out and "0.6" in out and "lr: 0.002" in out  # results and recipe.yaml
    code, by_name, _ = run_cli(capsys, "runs", "show", "qs-a", "--uri", uri)
    assert code == 0 and by_name == out
    code, out, _ = run_cli(capsys, "runs", "show", "qs-b", "--uri", uri, "--json")
    record = json.loads(out)
    assert record["params"]["optimizer.lr"] == "0.0005" and record["overrides"] == "optimizer.lr=5e-4"
    assert "lr: 0.0005" in record["recipe_yaml"]


def test_compare_writes_the_differences_and_plots_and_logs_them_to_the_runs(
        store: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids, uri, client = store["ids"], str(store["folder"]), store["client"]
    code, out, _ = run_cli(capsys, "runs", "compare", ids["a"][:8], "qs-b", "--uri", uri)
    assert code == 0
    lines = out.splitlines()
    lr = next(line for line in lines if line.startswith("optimizer.lr"))
    assert "0.002" in lr and "0.0005" in lr
    assert not any(line.startswith(("training.epochs", "lora.r")) for line in lines)  # equal values are left out
    loss = next(line for line in lines if line.startswith("loss "))
    assert "4" in loss and "5" in loss  # last training losses 6 - 2 and 6 - 1, side by side
    assert any(line.startswith("eval/gene_f1") for line in lines)
    assert any(line.startswith("recipe.overrides") for line in lines)  # the environment rows that differ

    folder = store["folder"] / "comparisons" / f"{ids['a'][:8]}-vs-{ids['b'][:8]}"
    for name in ("loss_curves.png", "eval_metrics.png"):
        data = (folder / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    markdown = (folder / "comparison.md").read_text()
    assert "| optimizer.lr | 0.002 | 0.0005 |" in markdown and "![loss_curves.png](loss_curves.png)" in markdown
    for run_id in (ids["a"], ids["b"]):
        logged = {Path(a.path).name for a in client.list_artifacts(run_id, f"comparisons/{folder.name}")}
        assert logged == {"loss_curves.png", "eval_metrics.png", "comparison.md"}

    code, out, _ = run_cli(capsys, "runs", "compare", "qs-a", "qs-b", "other-run", "--uri", uri, "--no-log",
                           "--json", "--out", str(tmp_path / "three"))
    result = json.loads(out)
    assert code == 0 and len(result["runs"]) == 3 and (tmp_path / "three" / "loss_curves.png").is_file()
    assert set(result["recipe"]["optimizer.lr"].values()) == {"0.002", "0.0005", "0.001"}
    assert not client.list_artifacts(ids["c"], "comparisons")


@pytest.mark.parametrize("argv, message", [
    (["runs", "show", "0" * 32], "no run 00000000000000000000000000000000 in sqlite:///"),
    (["runs", "show", "no-such-run"], "no run 'no-such-run'"),
    (["runs", "compare", "qs-a", "qs-a"], "compare needs two or more different runs"),
    (["runs", "list", "--experiment", "nope"], "no experiment named 'nope'; experiments in this store: Default, forge, other"),
])
def test_a_bad_run_or_experiment_is_one_line_and_exit_2(store: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                                         argv: list[str], message: str) -> None:
    code, _, err = run_cli(capsys, *argv, "--uri", str(store["folder"]))
    assert code == 2 and err.startswith("forge: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_an_unreachable_server_or_missing_store_is_one_line_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from track_support import free_port

    port = free_port()
    code, _, err = run_cli(capsys, "runs", "list", "--uri", f"http://127.0.0.1:{port}")
    assert code == 2 and f"tracking server http://127.0.0.1:{port} is unreachable" in err
    assert len(err.strip().splitlines()) == 1
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, _, err = run_cli(capsys, "runs", "show", "abc123")
    assert code == 2 and err.startswith("forge: no MLflow store found: runs/mlflow.db does not exist here; pass --uri")
    code, _, err = run_cli(capsys, "runs", "sync", str(tmp_path / "nothing"))
    assert code == 2 and "summary.json is missing" in err
    assert not (tmp_path / "runs").exists()  # looking never creates an empty store


def test_list_names_its_columns_by_split(tmp_path: Path, new_store: Callable[[Path], Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The validation loss and each run's perplexity sit under the split they were measured on: a run evaluated
    on the test split (as `forge eval` tags it) and one whose recipe evaluates on the validation split."""
    from mlflow import MlflowClient

    folder = new_store(tmp_path / "runs")
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.create_experiment("forge", artifact_location=(tmp_path / "runs" / "mlartifacts").as_uri())
    now = int(time.time() * 1000)
    on_test = make_run(client, experiment, "on-test", "0.002", 2.0, tmp_path, now - 2000)  # ppl 40
    client.set_tag(on_test, "forge.eval_data", "test split")
    on_val = make_run(client, experiment, "on-val", "0.001", 4.0, tmp_path, now - 1000)  # ppl 20
    client.log_param(on_val, "evaluation.split", "validation")
    code, out, _ = run_cli(capsys, "runs", "list", "--uri", str(folder))
    assert code == 0
    lines = out.splitlines()
    columns = [c for c in re.split(r"\s{2,}", lines[0].strip())]
    assert columns[-4:] == ["train loss", "val loss", "val ppl", "test ppl"]
    rows = {cells[1]: cells for cells in (re.split(r"\s{2,}", line.strip()) for line in lines[2:4])}
    assert rows["on-test"][-2:] == ["-", "40"] and rows["on-val"][-2:] == ["20", "-"]
    assert "eval loss" not in out and "eval ppl" not in out
