"""What `forge export` refuses, in one line with exit code 2 and nothing written (not a run, a run without an
adapter, a model GGUF cannot hold, an adapter of another base, a folder it would overwrite), and the
dequantize-then-merge path of a quantized base, with a stand-in for bitsandbytes' quantizer on the CPU."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from export_support import card_header, fake_run, logits, relative_error, resolved_text
from forge.cli import main
from forge.plan import FourBitPlan

pytestmark = pytest.mark.slow


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()  # what fixtures printed while building models
    assert main(["export", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("forge: "), lines
    assert "(see docs/troubleshooting.md#" in lines[0]
    return lines[0]


def test_paths_that_are_not_finished_runs(exported_run: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert "is not a directory" in refused(capsys, str(tmp_path / "nowhere"), "--format", "adapter")
    assert "is not a run directory" in refused(capsys, str(tmp_path), "--format", "merged")
    bare = fake_run(tmp_path / "bare", (exported_run / "recipe.yaml").read_text())
    line = refused(capsys, str(bare), "--format", "gguf")
    assert "has no adapter (adapter/) or trained model (model/)" in line and line.endswith("#export-errors)")


def test_options_that_do_not_fit_the_format(exported_run: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert "q8_0 is a GGUF quantization" in refused(capsys, str(exported_run), "--format", "merged",
                                                     "--dtype", "q8_0", "--out", str(tmp_path / "a"))
    assert "--dtype does not apply" in refused(capsys, str(exported_run), "--format", "adapter", "--dtype", "bf16",
                                               "--out", str(tmp_path / "b"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert "exists and is not empty" in refused(capsys, str(exported_run), "--format", "adapter", "--out", str(mine))
    assert (mine / "notes.txt").read_text() == "keep me" and [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_gguf_refuses_an_architecture_it_cannot_hold(exported_run: Path, tiny_bert_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    text = resolved_text(exported_run, f"model.name_or_path={tiny_bert_dir}", "model.task=masked_lm")
    run = fake_run(tmp_path / "bert", text, exported_run / "adapter")
    line = refused(capsys, str(run), "--format", "gguf", "--out", str(tmp_path / "out"))
    assert "GGUF export supports Llama-architecture causal LMs; this model is bert" in line
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["bert"]


def test_an_adapter_of_another_base_is_refused(exported_run: Path, forge_cache: Path, genomics_texts: list[str],
                                               tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from forge.model.tiny import tiny_llama

    wider = tiny_llama({"hidden_size": 48, "num_layers": 2, "num_heads": 2, "intermediate_size": 64,
                        "vocab_size": 512}, genomics_texts, root=forge_cache)
    run = fake_run(tmp_path / "other", resolved_text(exported_run, f"model.name_or_path={wider}"),
                   exported_run / "adapter")
    line = refused(capsys, str(run), "--format", "merged", "--out", str(tmp_path / "out"))
    assert "does not fit its base model: size mismatch" in line and line.endswith("#adapter-does-not-fit)")
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["other"]


def grid(weight: Any) -> Any:
    """A stand-in for 4-bit storage: each row rounded to 16 levels (what dequantizing such weights gives)."""
    scale = weight.abs().amax(dim=1, keepdim=True) / 7
    return (weight / scale).round().clamp(-8, 7) * scale


class StandInQuantizer:
    """Plays transformers' bitsandbytes quantizer: dequantize() turns the stored weights into plain ones."""

    def __init__(self) -> None:
        self.dtypes: list[Any] = []

    def dequantize(self, model: Any, dtype: Any = None) -> Any:
        import torch

        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and module is not model.get_output_embeddings():
                module.weight.data = grid(module.weight.data).to(dtype)
        self.dtypes.append(dtype)
        model.hf_quantizer = None
        return model


def test_a_quantized_base_is_dequantized_then_merged(exported_run: Path, tiny_llama_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    import forge.export.command
    import forge.model.load
    from forge.export.source import read_run

    quantizer = StandInQuantizer()
    quantized_loads: list[str] = []

    def load_model(plan_model: Any, source: str, quantization: Any, dtype: str, sharded: bool = False) -> Any:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
        if quantization:
            quantized_loads.append(dtype)
            model.hf_quantizer = quantizer
        return model

    source = dataclasses.replace(read_run(exported_run), quantization=FourBitPlan(
        bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=False, bnb_4bit_compute_dtype="bfloat16",
        bnb_4bit_quant_storage="uint8"))
    monkeypatch.setattr(forge.model.load, "check_quantization", lambda quantization: None)  # no CUDA here
    monkeypatch.setattr(forge.model.load, "load_model", load_model)
    monkeypatch.setattr(forge.export.command, "read_run", lambda target: source)
    out = tmp_path / "merged"
    assert main(["export", str(exported_run), "--format", "merged", "--dtype", "f32", "--out", str(out)]) == 0
    assert quantized_loads == ["float32"] and quantizer.dtypes == [torch.float32]

    # expected: the adapter on the dequantized weights, not on the original ones
    dequantized = quantizer.dequantize(AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float32),
                                       torch.float32)
    expected = logits(PeftModel.from_pretrained(dequantized, str(exported_run / "adapter")))
    original = logits(PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float32), str(exported_run / "adapter")))
    merged = logits(AutoModelForCausalLM.from_pretrained(str(out)))
    assert relative_error(expected, merged) < 1e-5
    assert relative_error(original, merged) > 1e-3  # the stand-in's rounding shows, so the path is the dequantized one
    text = (out / "README.md").read_text()
    assert "## Precision" in text and "dequantized to float32, then the adapter was merged" in text
    assert "not the original 16-bit base plus the adapter" in text and "qlora" in card_header(out)["tags"]
