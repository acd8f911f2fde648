"""Export of a QLoRA run on a GPU: a LoRA adapter trained on a 4-bit NF4 base is merged in full precision into the
dequantized base (not the original weights), so the merged folder reproduces the 4-bit model + adapter that was
trained; the GGUF of that merge reads back to the same logits within q8_0's tolerance.

Self-contained (a small LLaMA built here, random init; the adapter has random non-zero weights, as after
training). Skipped without CUDA or bitsandbytes. Run on the GPU machine with `pytest -m gpu tests/gpu`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
from gpu_runs import small_setup  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

RECIPE = """\
run: {{name: qlora-export, output_dir: {out}, seed: 3}}
data: {{sources: [{{path: {papers}}}], split: {{validation: 0.2, test: 0.0}}}}
preprocess: []
model: {{name_or_path: {model}, dtype: float32}}
quantization: {{mode: 4bit, quant_type: nf4, double_quant: true, compute_dtype: float32}}
lora: {{r: 16, alpha: 32, dropout: 0.0, target_modules: all-linear}}
tracking: {{enabled: false}}
evaluation: {{enabled: false}}
"""
PROBE = [[1, 17, 230, 45, 99, 12, 3, 64, 88, 5, 204, 77]]  # ids inside the tiny tokenizer's vocabulary (372)


def logits(model: Any, device: str) -> Any:
    model.eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor(PROBE, device=device)).logits.float().cpu()


def relative_error(a: Any, b: Any) -> float:
    return float((a - b).abs().max() / a.abs().max())


def quantized_base(model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=torch.float32)
    return AutoModelForCausalLM.from_pretrained(str(model_dir), quantization_config=config, dtype=torch.float32,
                                                device_map={"": 0})


@pytest.fixture(scope="module")
def qlora_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A run directory as forge run leaves it for a QLoRA recipe, its adapter made on the 4-bit base."""
    pytest.importorskip("bitsandbytes")
    from peft import LoraConfig, get_peft_model

    from forge.recipe.validate import resolve

    root = tmp_path_factory.mktemp("qlora-export")
    built = small_setup(root, 20, longest=60, model_longest=120)
    model_dir, papers = built["model"], built["papers"]
    recipe = root / "recipe.yaml"
    recipe.write_text(RECIPE.format(out=root / "runs", papers=papers, model=model_dir))
    run_dir = root / "runs" / "qlora-export"
    run_dir.mkdir(parents=True)
    (run_dir / "recipe.yaml").write_text(resolve(recipe).yaml_text)
    (run_dir / "summary.json").write_text(json.dumps({"status": "completed", "mlflow_run_id": None}))
    torch.manual_seed(0)
    wrapped = get_peft_model(quantized_base(model_dir), LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                                   init_lora_weights=False))
    wrapped.save_pretrained(str(run_dir / "adapter"))
    return {"run_dir": run_dir, "model": model_dir, "reference": logits(wrapped, "cuda")}


def test_a_4bit_adapter_merges_into_the_dequantized_base(qlora_run: dict[str, Any], tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from forge.cli import main

    out = tmp_path / "merged"
    assert main(["export", str(qlora_run["run_dir"]), "--format", "merged", "--dtype", "f32", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float32"
    merged = logits(AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).to("cuda"), "cuda")
    reference = qlora_run["reference"]  # the 4-bit base + adapter, as trained
    assert relative_error(reference, merged) < 2e-3
    # the same adapter merged into the original weights gives another model: NF4's rounding shows
    original = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(qlora_run["model"]),
                                                                              dtype=torch.float32),
                                         str(qlora_run["run_dir"] / "adapter"))
    assert relative_error(reference, logits(original, "cpu")) > 2e-2
    card = (out / "README.md").read_text()
    assert "## Precision" in card and "dequantized to float32" in card and "- qlora" in card


def test_the_gguf_of_a_4bit_run_reads_back(qlora_run: dict[str, Any], tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from forge.cli import main

    out = tmp_path / "gguf"
    assert main(["export", str(qlora_run["run_dir"]), "--format", "gguf", "--dtype", "q8_0", "--out", str(out)]) == 0
    loaded = AutoModelForCausalLM.from_pretrained(str(out), gguf_file="model.gguf", dtype=torch.float32)
    assert relative_error(qlora_run["reference"], logits(loaded.to("cuda"), "cuda")) < 5e-2
