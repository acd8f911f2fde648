"""A full fine-tune (lora.enabled: false, the run saves model/) exports too: merged is its own weights as a
from_pretrained folder, gguf its GGUF; the adapter format is refused, as there is none."""
from __future__ import annotations

from pathlib import Path

import pytest

from export_support import card_header, logits, relative_error
from forge.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path, genomics_examples: list[str]) -> Path:
    import harness

    import forge.train.run

    folder = tmp_path_factory.mktemp("full-run")
    recipe = harness.write_recipe(folder, genomics_examples, tiny_llama_dir, name="full")
    resolved, plan = harness.prepare(recipe, "lora.enabled=false", "training.max_steps=4")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(forge.train.run, "load_data", harness.fake_bundle)
        summary = forge.train.run.run_recipe(resolved, plan, resume="never", progress=False)
    assert summary["status"] == "completed" and (Path(plan.run_dir) / "model" / "config.json").is_file()
    return Path(plan.run_dir).resolve()


def test_a_full_fine_tune_exports_merged_and_gguf(full_run: Path, tiny_llama_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    trained = logits(AutoModelForCausalLM.from_pretrained(str(full_run / "model"), dtype=torch.float32))
    base = logits(AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float32))
    assert relative_error(trained, base) > 1e-2

    assert main(["export", str(full_run), "--format", "merged", "--out", str(tmp_path / "merged")]) == 0
    assert relative_error(trained, logits(AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged")))) < 1e-6
    header = card_header(tmp_path / "merged")
    assert "lora" not in header["tags"] and "full fine-tune" in (tmp_path / "merged" / "README.md").read_text()

    assert main(["export", str(full_run), "--format", "gguf", "--dtype", "f32", "--out", str(tmp_path / "gguf")]) == 0
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "gguf"), gguf_file="model.gguf")
    assert relative_error(trained, logits(loaded)) < 1e-5

    capsys.readouterr()
    assert main(["export", str(full_run), "--format", "adapter", "--out", str(tmp_path / "adapter")]) == 2
    assert "is a full fine-tune (model/), not a LoRA run" in capsys.readouterr().err
