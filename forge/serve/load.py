"""What a run serves, checked before anything listens, and loaded inside each model worker.

`prepare_served` reads a run directory (or the recipe that names it) and refuses, in one line, a run that is
incomplete (no adapter or model, weights missing) or whose adapter does not fit the base model: every
adapter tensor is compared with the module it adapts on a weightless ("meta") copy of the base, so a wrong
base is caught in seconds, not after minutes of loading. `load_for_serving` then runs in each worker.
"""
from __future__ import annotations

import dataclasses
import json
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forge.plan import EightBitPlan, FourBitPlan, ModelPlan, QuantizationPlan
from forge.serve.errors import ServeError
from forge.run_target import resolve_run_target

ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
MODEL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
FINISHED = ("completed", "stopped")
LITSERVE_HOSTS = ("127.0.0.1", "0.0.0.0", "::")
# Adapter tensors and what they must match in the module they adapt: (pattern, attribute, tensor dim).
LORA_SHAPES = (
    (re.compile(r"^(.+)\.lora_A(?:\.[^.]+)?\.weight$"), "in_features", 1),
    (re.compile(r"^(.+)\.lora_B(?:\.[^.]+)?\.weight$"), "out_features", 0),
    (re.compile(r"^(.+)\.lora_embedding_A(?:\.[^.]+)?$"), "num_embeddings", 1),
    (re.compile(r"^(.+)\.lora_embedding_B(?:\.[^.]+)?$"), "embedding_dim", 0),
    (re.compile(r"^(.+)\.lora_magnitude_vector(?:\.[^.]+)?(?:\.weight)?$"), "out_features", 0),
    (re.compile(r"^(.+)\.token_adapter\.trainable_tokens_delta(?:\.[^.]+)?$"), "embedding_dim", -1),
)


@dataclass(frozen=True)
class ServedModel:
    """Everything a worker needs to load the run's model; small and picklable (workers are spawned)."""

    run_name: str
    run_dir: str
    kind: str  # "adapter": base model + PEFT adapter; "model": a full fine-tune's own folder
    weights_dir: str
    base_source: str
    tokenizer_source: str
    plan_model: ModelPlan  # with a token classifier's labels, read from its saved weights
    dtype: str
    quantization: QuantizationPlan | None
    merge_adapter: bool
    chat_prompts: bool
    context_length: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def resolve_target(target: str | Path, overrides: Sequence[str] = ()) -> tuple[Any, Path]:
    """(resolved recipe, run directory) for a run directory (its saved recipe.yaml) or a recipe file."""
    return resolve_run_target(target, overrides, ServeError)


def serving_quantization(recipe: Any) -> QuantizationPlan | None:
    """BitsAndBytesConfig arguments for serving.quantization, with the recipe's 4-bit settings."""
    mode, q = recipe.serving.quantization, recipe.quantization
    if mode == "none":
        return None
    if mode == "8bit":
        return EightBitPlan()
    return FourBitPlan(bnb_4bit_quant_type=q.quant_type, bnb_4bit_use_double_quant=q.double_quant,
                       bnb_4bit_compute_dtype=q.compute_dtype, bnb_4bit_quant_storage="uint8")


def check_machine(serving: Any, cuda: bool) -> None:
    """Settings LitServe or this machine cannot honour, refused before any loading."""
    if not is_ip_address(serving.host):
        raise ServeError(f"serving.host {serving.host!r} cannot be bound: it is not an IP address",
                         "use 127.0.0.1 (this machine only), 0.0.0.0 (every IPv4 interface), :: (every interface) "
                         "or the address of one of this machine's interfaces")
    if not 1024 <= serving.port <= 65535:
        raise ServeError(f"serving.port {serving.port} is outside 1024-65535, the ports LitServe binds",
                         "pick a port from 1024 to 65535 (--port)")
    if serving.device == "cuda" and not cuda:
        raise ServeError("serving.device is cuda but this machine has no CUDA GPU",
                         "set serving.device: auto or cpu", doc="no-cuda-gpu")
    if serving.quantization != "none":
        from forge.model.load import check_bitsandbytes

        check_bitsandbytes(4 if serving.quantization == "4bit" else 8)
    if serving.batch_timeout >= serving.timeout:
        raise ServeError(f"serving.batch_timeout {serving.batch_timeout:g}s is not below serving.timeout "
                         f"{serving.timeout:g}s", "a request must be able to wait for its batch to fill")


def is_ip_address(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_port_free(host: str, port: int) -> None:
    """Refuse a port another process listens on, before the model loads (the server would fail only after)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a closing port is free
        try:
            probe.bind((host, port))
        except OSError as e:
            import errno

            if e.errno == errno.EADDRNOTAVAIL:
                raise ServeError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                                 "no interface of this machine has that address: give one of its addresses (--host)"
                                 ) from None
            raise ServeError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                             "another process holds the port: stop it, or pick another with --port",
                             doc="port-in-use") from None


def prepare_served(resolved: Any, run_dir: Path) -> ServedModel:
    """Check the run directory and build the ServedModel; raise ServeError for a run that cannot be served."""
    from forge.model.load import trained_run_sources
    from forge.plan import compile_plan

    recipe = resolved.recipe
    if recipe.model.task not in ("causal_lm", "token_classification"):
        raise ServeError(f"model.task is {recipe.model.task}: forge serve generates text (a causal LM) or finds "
                         "mentions (a token classifier)",
                         "serve a run of model.task causal_lm or token_classification")
    notes: list[str] = []
    status = _summary_status(run_dir)
    if status not in FINISHED:
        notes.append(f"summary.json says the run is {status}; serving the model it saved last")
    kind, weights = _find_trained(run_dir, status)
    plan = compile_plan(recipe)
    base, tokenizer_source = trained_run_sources(recipe.model, kind, weights)
    plan_model = plan.model
    if recipe.model.task == "token_classification":  # its labels were saved with the weights
        from forge.model.labels import LABELS_FILE, read_labels

        labels = read_labels(weights)
        if not labels:
            raise ServeError(f"{weights} holds no labels of the token classifier ({LABELS_FILE} or config.json "
                             "id2label)", "the run was not saved completely; train again with forge run")
        plan_model = dataclasses.replace(plan_model, labels=tuple(labels))
    served = ServedModel(
        run_name=recipe.run.name, run_dir=str(run_dir), kind=kind, weights_dir=str(weights), base_source=base,
        tokenizer_source=tokenizer_source, plan_model=plan_model, dtype=recipe.serving.dtype,
        quantization=serving_quantization(recipe), merge_adapter=recipe.serving.merge_adapter and kind == "adapter",
        chat_prompts=recipe.data.format == "chat", notes=tuple(notes))
    context, fit_notes = check_fits(served)
    return dataclasses.replace(served, context_length=context, notes=tuple(notes + fit_notes))


def _summary_status(run_dir: Path) -> str:
    path = run_dir / "summary.json"
    if not path.is_file():
        return "unknown (no summary.json)"
    try:
        return str(json.loads(path.read_text(encoding="utf-8")).get("status", "unknown"))
    except (OSError, ValueError, AttributeError):
        return "unknown (summary.json is unreadable)"


def _find_trained(run_dir: Path, status: str) -> tuple[str, Path]:
    adapter, full = run_dir / "adapter", run_dir / "model"
    if adapter.is_dir():
        if not (adapter / "adapter_config.json").is_file():
            raise ServeError(f"{adapter} is incomplete: it has no adapter_config.json",
                             "the adapter was not saved completely; train again with forge run")
        if not any((adapter / name).is_file() for name in ADAPTER_WEIGHTS):
            raise ServeError(f"{adapter} is incomplete: it has no adapter_model.safetensors",
                             "the adapter was not saved completely; train again with forge run")
        return "adapter", adapter
    if full.is_dir():
        if not (full / "config.json").is_file() or not any((full / name).is_file() for name in MODEL_WEIGHTS):
            raise ServeError(f"{full} is incomplete: it needs config.json and model.safetensors",
                             "the model was not saved completely; train again with forge run")
        for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
            if (full / index).is_file():
                shards = set(json.loads((full / index).read_text(encoding="utf-8")).get("weight_map", {}).values())
                missing = sorted(s for s in shards if not (full / s).is_file())
                if missing:
                    raise ServeError(f"{full} is incomplete: shard {missing[0]} is missing",
                                     "copy the whole model folder, or train again")
        return "model", full
    raise ServeError(f"{run_dir} has no trained model (adapter/ or model/); the run's status is {status}",
                     f"finish training first: forge run {run_dir / 'recipe.yaml'}")


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape, read from a .safetensors header (no weights, no torch)."""
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > 100_000_000:
                raise ValueError("header too large")
            header = json.loads(f.read(size))
    except (OSError, ValueError, struct.error) as e:
        raise ServeError(f"{path} is not a readable safetensors file ({e})",
                         "the adapter was not saved completely; train again with forge run") from None
    return {name: list(entry["shape"]) for name, entry in header.items() if name != "__metadata__"}


def check_fits(served: ServedModel) -> tuple[int | None, list[str]]:
    """The base model's context length, after checking that every adapter tensor fits the module it adapts."""
    import torch
    import transformers

    from forge.model.gguf import pretrained_location

    m = served.plan_model
    location, gguf = pretrained_location(served.base_source)
    try:
        config = transformers.AutoConfig.from_pretrained(location, **gguf, revision=m.revision,
                                                         trust_remote_code=m.trust_remote_code)
        if gguf and hasattr(config, "quantization_config"):
            del config.quantization_config  # the worker dequantizes; the meta copy needs the plain shapes
    except Exception as e:  # a broken folder or an unreachable hub id; say which
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ServeError(f"cannot read the model config of {served.base_source}: {first}",
                         "point model.name_or_path at a from_pretrained folder (or download the hub id)") from None
    context = getattr(config, "max_position_embeddings", None)
    if served.kind != "adapter":
        return context, []
    adapter = Path(served.weights_dir)
    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        return context, ["adapter_model.bin (not safetensors): its shapes are checked when the worker loads it"]
    shapes = safetensors_shapes(weights)
    from forge.model.load import AUTO_CLASSES

    auto = getattr(transformers, AUTO_CLASSES[m.task])
    if m.labels:  # a token classifier's head has one output per label (saved with the adapter)
        config.num_labels = len(m.labels)
    with torch.device("meta"):
        model = auto.from_config(config, trust_remote_code=m.trust_remote_code)
    vocab = _tokenizer_size(served.tokenizer_source)
    problem = adapter_mismatch(model, shapes, vocab)
    if problem:
        raise ServeError(f"the adapter in {adapter} does not fit the base model {served.base_source}: {problem}",
                         "serve it with the base model it was trained on (model.name_or_path in the run's recipe.yaml)",
                         doc="adapter-does-not-fit")
    notes = []
    adapter_config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    trained_on = adapter_config.get("base_model_name_or_path")
    if trained_on and trained_on not in (served.base_source, m.name_or_path):
        notes.append(f"the adapter names {trained_on} as its base; serving it on {served.base_source} (shapes match)")
    return context, notes


def _tokenizer_size(source: str) -> int | None:
    from transformers import AutoTokenizer

    from forge.model.gguf import pretrained_location

    location, gguf = pretrained_location(source)
    try:
        return len(AutoTokenizer.from_pretrained(location, **gguf))
    except Exception:  # the worker reports an unloadable tokenizer with its own error
        return None


def adapter_mismatch(model: Any, shapes: dict[str, list[int]], vocab: int | None = None) -> str | None:
    """The first adapter tensor that does not fit `model` (a meta copy of the base), as a phrase; None if all fit.

    vocab: the tokenizer's length; training resized the embeddings to it when it was larger."""
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    embeddings = {id(model.get_input_embeddings()), id(model.get_output_embeddings())}
    rows = model.get_input_embeddings().weight.shape[0]
    resized = vocab if vocab and vocab > rows else rows

    def sized(module: Any, attribute: str) -> int | None:
        value = getattr(module, attribute, None)
        if id(module) in embeddings and attribute in ("num_embeddings", "out_features") and value == rows:
            return resized
        return value

    for key, shape in sorted(shapes.items()):
        name = key.removeprefix("base_model.model.")
        for pattern, attribute, dim in LORA_SHAPES:
            match = pattern.match(name)
            if not match:
                continue
            target = match.group(1)
            module = modules.get(target)
            if module is None:
                return f"it adapts {target}, which the base model does not have"
            expected = sized(module, attribute)
            if expected is not None and shape[dim] != expected:
                return (f"{name} has shape {shape}, but {target} has {attribute} {expected} "
                        "(was it trained on another base model?)")
            break
        else:
            param = params.get(name)
            if param is None:
                continue  # PEFT bookkeeping this check does not know; the worker's load still validates it
            expected_shape = list(param.shape)
            owner = modules.get(name.rsplit(".", 1)[0])
            if id(owner) in embeddings and expected_shape and expected_shape[0] == rows:
                expected_shape[0] = resized  # a saved embedding or lm_head has the resized vocabulary
            if list(shape) != expected_shape:
                return (f"{name} has shape {shape}, but the base's is {expected_shape} "
                        "(was it trained on another base model?)")
    return None


def serving_dtype(name: str, device: str) -> str:
    """auto: bfloat16 on a CUDA device that has it, else float32."""
    if name != "auto":
        return name
    import torch

    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return "bfloat16"
    return "float32"


def load_for_serving(served: ServedModel, device: str) -> tuple[Any, Any]:
    """(model, tokenizer) on `device`, in eval mode: the base with its adapter (merged when asked), or the
    full fine-tune; quantized by bitsandbytes when serving.quantization says so."""
    import torch
    from transformers import AutoTokenizer

    from forge.model.gguf import pretrained_location
    from forge.model.load import load_model

    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))  # quantized weights load onto the current device
    location, gguf = pretrained_location(served.tokenizer_source)
    tokenizer = AutoTokenizer.from_pretrained(location, **gguf,
                                              trust_remote_code=served.plan_model.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    source = served.base_source if served.kind == "adapter" else served.weights_dir
    model = load_model(served.plan_model, source, served.quantization, serving_dtype(served.dtype, device))
    if served.kind == "adapter":
        from peft import PeftModel

        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer))  # as training did for the run's domain tokens
        model = PeftModel.from_pretrained(model, served.weights_dir)
        if served.merge_adapter:
            model = model.merge_and_unload()
    if served.quantization is None:
        model = model.to(device)
    model.eval()
    return model, tokenizer
