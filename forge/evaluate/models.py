"""Load the models an evaluation compares: the run's fine-tuned model (base + its LoRA adapter, or the full
model of a run without LoRA) and the baseline (`base`, another run directory, or an adapter folder).

The base weights are loaded once where possible: `base` is the same PeftModel with its adapter disabled,
and a baseline adapter on the same base is loaded beside the run's and switched to while it is evaluated.
A 4-bit or 8-bit run evaluated on a machine without CUDA is loaded unquantized (and the report says so).
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager

from forge.evaluate.errors import EvaluationError

BASELINE_ADAPTER = "baseline"


@dataclass
class EvalModel:
    """A model under evaluation; `use()` makes it the active one for a block (switching adapters)."""

    label: str
    model: Any
    tokenizer: Any
    kind: str  # causal_lm, token_classification, or the recipe's encoder task
    source: str
    use: Callable[[], ContextManager[Any]] = field(default=contextlib.nullcontext)


@dataclass
class ModelPair:
    tuned: EvalModel
    baseline: EvalModel | None
    notes: list[str] = field(default_factory=list)


def find_trained(run_dir: Path) -> tuple[str, Path]:
    """("adapter", folder) for a LoRA run, ("model", folder) for a full fine-tune; an error when neither."""
    adapter, full = Path(run_dir) / "adapter", Path(run_dir) / "model"
    if (adapter / "adapter_config.json").is_file():
        return "adapter", adapter
    if (full / "config.json").is_file():
        return "model", full
    raise EvaluationError(f"{run_dir} has no trained model (adapter/adapter_config.json or model/config.json)",
                          "evaluate a run that finished: forge run RECIPE first")


def load_models(recipe: Any, plan: Any, run_dir: Path, compare: str | None) -> ModelPair:
    """The fine-tuned model of run_dir and the baseline that `compare` names (None: no baseline)."""
    notes: list[str] = []
    kind, trained = find_trained(run_dir)
    quantization = _eval_quantization(plan, notes)
    tokenizer = _tokenizer(plan, trained, quantization)
    if kind == "adapter":
        from peft import PeftModel

        base = _base_model(plan, tokenizer, quantization)
        model = _place(PeftModel.from_pretrained(base, str(trained), adapter_name="default"), quantization)
        tuned = EvalModel("fine-tuned", model, tokenizer, _kind(plan, model), str(trained))
    else:
        model = _place(_from_folder(plan, trained), quantization)
        tuned = EvalModel("fine-tuned", model, tokenizer, _kind(plan, model), str(trained))
    baseline = _baseline(compare, tuned, plan, tokenizer, quantization, kind, notes) if compare else None
    return ModelPair(tuned, baseline, notes)


def _baseline(compare: str, tuned: EvalModel, plan: Any, tokenizer: Any, quantization: Any, kind: str,
              notes: list[str]) -> EvalModel:
    if compare == "base":
        if kind == "adapter":
            return EvalModel("base", tuned.model, tokenizer, tuned.kind, plan.model.name_or_path,
                             use=tuned.model.disable_adapter)
        base = _place(_base_model(plan, tokenizer, quantization), quantization)
        return EvalModel("base", base, tokenizer, _kind(plan, base), plan.model.name_or_path)
    path = Path(compare).expanduser()
    adapter = path if (path / "adapter_config.json").is_file() else path / "adapter"
    if (path / "recipe.yaml").is_file():
        other_kind, other = find_trained(path)
        other_plan = _plan_of(path)
        if other_kind == "model" or _base_key(other_plan) != _base_key(plan) or kind != "adapter":
            notes.append(f"baseline {path} has its own base weights: loaded separately")
            pair = load_models(_recipe_of(path), other_plan, path, None)
            return EvalModel(f"baseline {path.name}", pair.tuned.model, pair.tuned.tokenizer, pair.tuned.kind,
                             str(other))
        adapter = other
    if not (adapter / "adapter_config.json").is_file():
        raise EvaluationError(f"compare_with {compare!r} is not base, a run directory or an adapter folder",
                              "give a run directory (with recipe.yaml) or a folder with adapter_config.json")
    if kind != "adapter":
        base = _base_model(plan, tokenizer, quantization)
        from peft import PeftModel

        model = _place(PeftModel.from_pretrained(base, str(adapter)), quantization)
        return EvalModel(f"baseline {adapter}", model, tokenizer, _kind(plan, model), str(adapter))
    tuned.model.load_adapter(str(adapter), adapter_name=BASELINE_ADAPTER)
    _place(tuned.model, quantization)
    return EvalModel(f"baseline {adapter.parent.name if adapter.name == 'adapter' else adapter.name}", tuned.model,
                     tokenizer, tuned.kind, str(adapter), use=lambda: _adapter_active(tuned.model, BASELINE_ADAPTER))


@contextlib.contextmanager
def _adapter_active(model: Any, name: str) -> Iterator[None]:
    previous = model.active_adapter
    model.set_adapter(name)
    try:
        yield
    finally:
        model.set_adapter(previous)


def _eval_quantization(plan: Any, notes: list[str]) -> Any:
    """The quantization the models are evaluated with: the run's, or none (with a note) without CUDA."""
    from forge.model.load import cuda_available

    if plan.quantization and not cuda_available():
        notes.append("the run was quantized (bitsandbytes) but this machine has no CUDA: evaluated unquantized "
                     "in float32, which can differ slightly from the quantized model")
        return None
    return plan.quantization


def _tokenizer(plan: Any, trained: Path, quantization: Any) -> Any:
    """The tokenizer saved with the trained model (it has the run's domain tokens), else the plan's."""
    if (trained / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(trained))
    else:
        from forge.model.load import prepare_tokenizer

        tokenizer = prepare_tokenizer(plan.model, quantization).tokenizer
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _base_model(plan: Any, tokenizer: Any, quantization: Any) -> Any:
    from forge.model.load import load_model, resolve_dtype, resolve_source

    source = resolve_source(plan.model.name_or_path, plan.model.tiny)
    model = load_model(plan.model, source, quantization, resolve_dtype(plan.model.dtype))
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))  # as training did for the run's domain tokens
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def _from_folder(plan: Any, folder: Path) -> Any:
    import transformers

    from forge.model.load import AUTO_CLASSES, resolve_dtype

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    architectures = config.get("architectures") or []
    name = ("AutoModelForTokenClassification" if any(a.endswith("ForTokenClassification") for a in architectures)
            else AUTO_CLASSES[plan.model.task])
    import torch

    dtype = getattr(torch, resolve_dtype(plan.model.dtype))
    return getattr(transformers, name).from_pretrained(str(folder), dtype=dtype)


def _place(model: Any, quantization: Any) -> Any:
    """On the GPU when there is one (quantized models are placed by bitsandbytes), in eval mode."""
    import torch

    if not quantization and torch.cuda.is_available():
        model = model.to("cuda")
    model.eval()
    return model


def _kind(plan: Any, model: Any) -> str:
    """token_classification for a model whose labels are BIO tags, else the recipe's model.task."""
    from forge.evaluate.token_labels import has_bio_labels

    return "token_classification" if has_bio_labels(model) else str(plan.model.task)


def _recipe_of(run_dir: Path) -> Any:
    from forge.recipe.validate import resolve

    return resolve(run_dir / "recipe.yaml").recipe


def _plan_of(run_dir: Path) -> Any:
    from forge.plan import compile_plan

    return compile_plan(_recipe_of(run_dir))


def _base_key(plan: Any) -> tuple[Any, ...]:
    m = plan.model
    return m.name_or_path, m.revision, json.dumps(m.tiny, sort_keys=True)
