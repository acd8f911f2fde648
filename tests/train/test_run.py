"""A whole run on the CPU: the run directory, metrics, summary, adapter and tracking of the reference run,
and the variants (data formats, encoders, automatic micro-batch, early stopping, a dead MLflow server)."""
from __future__ import annotations

import json
import math
import socket
from pathlib import Path
from typing import Any, Callable

import pytest
from transformers import TrainerCallback

from harness import PROBE_IDS, ReferenceRun, read_metrics, read_summary

pytestmark = pytest.mark.slow

SUMMARY_KEYS = {"status", "steps", "train_loss_first", "train_loss_last", "eval", "peak_memory_bytes",
                "tokens_per_second", "mlflow_run_id", "adapter_path", "trainable_params", "total_params", "data",
                "wall_seconds", "exit_code", "checkpoints", "best_checkpoint"}


def test_the_run_directory_holds_everything(reference_run: ReferenceRun) -> None:
    run = reference_run.run_dir
    assert {p.name for p in run.iterdir()} >= {"recipe.yaml", "plan.json", "adapter", "checkpoints",
                                              "metrics.jsonl", "summary.json"}
    assert "name: reference" in (run / "recipe.yaml").read_text()
    assert json.loads((run / "plan.json").read_text())["trainer"]["max_steps"] == 12
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= {
        p.name for p in (run / "adapter").iterdir()}
    # save_total_limit 2 keeps the last two, plus the best when it is older; each has its marker
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir())
    assert "checkpoint-12" in checkpoints and len(checkpoints) <= 3
    assert all((run / "checkpoints" / c / "forge-complete.json").is_file() for c in checkpoints)
    assert not [p for p in run.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]


def test_summary_reports_the_run(reference_run: ReferenceRun) -> None:
    summary = read_summary(reference_run.run_dir)
    assert summary == json.loads(json.dumps(reference_run.summary, default=str))
    assert SUMMARY_KEYS <= set(summary)
    assert summary["status"] == "completed" and summary["exit_code"] == 0 and summary["steps"] == 12
    assert summary["train_loss_last"] < summary["train_loss_first"] - 0.5
    ev = summary["eval"]
    assert ev["first_step"] == 0 and ev["loss"] < ev["first_loss"] - 0.5
    assert math.isclose(ev["perplexity"], math.exp(ev["loss"]), rel_tol=1e-9)
    assert 0 < summary["trainable_params"] < summary["total_params"]
    assert summary["data"]["train_examples"] == 64 and summary["data"]["validation_examples"] == 16
    assert summary["peak_memory_bytes"] > 50 * 1024**2 and summary["tokens_per_second"] > 0
    assert summary["adapter_path"] == str(reference_run.run_dir / "adapter")
    assert summary["tracking"]["status"] == "ok" and summary["mlflow_run_id"]


def test_metrics_have_one_line_per_step_and_per_evaluation(reference_run: ReferenceRun) -> None:
    lines = read_metrics(reference_run.run_dir)
    train = [r for r in lines if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 13))
    for record in train:
        assert {"epoch", "loss", "learning_rate", "grad_norm", "memory_bytes"} <= set(record)
    assert all(r["tokens_per_second"] > 0 for r in train[1:])
    evals = [r for r in lines if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, 4, 8, 12]
    assert all(math.isclose(r["eval_perplexity"], math.exp(r["eval_loss"])) for r in evals)
    assert [r["kind"] for r in lines][-1] == "final_eval"


def test_the_saved_adapter_reproduces_the_trained_model(reference_run: ReferenceRun, tiny_llama_dir: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    untrained = base(input_ids=torch.tensor(PROBE_IDS)).logits
    model = PeftModel.from_pretrained(base, reference_run.run_dir / "adapter").eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(PROBE_IDS)).logits
    assert torch.allclose(logits, reference_run.logits, atol=1e-5)
    assert not torch.allclose(logits, untrained, atol=1e-3)  # the adapter changed something
    tokenizer = AutoTokenizer.from_pretrained(reference_run.run_dir / "adapter")
    assert len(tokenizer) == base.get_input_embeddings().weight.shape[0]


def test_the_run_is_in_mlflow(reference_run: ReferenceRun) -> None:
    from mlflow import MlflowClient

    summary = reference_run.summary
    client = MlflowClient(tracking_uri=summary["tracking"]["uri"])
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["training.max_steps"] == "12"
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 12
    assert [m.step for m in client.get_metric_history(run.info.run_id, "eval_loss")][:4] == [0, 4, 8, 12]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"recipe.yaml", "plan.json", "adapter"}


def test_the_plan_summary_is_printed_before_training(reference_run: ReferenceRun) -> None:
    out = reference_run.output
    assert out.startswith("forge run reference")
    for label in ("parameters", "adapters", "batch", "schedule", "device", "tracking"):
        assert f"  {label}" in out
    assert "8 x 1 accumulation" in out and "12 steps" in out and "forge: completed after 12 steps" in out


def test_early_stopping_with_a_dead_tracking_server(write_recipe: Callable[..., Path], prepare: Callable[..., Any],
                                                    fake_data: None) -> None:
    from forge.train.run import run_recipe

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    resolved, plan = prepare(write_recipe("early"), "training.early_stopping.enabled=true",
                             "training.early_stopping.patience=1", "training.early_stopping.min_delta=10.0",
                             "tracking.enabled=true", f"tracking.uri=http://127.0.0.1:{port}")
    summary = run_recipe(resolved, plan, progress=False)
    assert summary["status"] == "stopped" and summary["exit_code"] == 0 and summary["steps"] == 8
    assert Path(summary["adapter_path"]).is_dir()
    assert summary["tracking"]["status"] == "pending" and summary["mlflow_run_id"] is None
    pending = [json.loads(x) for x in (Path(plan.run_dir) / "mlflow_pending.jsonl").read_text().splitlines()]
    assert sum(r["type"] == "metrics" for r in pending) >= 8
    assert pending[-1] == {**pending[-1], "type": "finish", "status": "FINISHED"}


@pytest.mark.parametrize("data_format", ["instruction", "chat"])
def test_instruction_and_chat_data_train_on_completions(write_recipe: Callable[..., Path],
                                                        prepare: Callable[..., Any], fake_data: None,
                                                        data_format: str) -> None:
    from forge.train.run import run_recipe

    overrides = [f"data.format={data_format}", "training.max_steps=4", "training.save_steps=4",
                 "training.micro_batch_size=auto", "training.effective_batch_size=16"]
    if data_format == "instruction":
        overrides.append("training.loss=completion_only")
    resolved, plan = prepare(write_recipe(data_format), *overrides)
    assert plan.trainer["completion_only_loss"] is True

    class FirstExample(TrainerCallback):
        def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
            self.labels = train_dataloader.dataset[0]["labels"]

    first = FirstExample()
    summary = run_recipe(resolved, plan, progress=False, callbacks=[first])
    # the prompt (the user's turn for chat) is masked out of the loss, the completion is trained on
    assert first.labels[0] == -100 and first.labels[-1] != -100
    assert summary["status"] == "completed" and summary["steps"] == 4
    assert (summary["micro_batch_size"], summary["gradient_accumulation_steps"]) == (8, 2)
    assert any("micro_batch_size auto: 8 x 2" in n for n in summary["notes"])
    assert summary["eval"]["loss"] < summary["eval"]["first_loss"]


def test_a_masked_lm_encoder_trains_with_lora(tmp_path: Path, tiny_bert_dir: Path, genomics_examples: list[str],
                                              fake_data: None) -> None:
    import harness
    from forge.train.run import run_recipe

    recipe = harness.write_recipe(tmp_path, genomics_examples, tiny_bert_dir, name="bert")
    resolved, plan = harness.prepare(recipe, "model.task=masked_lm", "training.max_steps=4",
                                     "lora.modules_to_save=[]")
    summary = run_recipe(resolved, plan, progress=False)
    assert summary["status"] == "completed" and summary["steps"] == 4
    assert (Path(summary["adapter_path"]) / "adapter_config.json").is_file()
    assert math.isfinite(summary["eval"]["loss"])
