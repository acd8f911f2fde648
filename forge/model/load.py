"""Load the tokenizer and the model a Plan names, ready to train: dtype, attention kernel, bitsandbytes 4/8-bit,
k-bit preparation, domain tokens and LoRA adapters (PEFT).

Problems a user can fix (a missing folder, no network for a hub id, 4-bit without CUDA, no pad token) become
one-line `ForgeRuntimeError`s; 4-bit or 8-bit without CUDA is refused before anything is loaded.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from forge.model.errors import ForgeRuntimeError
from forge.model.gguf import (check_architecture, check_gguf_file, drop_gguf_quantizer, is_gguf_name,
                              pretrained_location)
from forge.model.packaged import PACKAGED_MODELS, packaged_model_path
from forge.model.report import ParamCount, count_parameters
from forge.model.tiny import TINY_BERT, TINY_LLAMA, tiny_bert, tiny_llama

if TYPE_CHECKING:
    from forge.plan import LoraPlan, ModelPlan, QuantizationPlan

AUTO_CLASSES = {"causal_lm": "AutoModelForCausalLM", "masked_lm": "AutoModelForMaskedLM",
                "sequence_classification": "AutoModelForSequenceClassification",
                "token_classification": "AutoModelForTokenClassification"}


@dataclass
class LoadedModel:
    """A model and tokenizer ready for a trainer, with what loading decided on the way."""

    model: Any
    tokenizer: Any
    source: str
    dtype: str
    params: ParamCount
    new_tokens: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_dtype(name: str) -> str:
    """The dtype name to load weights in; auto: bfloat16 on a CUDA GPU that has it, else float32."""
    if name != "auto":
        return name
    import torch

    return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"


def check_quantization(quantization: QuantizationPlan | None) -> None:
    """Refuse 4-bit/8-bit where bitsandbytes cannot run, before any weights are read."""
    if quantization is not None:
        check_bitsandbytes(quantization.bits)


def check_bitsandbytes(bits: int) -> None:
    """Refuse 4-bit or 8-bit weights (`bits`) where bitsandbytes cannot run: without CUDA, or not installed."""
    if not cuda_available():
        raise ForgeRuntimeError(f"{bits}-bit quantization needs a CUDA GPU (bitsandbytes) and none was found",
                                "set quantization.mode: none to train on the CPU, or run on a GPU machine", doc="no-cuda-gpu")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ForgeRuntimeError(f"{bits}-bit quantization needs the bitsandbytes package, which is not installed",
                                "pip install 'forge-finetune[gpu]'", doc="bitsandbytes-missing") from None


def resolve_source(name_or_path: str, tiny: Mapping[str, int] | None = None, what: str = "model") -> str:
    """A from_pretrained argument: the built tiny model's folder, a packaged model's GGUF file, a checked local
    folder or .gguf file (one whose architecture transformers reads), or a hub id.

    The built-in models always use seed 0: they are fixed models, whatever the run's seed."""
    if name_or_path == TINY_LLAMA:
        return str(tiny_llama(tiny))
    if name_or_path == TINY_BERT:
        return str(tiny_bert(tiny))
    if name_or_path in PACKAGED_MODELS:
        gguf = packaged_model_path(name_or_path)
        check_architecture(gguf)
        return str(gguf)
    if name_or_path.startswith("forge:"):
        raise ForgeRuntimeError(f"unknown built-in model {name_or_path!r}",
                                f"use one of {', '.join([TINY_LLAMA, TINY_BERT, *PACKAGED_MODELS])}",
                                doc="model-not-found")
    if is_gguf_name(name_or_path):
        gguf = check_gguf_file(name_or_path)
        check_architecture(gguf)
        return str(gguf)
    path = Path(name_or_path).expanduser()
    if path.is_absolute() or name_or_path.startswith((".", "~")) or path.exists():
        if not path.is_dir():
            raise ForgeRuntimeError(f"{what} path {name_or_path} does not exist",
                                    f"point model.{'name_or_path' if what == 'model' else 'tokenizer'} at a "
                                    "from_pretrained folder or a Hugging Face id", doc="model-not-found")
        needed = ("config.json",) if what == "model" else ("tokenizer_config.json", "tokenizer.json")
        if not any((path / name).is_file() for name in needed):
            raise ForgeRuntimeError(f"{what} folder {name_or_path} has no {' or '.join(needed)}",
                                    "save it with save_pretrained, or download it with huggingface-cli", doc="model-not-found")
        return str(path)
    return name_or_path


def trained_run_sources(model: Any, kind: str, weights: Path) -> tuple[str, str]:
    """(base, tokenizer) from_pretrained sources of a trained run, for its recipe's `model` section: the recipe's
    base for an adapter (the saved weights for a full fine-tune), and the tokenizer saved beside the weights when
    there is one, else the recipe's."""
    tiny = model.tiny.model_dump() if model.name_or_path.startswith("forge:") else None
    base = resolve_source(model.name_or_path, tiny) if kind == "adapter" else str(weights)
    if (weights / "tokenizer_config.json").is_file():
        return base, str(weights)
    name = model.tokenizer or model.name_or_path
    return base, base if name == model.name_or_path else resolve_source(name, tiny, "tokenizer")


def _hub_error(name: str, what: str, error: Exception) -> ForgeRuntimeError:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return ForgeRuntimeError(
        f"cannot load the {what} {name!r}: it is not a local folder and the Hugging Face Hub could not "
        f"provide it (no network?): {first}",
        f"download it with `huggingface-cli download {name} --local-dir DIR` and set model.name_or_path to DIR, "
        "or set HF_HUB_OFFLINE=1 to use what is already in the Hugging Face cache", doc="hub-not-reachable")


def _is_local(source: str) -> bool:
    return os.path.isdir(source) or (is_gguf_name(source) and os.path.isfile(source))


def load_tokenizer(plan: Any) -> Any:
    """The tokenizer a Plan names, with a pad token and the recipe's domain tokens (for data previews)."""
    return prepare_tokenizer(plan.model, None).tokenizer


def _tokenizer_from(plan_model: ModelPlan, source: str, notes: list[str]) -> tuple[Any, list[str]]:
    """The tokenizer with a pad token and the recipe's domain tokens; returns it and the tokens it added."""
    from transformers import AutoTokenizer

    name = plan_model.tokenizer or plan_model.name_or_path
    tok_source = (source if name == plan_model.name_or_path
                  else resolve_source(name, plan_model.tiny, what="tokenizer"))
    location, gguf = pretrained_location(tok_source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **gguf, revision=plan_model.revision,
                                                  trust_remote_code=plan_model.trust_remote_code)
    except (OSError, ValueError) as e:
        if _is_local(tok_source):
            raise ForgeRuntimeError(f"cannot load the tokenizer in {tok_source}: {e}".splitlines()[0],
                                    "the folder needs tokenizer files saved by save_pretrained"
                                    + (" (a .gguf file needs its tokenizer in the file)" if gguf else ""),
                                    doc="tokenizer-problems") from None
        raise _hub_error(tok_source, "tokenizer", e) from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ForgeRuntimeError(f"the tokenizer of {name} has neither a pad nor an eos token",
                                    "use a tokenizer that defines eos_token, or set model.tokenizer",
                                    doc="tokenizer-problems")
        tokenizer.pad_token = tokenizer.eos_token
        notes.append(f"tokenizer has no pad token: using its eos token {tokenizer.eos_token!r} for padding")
    domain = [t for t in plan_model.domain_tokens if t not in tokenizer.get_vocab()]
    if domain:
        tokenizer.add_tokens(domain)
        notes.append(f"added {len(domain)} domain tokens to the tokenizer")
    return tokenizer, domain


def quantization_config(quantization: QuantizationPlan | None) -> Any:
    """A BitsAndBytesConfig from the plan's keyword arguments (dtype names become torch dtypes)."""
    if quantization is None:
        return None
    import torch
    from transformers import BitsAndBytesConfig

    kwargs = asdict(quantization)
    for key in ("bnb_4bit_compute_dtype", "bnb_4bit_quant_storage"):
        if isinstance(kwargs.get(key), str):
            kwargs[key] = getattr(torch, kwargs[key])
    return BitsAndBytesConfig(**kwargs)


def load_model(plan_model: ModelPlan, source: str, quantization: QuantizationPlan | None,
               dtype: str, sharded: bool = False) -> Any:
    """The base model, quantized when the plan says so, on the CPU (or on this process's GPU when quantized;
    under ZeRO-3/FSDP, which place the shards themselves, without a device map)."""
    import torch
    import transformers

    auto = getattr(transformers, AUTO_CLASSES[plan_model.task])
    kwargs: dict[str, Any] = {"revision": plan_model.revision, "dtype": getattr(torch, dtype),
                              "trust_remote_code": plan_model.trust_remote_code}
    if plan_model.attn_implementation:
        kwargs["attn_implementation"] = plan_model.attn_implementation
    if plan_model.num_labels:
        kwargs["num_labels"] = plan_model.num_labels
    if plan_model.labels:  # a token classifier's labels, read from its data (or saved with the run)
        labels = list(plan_model.labels)
        kwargs.update(num_labels=len(labels), id2label=dict(enumerate(labels)),
                      label2id={name: i for i, name in enumerate(labels)})
    if quantization is not None:
        kwargs["quantization_config"] = quantization_config(quantization)
        if not sharded:
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", torch.cuda.current_device()))}
    location, gguf = pretrained_location(source)
    if gguf:
        if quantization is not None:
            raise ForgeRuntimeError(f"{source} is a GGUF model, which is dequantized on load and cannot also be "
                                    "quantized by bitsandbytes", "set quantization.mode: none", doc="model-not-found")
        from transformers import GgufConfig

        # dense weights in the recipe's dtype (GGUF's packed kernels are for inference and cannot be trained)
        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    try:
        model = auto.from_pretrained(location, **gguf, **kwargs)
    except Exception as e:  # a broken folder fails in many ways (OSError, safetensors, JSON); say where
        if _is_local(source):
            first = (str(e).strip().splitlines() or [""])[0]
            raise ForgeRuntimeError(f"cannot load the model in {source}: {type(e).__name__}: {first}",
                                    "check that the file is a complete GGUF model" if gguf else
                                    "check that the folder holds a complete save_pretrained model",
                                    doc="model-not-found") from e
        if isinstance(e, (OSError, ValueError)):
            raise _hub_error(source, "model", e) from None
        raise
    if gguf:
        drop_gguf_quantizer(model)
        # what an adapter records as its base (adapter_config.json): the recipe's name, not the file's folder
        model.name_or_path = plan_model.name_or_path
    return model


def attach_lora(model: Any, lora: LoraPlan, new_token_ids: list[int]) -> Any:
    """Wrap the model with LoRA adapters; new domain tokens get trainable embedding rows."""
    from peft import LoraConfig, get_peft_model

    kwargs = asdict(lora)
    if new_token_ids and not any("embed" in m for m in lora.modules_to_save or []):
        kwargs["trainable_token_indices"] = list(new_token_ids)
    if lora.task_type == "TOKEN_CLS" and lora.target_modules == "all-linear":
        # PEFT trains the head fully (modules_to_save) and leaves it out of all-linear for SEQ_CLS only
        kwargs["exclude_modules"] = ["classifier", "score"]
    if lora.task_type == "FEATURE_EXTRACTION":
        kwargs["task_type"] = None  # a masked-LM head: the generic wrapper passes labels through
    return get_peft_model(model, LoraConfig(**kwargs))


@dataclass
class LoadedTokenizer:
    """The tokenizer, the folder or hub id the model comes from, and the domain tokens added to it."""

    tokenizer: Any
    source: str
    new_tokens: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def prepare_tokenizer(plan_model: ModelPlan, quantization: QuantizationPlan | None = None) -> LoadedTokenizer:
    """Check the machine can load the model as planned, resolve where it comes from, and load its tokenizer."""
    check_quantization(quantization)  # before anything is read
    notes: list[str] = []
    source = resolve_source(plan_model.name_or_path, plan_model.tiny)
    tokenizer, new_tokens = _tokenizer_from(plan_model, source, notes)
    return LoadedTokenizer(tokenizer, source, new_tokens, notes)


def load_for_training(plan_model: ModelPlan, lora: LoraPlan | None,
                      quantization: QuantizationPlan | None, tokenizer: LoadedTokenizer, *, seed: int = 0,
                      gradient_checkpointing: bool = False,
                      gradient_checkpointing_kwargs: Mapping[str, Any] | None = None,
                      sharded: bool = False, fp32_norms: bool = False,
                      before_lora: Callable[[Any], list[str]] | None = None) -> LoadedModel:
    """The model the plan describes, matched to the tokenizer, k-bit prepared and LoRA-wrapped as planned.

    fp32_norms: a 4/8-bit model goes through PEFT's prepare_model_for_kbit_training, which upcasts norms,
    embeddings and the LM head to float32; off, they keep the model's dtype (faster, less memory; always so
    under ZeRO-3/FSDP, which need one dtype). before_lora(model) may patch the base model (kernels) and
    returns notes."""
    from transformers import set_seed

    check_quantization(quantization)
    notes = list(tokenizer.notes)
    set_seed(seed)  # LoRA initialisation draws from the global generators
    dtype = resolve_dtype(plan_model.dtype)
    model = load_model(plan_model, tokenizer.source, quantization, dtype, sharded)
    tok = tokenizer.tokenizer
    if len(tok) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tok))
        notes.append(f"resized token embeddings to {len(tok)}")
    model.config.pad_token_id = tok.pad_token_id
    if quantization is not None and (sharded or not fp32_norms):
        # not prepare_model_for_kbit_training, which casts norms, embeddings and head to fp32: slower, more
        # memory, and ZeRO-3/FSDP flatten parameters into one dtype
        for param in model.parameters():
            param.requires_grad_(False)
        if gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=dict(gradient_checkpointing_kwargs or {}))
        model.enable_input_require_grads()
    elif quantization is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs=dict(gradient_checkpointing_kwargs or {}))
    if before_lora is not None:
        notes += before_lora(model)
    if lora is not None and plan_model.adapter:  # continued training: the parent's adapter, trainable
        from forge.model.continued import find_parent, start_from_adapter

        model = start_from_adapter(model, find_parent(plan_model.adapter), lora, tokenizer.source)
    elif lora is not None:
        model = attach_lora(model, lora, tok.convert_tokens_to_ids(tokenizer.new_tokens))
    return LoadedModel(model=model, tokenizer=tok, source=tokenizer.source, dtype=dtype,
                       params=count_parameters(model), new_tokens=tokenizer.new_tokens, notes=notes)
