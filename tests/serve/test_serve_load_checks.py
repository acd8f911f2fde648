"""`forge serve` refuses, in one line and with exit code 2, what it cannot serve: a folder that is no run, an
unfinished or damaged run, an adapter that does not fit the base model, and settings this machine or LitServe
cannot honour. Runs the CLI in-process (none of these cases gets as far as listening)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from forge.cli import main
from serve_support import API_KEY_ENV


@pytest.fixture
def run_copy(serve_run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(API_KEY_ENV, "k")
    return Path(shutil.copytree(serve_run_dir, tmp_path / "run"))


def refused(capsys: pytest.CaptureFixture, *argv: str) -> str:
    assert main(["serve", *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("forge: "), lines
    return lines[0]


def test_a_folder_that_is_no_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert "not a run directory" in refused(capsys, str(tmp_path))
    assert "neither a run directory nor a recipe" in refused(capsys, str(tmp_path / "missing"))


def test_an_unfinished_or_damaged_run(run_copy: Path, capsys: pytest.CaptureFixture) -> None:
    (run_copy / "adapter" / "adapter_model.safetensors").unlink()
    assert "incomplete: it has no adapter_model.safetensors" in refused(capsys, str(run_copy))
    (run_copy / "adapter" / "adapter_model.safetensors").write_bytes(b"\x10\x00")
    assert "not a readable safetensors file" in refused(capsys, str(run_copy))
    shutil.rmtree(run_copy / "adapter")
    assert "has no trained model" in refused(capsys, str(run_copy))


def rewrite_adapter(run_dir: Path, change) -> None:
    from safetensors.torch import load_file, save_file

    path = run_dir / "adapter" / "adapter_model.safetensors"
    tensors = load_file(path)
    save_file(change(tensors), path)


def test_an_adapter_of_another_shape(run_copy: Path, capsys: pytest.CaptureFixture) -> None:
    import torch

    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    rewrite_adapter(run_copy, lambda t: {**t, key: torch.zeros(t[key].shape[0], t[key].shape[1] + 8)})
    line = refused(capsys, str(run_copy))
    assert "does not fit the base model" in line and "q_proj" in line and "in_features 32" in line


def test_an_adapter_for_layers_the_base_lacks(run_copy: Path, capsys: pytest.CaptureFixture) -> None:
    rewrite_adapter(run_copy, lambda t: {k.replace("layers.1.", "layers.7."): v for k, v in t.items()})
    assert "adapts model.layers.7." in refused(capsys, str(run_copy))


def test_settings_the_machine_cannot_honour(run_copy: Path, capsys: pytest.CaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert "cannot be bound" in refused(capsys, str(run_copy), "--host", "localhost")
    assert "outside 1024-65535" in refused(capsys, str(run_copy), "--port", "80")
    assert "needs a CUDA GPU" in refused(capsys, str(run_copy), "serving.quantization=4bit")
    monkeypatch.delenv(API_KEY_ENV)
    assert f"{API_KEY_ENV}, which is not set" in refused(capsys, str(run_copy))


def test_a_port_in_use_is_refused_before_loading_and_points_to_the_docs(run_copy: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        line = refused(capsys, str(run_copy), "--port", str(holder.getsockname()[1]))
    assert "cannot listen on 127.0.0.1:" in line and "--port" in line
    assert line.endswith("(see docs/troubleshooting.md#port-in-use)")
    assert refused(capsys, str(run_copy), "--port", "80").endswith("(see docs/troubleshooting.md#serve-refuses-to-start)")


def tagger_run_dir(tiny_bert_dir: Path, conll_file: Path, folder: Path) -> Path:
    """A finished-looking LoRA run of a token classifier: recipe.yaml, summary.json, adapter/ with labels.json."""
    import json

    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from forge.model.labels import save_labels
    from forge.model.load import attach_lora
    from forge.plan import compile_plan
    from forge.recipe.validate import resolve

    recipe = folder / "tagger.yaml"
    recipe.write_text(f"run: {{name: tagger, output_dir: {folder / 'runs'}}}\n"
                      f"model: {{name_or_path: {tiny_bert_dir}, task: token_classification}}\n"
                      f"data: {{sources: [{{path: {conll_file}, format: conll}}]}}\n", encoding="utf-8")
    resolved = resolve(recipe)
    plan = compile_plan(resolved.recipe)
    run_dir = Path(plan.run_dir)
    labels = ["O", "B-GENE", "I-GENE"]
    model = AutoModelForTokenClassification.from_pretrained(tiny_bert_dir, num_labels=len(labels))
    attach_lora(model, plan.lora, []).save_pretrained(run_dir / "adapter")
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(run_dir / "adapter")
    save_labels(run_dir / "adapter", labels)
    (run_dir / "recipe.yaml").write_text(resolved.yaml_text, encoding="utf-8")
    (run_dir / "summary.json").write_text(json.dumps({"status": "completed"}), encoding="utf-8")
    return run_dir


def test_a_token_classifier_is_served_only_with_its_labels(tiny_bert_dir: Path, conll_file: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    from forge.serve.load import prepare_served, resolve_target

    run_dir = tagger_run_dir(tiny_bert_dir, conll_file, tmp_path)
    served = prepare_served(*resolve_target(run_dir))  # the adapter's shapes checked on a token classifier
    assert served.plan_model.labels == ("O", "B-GENE", "I-GENE") and served.kind == "adapter"
    (run_dir / "adapter" / "labels.json").unlink()
    capsys.readouterr()  # the loading bars of the set-up
    assert "holds no labels of the token classifier" in refused(capsys, str(run_dir))
