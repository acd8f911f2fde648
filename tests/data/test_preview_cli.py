"""`forge data preview RECIPE` through the CLI's entry point (what the `forge` script calls): statistics
and examples of the demo corpus on stdout; bad data is exit code 2 and one line on stderr, no traceback."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from data_support import write_json, write_recipe
from forge.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_recipe(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Path:
    """The quickstart recipe with the genomics cleaning steps and chunking, on the demo tokenizer."""
    folder = tmp_path_factory.mktemp("preview")
    return write_recipe(folder / "preview.yaml", f"""
        extends: {ROOT / 'recipes' / 'quickstart.yaml'}
        preprocess:
          - step: strip_markup
          - step: remove_citations
          - step: normalize_unicode
          - step: normalize_genomics
          - step: normalize_whitespace
          - step: deduplicate
          - step: filter_quality
            min_score: 0.5
          - step: chunk
            overlap: 32
        model:
          name_or_path: {model_dir}
        """)


def test_preview_prints_statistics_and_examples(demo_recipe: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "preview", str(demo_recipe), "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Data preview: causal_lm examples from 1 source file(s)\n  read 400 papers, 0 bad records")
    rows = re.findall(r"^  (\w+) +(\d+) +(\d+) +[\d.]+  (.*)$", out, re.MULTILINE)
    assert [r[0] for r in rows] == ["strip_markup", "remove_citations", "normalize_unicode", "normalize_genomics",
                                    "normalize_whitespace", "deduplicate", "filter_quality", "chunk"]
    assert int(rows[0][1]) == 400
    for previous, row in zip(rows, rows[1:]):
        assert row[1] == previous[2]  # each step reads what the one before it wrote
    dedup, quality = rows[5], rows[6]
    assert int(dedup[1]) - int(dedup[2]) == sum(int(n) for n in re.findall(r"\d+", dedup[3])) > 0
    assert "low_quality" in quality[3] and "not_english" in quality[3]
    papers, chunks = map(int, re.search(r"after preprocessing: (\d+) papers in (\d+) chunks", out).groups())
    assert papers == int(rows[6][2]) and chunks == int(rows[7][2]) > papers
    split = dict((s, int(n)) for s, n in re.findall(r"(train|validation|test) (\d+) papers", out))
    assert sum(split.values()) == papers and split["validation"] == split["test"] == round(papers * 0.1)
    p50, p99, longest = map(int, re.search(r"tokens \(train\): p50 (\d+), p90 \d+, p99 (\d+), max (\d+)", out).groups())
    assert p50 <= p99 <= longest <= 256  # quickstart's max_seq_length: chunks fit it
    assert re.search(r"gene terms: \d+, [\d.]+ tokens each on average, \d+% single-token; most split: ", out)
    assert len(re.findall(r"^Example \d \(paper forge-demo-2026-\d{6}\):$", out, re.MULTILINE)) == 2
    example = out.split("\nExample 1 ", 1)[1].split("\nExample 2 ", 1)[0]
    # Every line of an example's text is barred, blank ones too (title and abstract are separate paragraphs).
    assert example.splitlines()[1] == "  text:" and "\n  |\n" in example
    assert all(line.startswith("  | ") or line == "  |" for line in example.splitlines()[2:] if line)


def test_preview_json(demo_recipe: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "preview", str(demo_recipe), "data.format=instruction", "data.max_papers=60",
                 "-n", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == "instruction" and len(data["examples"]) == 1
    assert set(data["examples"][0]) == {"prompt", "completion", "paper_id"}
    stats = data["stats"]
    assert stats["papers_read"] == 60 and stats["examples_by_split"]["train"] > 0
    assert stats["dropped_by_reason"]["filter_quality: low_quality"] > 0


def test_all_bad_records_with_on_error_fail_is_one_line_and_exit_2(tmp_path: Path, model_dir: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    corpus = write_json(tmp_path / "bad.json", [{"id": "x"}, {"id": "y", "year": 3000}])
    recipe = write_recipe(tmp_path / "bad.yaml", f"""
        data:
          sources: [{{path: bad.json}}]
          on_error: fail
        model: {{name_or_path: {model_dir}}}
        """)
    assert main(["data", "preview", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert err == (f"forge: bad record: {corpus}: record 0: no text: title, abstract, sections and full_text are all "
                   "empty; fix the record, or set data.on_error: skip (see docs/troubleshooting.md#data-errors)\n")


def test_all_bad_records_skipped_is_still_an_error(tmp_path: Path, model_dir: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    write_json(tmp_path / "bad.json", [{"id": "x"}, 7])
    recipe = write_recipe(tmp_path / "skip.yaml", f"""
        data: {{sources: [{{path: bad.json}}]}}
        model: {{name_or_path: {model_dir}}}
        """)
    assert main(["data", "preview", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"forge: no papers could be read from data.sources: {tmp_path / 'bad.json'}: record 0: no text")
    assert err.count("\n") == 1


@pytest.mark.parametrize("name, content, reason", [
    ("junk.md", bytes(range(128, 256)) * 8, "not UTF-8 text (byte 0x80 at offset 0): binary data?"),
    ("junk.jsonl", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "not UTF-8 text (byte 0x89 at offset 0): binary data?"),
    ("empty.md", b"", "empty file"), ("blank.txt", b"\n  \n\n", "empty file"), ("empty.jsonl", b"", "empty file")])
def test_binary_junk_and_empty_files_are_named(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str],
                                               name: str, content: bytes, reason: str) -> None:
    (tmp_path / name).write_bytes(content)
    recipe = write_recipe(tmp_path / "junk.yaml", f"""
        data: {{sources: [{{path: {name}}}]}}
        model: {{name_or_path: {model_dir}}}
        """)
    assert main(["data", "preview", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"forge: no papers could be read from data.sources: {tmp_path / name}: file: {reason}; ")
    assert err.count("\n") == 1


def test_missing_file_is_one_line_and_exit_2(tmp_path: Path, model_dir: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_recipe(tmp_path / "missing.yaml", f"""
        data: {{sources: [{{path: nowhere.json}}]}}
        model: {{name_or_path: {model_dir}}}
        """)
    assert main(["data", "preview", str(recipe)]) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"forge: data source {tmp_path / 'nowhere.json'} does not exist; "
                            "check data.sources[].path (relative to the recipe) "
                            "(see docs/troubleshooting.md#data-errors)\n")
    assert captured.out == ""


def test_json_preview_is_pure_json_on_stdout_even_when_the_model_is_built(tmp_path: Path) -> None:
    """The first use of forge:tiny-llama builds it (transformers may import DeepSpeed, which prints its
    accelerator probe); stdout must still be one JSON document."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "FORGE_CACHE": str(tmp_path / "cache")}
    env.pop("DS_ACCELERATOR", None)
    result = subprocess.run([sys.executable, "-m", "forge", "data", "preview", "recipes/quickstart.yaml",
                             "model.tiny.vocab_size=256", "model.tiny.hidden_size=16", "data.max_papers=30",
                             "-n", "1", "--json"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    preview = json.loads(result.stdout)
    assert preview["format"] == "causal_lm" and len(preview["examples"]) == 1
