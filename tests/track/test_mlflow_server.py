"""Tiny training runs logged to a real `mlflow server` on 127.0.0.1, read back through MlflowClient; the server
killed in the middle of a run, and down from the start, without losing anything."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback

from forge.cli import main
from forge.track.mlflow_log import flatten, start_tracking
from track_support import MlflowServer, child_recipe, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served_run(server: MlflowServer, tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path,
               genomics_examples: list[str]) -> dict[str, Any]:
    """8 steps of the harness recipe, through a child recipe, logged to the server and registered."""
    folder = tmp_path_factory.mktemp("served")
    recipe = child_recipe(folder, genomics_examples, tiny_llama_dir, "served",
                          f"{{enabled: true, uri: '{server.uri}', experiment: forge-served, "
                          "experiment_description: 'Tiny runs for the tracking tests', "
                          "experiment_tags: {team: genomics}, tags: {purpose: test}, register_model: forge-tiny}")
    summary, run_dir, resolved = train(recipe)
    return {"summary": summary, "run_dir": run_dir, "resolved": resolved}


def client_for(server: MlflowServer) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=server.uri)


def steps(client: Any, run_id: str, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, key)]


def test_recipe_environment_and_metrics_arrive_on_the_server(served_run: dict[str, Any],
                                                             server: MlflowServer) -> None:
    import torch

    summary, resolved = served_run["summary"], served_run["resolved"]
    assert summary["status"] == "completed" and summary["tracking"]["status"] == "ok"
    client = client_for(server)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "served"
    assert run.data.params == flatten(resolved.recipe.model_dump(mode="json", exclude={"extends"}))
    assert run.data.params["training.max_steps"] == "8" and run.data.params["run.name"] == "served"

    tags = run.data.tags
    assert [Path(p).name for p in tags["forge.recipe.chain"].split(" -> ")] == ["base.yaml", "served.yaml"]
    assert tags["mlflow.note.content"] == "LoRA on fake genomics texts" and tags["purpose"] == "test"
    assert tags["forge.version.torch"] == torch.__version__ and tags["forge.version.mlflow"] == "3.17.2"
    assert tags["forge.device"].startswith("cpu") and tags["forge.run_dir"] == str(served_run["run_dir"])
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "forge-served" and experiment.tags["team"] == "genomics"
    assert experiment.tags["mlflow.note.content"] == "Tiny runs for the tracking tests"

    run_id = run.info.run_id
    for key in ("loss", "learning_rate", "grad_norm", "memory_bytes"):
        assert steps(client, run_id, key) == list(range(1, 9)), key
    assert set(range(2, 9)) <= set(steps(client, run_id, "tokens_per_second"))
    assert steps(client, run_id, "eval_loss")[:3] == [0, 4, 8] and "eval_perplexity" in run.data.metrics


def test_artifacts_and_the_registered_adapter_are_on_the_server(served_run: dict[str, Any], server: MlflowServer,
                                                                tmp_path: Path) -> None:
    summary, run_dir = served_run["summary"], served_run["run_dir"]
    client = client_for(server)
    run_id = summary["mlflow_run_id"]
    top = {a.path for a in client.list_artifacts(run_id)}
    assert top >= {"recipe.yaml", "plan.json", "environment.json", "recipe_chain", "adapter"}
    assert {Path(a.path).name for a in client.list_artifacts(run_id, "recipe_chain")} == {"1-base.yaml",
                                                                                          "2-served.yaml"}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {
        Path(a.path).name for a in client.list_artifacts(run_id, "adapter")}
    local = client.download_artifacts(run_id, "recipe.yaml", str(tmp_path))
    assert Path(local).read_text() == (run_dir / "recipe.yaml").read_text()
    environment = json.loads(Path(client.download_artifacts(run_id, "environment.json", str(tmp_path))).read_text())
    assert environment["versions"]["transformers"] and environment["python"]

    version = client.get_model_version("forge-tiny", "1")
    assert version.run_id == run_id and version.source.endswith("/adapter")
    assert summary["tracking"]["model_version"]["version"] == "1"
    assert client.get_run(run_id).data.tags["forge.registered_model"] == "forge-tiny/1"


def test_evaluation_results_land_on_the_training_run(served_run: dict[str, Any], server: MlflowServer,
                                                     tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from forge.evaluate.tracking import log_report, tracking_target

    uri, run_id = tracking_target(served_run["run_dir"], served_run["resolved"].recipe)
    assert (uri, run_id) == (server.uri, served_run["summary"]["mlflow_run_id"])
    (tmp_path / "report.json").write_text("{}")
    report = {"gates_passed": True, "metrics": {"perplexity": {"tuned": 12.5, "baseline": 300.0}}}
    assert log_report(uri, run_id, report, tmp_path)["status"] == "logged"
    code = main(["runs", "show", run_id[:10], "--uri", server.uri])
    out = capsys.readouterr().out
    assert code == 0 and "eval/perplexity" in out and "12.5" in out and "forge-tiny/1" in out
    assert "base.yaml -> " in out and "name: served" in out  # the chain and the recipe.yaml text


class KillServer(TrainerCallback):
    """Kills the server after step 2 is logged and starts it again at step 7 (waiting until it answers), so that
    the logs of steps 3 to 6 meet no server however fast it restarts, and the later steps find it answering."""

    def __init__(self, server: MlflowServer) -> None:
        self.server = server
        self.killed = False
        self.restart: threading.Thread | None = None

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if state.global_step == 2 and not self.killed and "loss" in (logs or {}):
            self.server.kill()
            self.killed = True
        if state.global_step == 7 and self.killed and self.restart is None:
            self.restart = threading.Thread(target=self.server.start)
            self.restart.start()
            self.restart.join()


def test_a_server_killed_mid_run_loses_nothing(server: MlflowServer, tmp_path: Path, tiny_llama_dir: Path,
                                               genomics_examples: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    recipe = child_recipe(tmp_path, genomics_examples, tiny_llama_dir, "killed",
                          f"{{enabled: true, uri: '{server.uri}', experiment: forge-killed, retry_seconds: 0}}")
    killer = KillServer(server)
    summary, run_dir, _ = train(recipe, callbacks=[killer])
    assert killer.restart is not None and server.healthy()
    assert summary["status"] == "completed" and summary["steps"] == 8  # training went on

    tracking = summary["tracking"]
    assert tracking["status"] == "recovered" and tracking["kept_locally"] >= 4
    assert tracking["sent_later"] == tracking["kept_locally"]
    assert len(tracking["outages"]) == 1 and tracking["outages"][0]["until"]
    assert not (run_dir / "mlflow_pending.jsonl").exists()
    out = capsys.readouterr().out
    assert "training goes on" in out and "MLflow answers again" in out

    client = client_for(server)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    for key in ("loss", "learning_rate", "grad_norm"):
        assert steps(client, run.info.run_id, key) == list(range(1, 9)), key  # each step once, none missing
    local = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = {r["step"]: r["loss"] for r in local if r["kind"] == "train"}
    assert {m.step: m.value for m in client.get_metric_history(run.info.run_id, "loss")} == pytest.approx(losses)
    assert steps(client, run.info.run_id, "eval_loss")[:3] == [0, 4, 8]
    assert "adapter" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_a_server_down_from_the_start_gets_everything_from_forge_runs_sync(
        server: MlflowServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server.kill()
    run_dir = tmp_path / "runs" / "offline"
    run_dir.mkdir(parents=True)
    (run_dir / "recipe.yaml").write_text("run: {name: offline}\n")
    tracker = start_tracking({"enabled": True, "uri": server.uri, "experiment": "forge-offline", "retry_seconds": 0},
                             output_dir=str(tmp_path / "runs"), run_name="offline", run_dir=run_dir)
    assert tracker is not None
    tracker.log_params({"optimizer.lr": "0.001"})
    for step in range(1, 6):
        tracker.log_metrics({"loss": 5.0 - step}, step)
    tracker.log_artifact(run_dir / "recipe.yaml")
    tracker.finish("completed")
    summary = {"status": "completed", "mlflow_run_id": tracker.run_id, "tracking": tracker.summary()}
    assert summary["tracking"]["status"] == "pending" and summary["mlflow_run_id"] is None
    assert "forge runs sync" in summary["tracking"]["hint"]
    (run_dir / "summary.json").write_text(json.dumps(summary))

    assert main(["runs", "sync", str(run_dir)]) == 2  # still down: one line, nothing lost
    err = capsys.readouterr().err
    assert err.startswith("forge: could not send the kept calls") and len(err.strip().splitlines()) == 1
    assert (run_dir / "mlflow_pending.jsonl").exists()

    server.start()
    assert main(["runs", "sync", str(run_dir)]) == 0
    after = json.loads((run_dir / "summary.json").read_text())
    assert after["tracking"]["status"] == "recovered" and after["mlflow_run_id"]
    assert not (run_dir / "mlflow_pending.jsonl").exists()
    client = client_for(server)
    run = client.get_run(after["mlflow_run_id"])
    assert run.info.run_name == "offline" and run.info.status == "FINISHED"
    assert run.data.params == {"optimizer.lr": "0.001"}
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")] == [
        (s, 5.0 - s) for s in range(1, 6)]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"recipe.yaml"}
    assert main(["runs", "sync", str(run_dir)]) == 0 and "nothing to send" in capsys.readouterr().out
