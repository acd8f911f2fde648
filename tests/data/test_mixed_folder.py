"""One folder of a researcher's papers in every format Forge reads (PDF, JATS, PubMed XML plain and gzip,
BioC XML and JSON, JSON Lines) plus a file it cannot read: `forge data preview` reads them all, names every
skipped file, bad record and dropped annotation with its file and place, exits 0; `forge run` trains on it."""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from paper_files import FIXTURES, image_only_pdf, one_column_pdf, two_column_pdf
from forge.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "data" / "high_quality_papers_demo.json"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    papers = tmp_path_factory.mktemp("papers")
    one_column_pdf(papers / "cdkn2a.pdf")
    two_column_pdf(papers / "kras.pdf")
    image_only_pdf(papers / "scan.pdf")
    for name in ("jats_article.xml", "pmc_articleset.xml", "bioc_collection.xml", "pubtator.json"):
        shutil.copy(FIXTURES / name, papers / name)
    shutil.copy(FIXTURES / "pubmed.xml", papers / "pubmed_a.xml")
    other = (FIXTURES / "pubmed.xml").read_bytes().replace(b"32000001", b"32000009").replace(b"9000002", b"9000008")
    (papers / "pubmed_b.xml.gz").write_bytes(gzip.compress(other))
    demo = json.loads(DEMO.read_text())
    records = demo["papers"] if isinstance(demo, dict) else demo
    (papers / "demo.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:20]) + "{not json\n")
    (papers / "notes.docx").write_bytes(b"PK\x03\x04 a word file")
    return papers


def test_preview_reads_every_format_and_names_what_it_did_not(folder: Path, model_dir: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    args = ["data", "preview", str(ROOT / "recipes" / "quickstart.yaml"), f"data.sources=[{{path: {folder}}}]",
            f"model.name_or_path={model_dir}", "-n", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[1] == "  read 32 papers, 2 bad records skipped"
    assert ("  read 10 files (3 pdf, 2 bioc, 2 jats, 2 pubmed_xml, 1 jsonl); "
            "skipped 1: notes.docx (unknown format)") in lines
    assert f"    {folder / 'demo.jsonl'}: line 21: invalid JSON: Expecting property name enclosed in double quotes" in lines
    assert any(line.startswith(f"    {folder / 'scan.pdf'}: file: no text layer") for line in lines)
    assert any(line.startswith(f"    {folder / 'bioc_collection.xml'}: document 1 (33000001), annotation 5: "
                               "gene annotation dropped") for line in lines)

    assert main([*args, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)["stats"]
    assert stats["files_by_format"] == {"pdf": 3, "bioc": 2, "jats": 2, "pubmed_xml": 2, "jsonl": 1}
    assert stats["skipped_files"] == [[str(folder / "notes.docx"), "unknown format"]]
    assert stats["papers_read"] == 32 and stats["bad_records"] == 2 and stats["warnings"] == 1


@pytest.mark.slow
def test_the_folder_trains(folder: Path, tiny_llama_dir: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", str(ROOT / "recipes" / "quickstart.yaml"), f"data.sources=[{{path: {folder}}}]",
                 f"model.name_or_path={tiny_llama_dir}", "lora.modules_to_save=[]",
                 f"run.output_dir={tmp_path}", "training.max_steps=2",
                 "evaluation.enabled=false", "tracking.enabled=false"])
    assert code == 0
    assert "skipped 1: notes.docx (unknown format)" in capsys.readouterr().out
    summary = json.loads((tmp_path / "quickstart" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 2
    data = summary["data"]
    assert data["files_by_format"]["pdf"] == 3 and data["bad_records"] == 2
    assert any(entry.startswith(f"{folder / 'scan.pdf'}: file: no text layer") for entry in data["bad_examples"])
    assert data["warning_examples"][0].startswith(f"{folder / 'bioc_collection.xml'}: document 1 (33000001)")
