"""Bad input: every problem reported at once, one line each, at the key that set it."""
from __future__ import annotations

from pathlib import Path

import pytest

from forge.recipe import RecipeError, resolve


def issues_of(path: Path, overrides: list[str] | None = None) -> list[str]:
    with pytest.raises(RecipeError) as info:
        resolve(path, overrides or [])
    return [i.format() for i in info.value.issues]


def test_malformed_yaml_has_line_and_column(write) -> None:
    [issue] = issues_of(write("r.yaml", "model:\n  name_or_path: [unclosed\n"))
    assert issue.startswith(f"{issue.split(':')[0]}:3:1: <recipe>: malformed YAML") or ":3:1:" in issue
    assert "malformed YAML" in issue


def test_wrong_type_says_expected_and_got(write, MINIMAL: str) -> None:
    [issue] = issues_of(write("r.yaml", MINIMAL + "training:\n  epochs: three\n"))
    assert issue.endswith("r.yaml:7:3: training.epochs: input should be a valid number (got 'three')")


def test_strings_are_not_coerced_to_numbers(write, MINIMAL: str) -> None:
    [issue] = issues_of(write("r.yaml", MINIMAL + "lora:\n  r: '16'\n"))
    assert "lora.r: input should be a valid integer (got '16')" in issue


def test_unknown_key_with_did_you_mean(write, MINIMAL: str) -> None:
    [issue] = issues_of(write("r.yaml", MINIMAL + "optimizer:\n  lrr: 0.1\n"))
    assert issue.endswith("r.yaml:7:3: optimizer.lrr: unknown key 'lrr'; did you mean 'lr'?")


def test_unknown_section_with_did_you_mean(write, MINIMAL: str) -> None:
    [issue] = issues_of(write("r.yaml", MINIMAL + "trainig:\n  epochs: 1\n"))
    assert "trainig: unknown key 'trainig'; did you mean 'training'?" in issue


def test_missing_required_field_points_at_its_section(write) -> None:
    [issue] = issues_of(write("r.yaml", "data:\n  sources: [{path: a.json}]\nmodel:\n  dtype: float32\n"))
    assert issue.endswith("r.yaml:3:1: model.name_or_path: required key is missing")


def test_missing_required_section(write) -> None:
    [issue] = issues_of(write("r.yaml", "data:\n  sources: [{path: a.json}]\n"))
    assert issue.endswith("r.yaml:1:1: model: required key is missing")


def test_out_of_range_number(write, MINIMAL: str) -> None:
    [issue] = issues_of(write("r.yaml", MINIMAL + "serving:\n  port: 70000\n"))
    assert "serving.port: input should be less than or equal to 65535 (got 70000)" in issue


def test_enum_with_did_you_mean(write, MINIMAL: str) -> None:
    [issue] = issues_of(write("r.yaml", MINIMAL + "quantization:\n  mode: 4bits\n"))
    assert "quantization.mode: input should be 'none', '4bit' or '8bit' (got '4bits'); did you mean '4bit'?" in issue


def test_union_errors_are_one_line(write, MINIMAL: str) -> None:
    [issue] = issues_of(write("r.yaml", MINIMAL + "lora:\n  target_modules: 5\n"))
    assert "lora.target_modules: input should be 'all-linear'; or input should be a valid list (got 5)" in issue


def test_all_errors_at_once_in_file_order(write, MINIMAL: str) -> None:
    issues = issues_of(write("r.yaml", MINIMAL + "lora:\n  r: -1\n  alpha: x\nserving:\n  port: 0\nbogus: 1\n"))
    assert [i.split(": ")[1] for i in issues] == ["lora.r", "lora.alpha", "serving.port", "bogus"]


def test_duplicate_key(write, MINIMAL: str) -> None:
    [issue] = issues_of(write("r.yaml", MINIMAL + "lora: {r: 1}\nlora: {r: 2}\n"))
    assert ":7:1: lora: duplicate key 'lora'" in issue


def test_object_tags_are_refused(write, MINIMAL: str) -> None:
    [issue] = issues_of(write("r.yaml", MINIMAL + "run:\n  name: !!python/object/apply:os.system ['echo hi']\n"))
    assert "unsupported YAML tag" in issue


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes(b"model:\n  name_or_path: caf\xe9\n")
    [issue] = issues_of(path)
    assert issue.endswith("r.yaml:2:20: <recipe>: not UTF-8 text (byte 0xe9)")


def test_empty_file(write) -> None:
    [issue] = issues_of(write("r.yaml", "# only a comment\n"))
    assert issue.endswith("r.yaml:1:1: <recipe>: recipe is empty")


def test_top_level_list(write) -> None:
    [issue] = issues_of(write("r.yaml", "- a\n- b\n"))
    assert "a recipe is a mapping of sections, got a list" in issue


def test_ten_megabyte_file_is_refused_quickly(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("run:\n  description: '" + "x" * 10_000_000 + "'\n")
    [issue] = issues_of(path)
    assert "file is 10.0 MB; recipes are limited to 1024 KiB" in issue


def test_alias_bomb_is_bounded(write) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]"
              for i in range(1, 9)]
    [issue] = issues_of(write("r.yaml", "\n".join(lines) + "\n"))
    assert "runaway aliases" in issue


def test_missing_file(tmp_path: Path) -> None:
    [issue] = issues_of(tmp_path / "nope.yaml")
    assert issue.endswith("nope.yaml:1:1: <recipe>: no such recipe file")
