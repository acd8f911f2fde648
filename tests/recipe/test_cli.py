"""The `forge validate` and `forge plan` verbs as a user runs them: exit codes, stderr lines, JSON, speed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from forge.cli import main

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "recipes").glob("*.yaml")) + sorted((ROOT / "recipes" / "base").glob("*.yaml"))


def test_shipped_recipes_validate(capsys) -> None:
    assert main(["validate", *map(str, SHIPPED)]) == 0
    assert capsys.readouterr().err == ""


def test_validate_bad_recipe_exit_2_one_line_each(write, MINIMAL: str, capsys) -> None:
    path = write("bad.yaml", MINIMAL + "lora:\n  r: 0\n  alpah: 3\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert err[0].endswith("bad.yaml:7:3: lora.r: input should be greater than 0 (got 0)")
    assert err[1].endswith("bad.yaml:8:3: lora.alpah: unknown key 'alpah'; did you mean 'alpha'?")


def test_validate_json(write, MINIMAL: str, capsys) -> None:
    path = write("bad.yaml", MINIMAL + "lora:\n  r: 0\n")
    assert main(["validate", "--json", str(path)]) == 2
    [issue] = json.loads(capsys.readouterr().out)
    assert issue["path"] == "lora.r" and issue["line"] == 7 and issue["column"] == 3
    assert issue["file"].endswith("bad.yaml") and "greater than 0" in issue["message"]


def test_validate_json_valid_prints_empty_list(minimal: Path, capsys) -> None:
    assert main(["validate", "--json", str(minimal)]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_plan_json_keys_for_genomics_on_a_cpu_machine(capsys) -> None:
    assert main(["plan", str(ROOT / "recipes" / "genomics_qlora.yaml"), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert {"recipe", "sources", "trainer", "lora", "quantization", "launch", "serving", "estimate"} <= set(plan)
    assert plan["quantization"]["bnb_4bit_quant_type"] == "nf4"
    assert plan["quantization"]["bnb_4bit_use_double_quant"] is True
    assert plan["lora"]["target_modules"] == "all-linear"
    assert plan["sources"]["quantization.mode"] == "recipes/base/qlora.yaml:5"
    assert plan["sources"]["run.name"] == "recipes/genomics_qlora.yaml:5"
    assert plan["estimate"]["known"] and 3 < plan["estimate"]["weights_gib"] < 5  # 7B in 4 bits


def test_plan_text_shows_sources_and_overrides(capsys) -> None:
    assert main(["plan", str(ROOT / "recipes" / "genomics_qlora_r64.yaml"), "optimizer.lr=5e-5"]) == 0
    out = capsys.readouterr().out
    assert "extends: recipes/base/defaults.yaml -> recipes/base/qlora.yaml -> recipes/genomics_qlora.yaml" in out
    lr_line = next(line for line in out.splitlines() if line.strip().startswith("optimizer.lr "))
    assert "5e-05" in lr_line and lr_line.rstrip().endswith("override 1")


def test_plan_bad_override_exit_2(capsys) -> None:
    assert main(["plan", str(ROOT / "recipes" / "quickstart.yaml"), "lora.alpah=3"]) == 2
    assert capsys.readouterr().err.strip() == ("<overrides>:1:1: lora.alpah: no such key 'alpah' in lora; "
                                               "did you mean 'alpha'?")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    code = ("import sys, forge.cli; rc = forge.cli.main(sys.argv[1:]); "
            "heavy = [m for m in ('torch', 'transformers', 'trl', 'mlflow', 'datasets') if m in sys.modules]; "
            "print('HEAVY', heavy, file=sys.stderr); sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, timeout=60)


@pytest.mark.parametrize("verb", ["validate", "plan"])
def test_no_heavy_imports_and_no_traceback(verb: str, write, MINIMAL: str) -> None:
    bad = write("bad.yaml", MINIMAL + "model: [\n")
    result = run_cli(verb, str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "malformed YAML" in result.stderr
    assert "HEAVY []" in result.stderr
    good = run_cli(verb, str(ROOT / "recipes" / "genomics_qlora.yaml"))
    assert good.returncode == 0, good.stderr
    assert "HEAVY []" in good.stderr
