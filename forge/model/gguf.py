"""Models from GGUF files (llama.cpp's single-file format), which transformers reads and dequantizes on load.

The checks that need no torch (the file exists and starts with the GGUF magic; the architecture named in its
header) run at validate time and before anything loads; `check_architecture` then asks the installed
transformers whether it can read that architecture from GGUF, and `pretrained_location` turns a `.gguf`
path into the arguments `from_pretrained` takes (the folder, and `gguf_file=`).
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

from forge.model.errors import ForgeRuntimeError

GGUF_MAGIC = b"GGUF"
GGUF_SUFFIX = ".gguf"
# Sizes of GGUF metadata value types (gguf spec: uint8 ... float64); 8 is a string, 9 an array.
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
MAX_KEYS_SCANNED = 64  # general.architecture is the first key in every writer's files; stop looking well after
MAX_STRING_BYTES = 1 << 20


def is_gguf_name(name: str) -> bool:
    """Whether a model.name_or_path names a GGUF file (always a local file: Forge does not fetch GGUF from the hub)."""
    return name.lower().endswith(GGUF_SUFFIX)


def gguf_file_problem(path: str | Path) -> str | None:
    """Why `path` cannot be a GGUF model file (missing, a folder, unreadable, not GGUF), or None. No torch."""
    path = Path(path).expanduser()
    if not path.exists():
        return f"GGUF file {path} does not exist"
    if not path.is_file():
        return f"{path} is not a file (a GGUF model is one .gguf file)"
    try:
        with open(path, "rb") as f:
            head = f.read(len(GGUF_MAGIC))
    except OSError as e:
        return f"cannot read {path}: {e.strerror or e}"
    if head != GGUF_MAGIC:
        return f"{path} is not a GGUF file (it starts with {head!r}, a GGUF file with {GGUF_MAGIC!r})"
    return None


def check_gguf_file(path: str | Path) -> Path:
    """The path, after refusing in one line a missing file or one that is not GGUF."""
    problem = gguf_file_problem(path)
    if problem:
        raise ForgeRuntimeError(problem, "point model.name_or_path at a .gguf model file (llama.cpp's format), "
                                "a from_pretrained folder or a Hugging Face id", doc="model-not-found")
    return Path(path).expanduser()


def _read(f: BinaryIO, size: int) -> bytes:
    data = f.read(size)
    if len(data) != size:
        raise ValueError("the header ends early")
    return data


def _string(f: BinaryIO) -> bytes:
    (length,) = struct.unpack("<Q", _read(f, 8))
    if length > MAX_STRING_BYTES:
        raise ValueError(f"a header string of {length} bytes")
    return _read(f, length)


def _skip_value(f: BinaryIO, kind: int) -> None:
    if kind in _SCALAR_SIZES:
        f.seek(_SCALAR_SIZES[kind], 1)
    elif kind == _STRING:
        _string(f)
    elif kind == _ARRAY:
        item, count = struct.unpack("<IQ", _read(f, 12))
        if item in _SCALAR_SIZES:
            f.seek(_SCALAR_SIZES[item] * count, 1)
        else:
            for _ in range(count):
                _skip_value(f, item)
    else:
        raise ValueError(f"unknown metadata type {kind}")


def gguf_architecture(path: str | Path) -> str:
    """`general.architecture` from the file's header, read directly: gguf's GGUFReader parses every field (the
    whole vocabulary included) and takes seconds, while the architecture is the header's first key."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            magic, version = struct.unpack("<4sI", _read(f, 8))
            if magic != GGUF_MAGIC:
                raise ValueError("no GGUF magic")
            if version not in (2, 3):
                raise ValueError(f"GGUF version {version} (Forge reads versions 2 and 3)")
            _tensors, keys = struct.unpack("<QQ", _read(f, 16))
            for _ in range(min(keys, MAX_KEYS_SCANNED)):
                key = _string(f)
                (kind,) = struct.unpack("<I", _read(f, 4))
                if key == b"general.architecture" and kind == _STRING:
                    return _string(f).decode("utf-8", "replace")
                _skip_value(f, kind)
    except (OSError, ValueError, struct.error) as e:
        raise ForgeRuntimeError(f"cannot read the header of {path}: {e}",
                                "the file may be truncated or not a GGUF model", doc="model-not-found") from None
    raise ForgeRuntimeError(f"{path} names no general.architecture in its header",
                            "a GGUF model file names its architecture; re-export it with llama.cpp's tools",
                            doc="model-not-found")


def check_architecture(path: str | Path) -> str:
    """The file's architecture, after refusing in one line one that the installed transformers cannot read."""
    import transformers
    from transformers.integrations.gguf.utils import is_gguf_arch_supported
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES, load_gguf_checkpoint

    architecture = gguf_architecture(path)
    readable = sorted(set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"})
    if architecture in readable or is_gguf_arch_supported(architecture):
        return architecture
    try:  # transformers renames some llama.cpp names (qwen2moe, gpt-oss...): let its own parser decide
        load_gguf_checkpoint(str(path), return_tensors=False)
    except Exception:
        raise ForgeRuntimeError(
            f"{path}: transformers {transformers.__version__} cannot read the GGUF architecture {architecture!r}",
            f"it reads {', '.join(readable)} from GGUF; use a from_pretrained folder of this model instead",
            doc="model-not-found") from None
    return architecture


def pretrained_location(source: str) -> tuple[str, dict[str, Any]]:
    """(first argument, extra keyword arguments) of from_pretrained for a source: a .gguf file is named by its
    folder and `gguf_file=`; a folder or a hub id passes through."""
    if is_gguf_name(source):
        path = Path(source).expanduser()
        return str(path.parent), {"gguf_file": path.name}
    return source, {}


def drop_gguf_quantizer(model: Any) -> Any:
    """A model dequantized from GGUF as a plain dense model: transformers keeps its GGUF quantizer attached,
    which tells the Trainer the model cannot be trained and save_pretrained that it cannot be saved, though
    every weight is an ordinary tensor after dequantization."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None and not getattr(quantizer, "packed_modules", None):
        quantizer.remove_quantization_config(model)
    return model
