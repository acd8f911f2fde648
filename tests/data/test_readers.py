"""Readers: every source format into validated papers; bad records counted with where and why, skipped or
fatal as `data.on_error` says."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_support import write_json
from forge.data.errors import DataError
from forge.data.readers import parse_markdown_paper, parse_text_paper, read_sources
from forge.recipe.schema import DataSource

GOOD = [{"id": "a", "title": "BRCA1 in breast cancer", "abstract": "BRCA1 [1] is mutated.", "genes": ["BRCA1"]},
        {"id": "b", "title": "TP53 in glioma", "sections": [{"heading": "Results", "text": "TP53 rose."}]}]


def read(*sources: DataSource, **kwargs) -> object:
    return read_sources(list(sources), **kwargs)


def test_demo_json_list_and_papers_object_read_the_same(tmp_path: Path) -> None:
    as_list = read(DataSource(path=str(write_json(tmp_path / "list.json", GOOD))))
    as_object = read(DataSource(path=str(write_json(tmp_path / "obj.json", {"description": "d", "papers": GOOD}))))
    assert [p.id for p in as_list.papers] == [p.id for p in as_object.papers] == ["a", "b"]
    assert as_list.papers == as_object.papers and as_list.bad == []
    assert as_list.papers[0].gene_symbols == ["BRCA1"]
    assert as_list.papers[1].sections[0].text == "TP53 rose."


def test_a_list_of_strings_is_a_corpus_of_full_texts(tmp_path: Path) -> None:
    result = read(DataSource(path=str(write_json(tmp_path / "texts.json", ["First paper.", "Second paper."]))))
    assert [(p.id, p.full_text) for p in result.papers] == [("texts-0", "First paper."), ("texts-1", "Second paper.")]


def test_jsonl_with_blank_lines_and_default_ids(tmp_path: Path) -> None:
    path = tmp_path / "papers.jsonl"
    path.write_text(json.dumps(GOOD[0]) + "\n\n" + json.dumps({"title": "No id here"}) + "\n", encoding="utf-8")
    result = read(DataSource(path=str(path)))
    assert [p.id for p in result.papers] == ["a", "papers-3"]  # a record without id is named by its line


def test_bad_records_are_counted_with_position_and_reason(tmp_path: Path) -> None:
    records = [GOOD[0], {"id": "empty", "title": " "}, 42, {"id": "a", "title": "Same id again"},
               {"id": "y", "title": "T", "year": "soon"}, GOOD[1]]
    path = write_json(tmp_path / "mixed.json", records)
    result = read(DataSource(path=str(path)))
    assert [p.id for p in result.papers] == ["a", "b"]
    assert [(b.where, b.reason.split(":")[0]) for b in result.bad] == [
        ("record 1", "no text"), ("record 2", "expected an object or a string, got int"),
        ("record 3", "duplicate id 'a' (first at " + str(path) + " record 0)"), ("record 4", "year")]
    assert all(b.source == str(path) for b in result.bad)
    assert str(result.bad[0]) == f"{path}: record 1: no text: title, abstract, sections and full_text are all empty"
    assert sum(result.dropped_by_reason().values()) == 4


def test_invalid_json_lines_are_bad_records_with_their_line_number(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(GOOD[0]) + "\n{not json\n" + json.dumps(GOOD[1]) + "\n", encoding="utf-8")
    result = read(DataSource(path=str(path)))
    assert [p.id for p in result.papers] == ["a", "b"]
    assert [(b.where, b.reason.startswith("invalid JSON")) for b in result.bad] == [("line 2", True)]


def test_unreadable_files_are_one_bad_record_each(tmp_path: Path) -> None:
    (tmp_path / "latin1.json").write_bytes('[{"title": "caf\u00e9"}]'.encode("latin-1"))
    (tmp_path / "truncated.json").write_text('[{"title": "x"', encoding="utf-8")
    (tmp_path / "scalar.json").write_text('"just a string"', encoding="utf-8")
    result = read(DataSource(path=str(tmp_path)))
    assert result.papers == []
    reasons = {Path(b.source).name: (b.where, b.reason) for b in result.bad}
    assert reasons["latin1.json"][0] == "file" and reasons["latin1.json"][1].startswith("not UTF-8 text (byte 0xe9")
    assert reasons["truncated.json"][1].startswith("invalid JSON")
    assert reasons["scalar.json"][1] == "expected a JSON list of papers or an object with a 'papers' list"


def test_on_error_fail_names_the_file_and_record(tmp_path: Path) -> None:
    path = write_json(tmp_path / "mixed.json", [GOOD[0], {"id": "empty"}])
    with pytest.raises(DataError) as caught:
        read(DataSource(path=str(path)), on_error="fail")
    assert caught.value.message == f"bad record: {path}: record 1: no text: title, abstract, sections and full_text are all empty"
    assert "on_error: skip" in caught.value.hint


def test_folder_reads_every_format_in_sorted_order_and_skips_hidden_files(tmp_path: Path) -> None:
    write_json(tmp_path / "b.json", [GOOD[1]])
    write_json(tmp_path / "a" / "one.json", {"papers": [GOOD[0]]})
    (tmp_path / "c.jsonl").write_text(json.dumps({"id": "c", "title": "EGFR"}) + "\n", encoding="utf-8")
    (tmp_path / "d.md").write_text("# KRAS in lung cancer\n\n## Results\nKRAS rose.\n", encoding="utf-8")
    (tmp_path / "e.txt").write_text("MYC in lymphoma\n\nAbstract: MYC is amplified.\n\nBody text.", encoding="utf-8")
    write_json(tmp_path / ".hidden" / "x.json", [{"id": "hidden", "title": "no"}])
    (tmp_path / "notes.csv").write_text("id,title\n", encoding="utf-8")
    result = read(DataSource(path=str(tmp_path)))
    assert [p.id for p in result.papers] == ["a", "b", "c", "d", "e"]
    assert [Path(f).name for f in result.files] == ["one.json", "b.json", "c.jsonl", "d.md", "e.txt"]
    md, txt = result.papers[3], result.papers[4]
    assert (md.title, md.sections[0].heading, md.sections[0].text) == ("KRAS in lung cancer", "Results", "KRAS rose.")
    assert (txt.title, txt.abstract, txt.full_text) == ("MYC in lymphoma", "MYC is amplified.", "Body text.")


def test_folder_format_filter_and_empty_folder(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", [GOOD[0]])
    (tmp_path / "b.md").write_text("# Title\n\ntext\n", encoding="utf-8")
    assert [p.id for p in read(DataSource(path=str(tmp_path), format="markdown")).papers] == ["b"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no paper files"):
        read(DataSource(path=str(tmp_path / "empty")))


def test_missing_source_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read(DataSource(path=str(tmp_path / "nope.json")))


def test_format_is_sniffed_for_unknown_suffixes(tmp_path: Path) -> None:
    (tmp_path / "list.data").write_text(json.dumps(GOOD), encoding="utf-8")
    (tmp_path / "lines.data").write_text("\n".join(json.dumps(r) for r in GOOD), encoding="utf-8")
    (tmp_path / "pretty.data").write_text(json.dumps({"papers": GOOD}, indent=2), encoding="utf-8")
    for name in ("list.data", "lines.data", "pretty.data"):
        assert [p.id for p in read(DataSource(path=str(tmp_path / name))).papers] == ["a", "b"], name
    (tmp_path / "prose.data").write_text("Just words.", encoding="utf-8")
    with pytest.raises(DataError, match="cannot tell the format"):
        read(DataSource(path=str(tmp_path / "prose.data")))


def test_max_papers_stops_after_that_many_good_papers(tmp_path: Path) -> None:
    records = [{"id": "bad"}] + [{"id": f"p{i}", "title": f"T{i}"} for i in range(5)]
    result = read(DataSource(path=str(write_json(tmp_path / "p.json", records))), max_papers=3)
    assert [p.id for p in result.papers] == ["p0", "p1", "p2"] and len(result.bad) == 1


def test_hugging_face_dataset_saved_to_disk(tmp_path: Path) -> None:
    import datasets

    rows = {"paper_id": ["h1", "h2", "h3"], "title": ["BRCA1", "TP53", ""], "abstract": ["A1.", "A2.", ""],
            "source": ["x", "y", "z"]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "single"))
    result = read(DataSource(path=str(tmp_path / "single")))  # found by its dataset files
    assert [p.id for p in result.papers] == ["h1", "h2"]
    assert result.papers[0].metadata == {"source": "x"}
    assert [(b.where, b.reason.split(":")[0]) for b in result.bad] == [("record 2", "no text")]

    splits = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"title": ["T1"]}),
                                   "test": datasets.Dataset.from_dict({"title": ["T2", "T3"]})})
    splits.save_to_disk(str(tmp_path / "dict"))
    result = read(DataSource(path=str(tmp_path / "dict"), format="hf_disk", hf_split="test"))
    assert [(p.id, p.title) for p in result.papers] == [("dict-0", "T2"), ("dict-1", "T3")]
    with pytest.raises(DataError, match="has no split 'validation'"):
        read(DataSource(path=str(tmp_path / "dict"), hf_split="validation"))


def test_plain_text_paper_layouts() -> None:
    assert parse_text_paper("Title\n\nAbstract: Short.\n\nBody one.\n\nBody two.") == {
        "title": "Title", "abstract": "Short.", "full_text": "Body one.\n\nBody two."}
    # A lone "Abstract" line: the next paragraph is the abstract, and the title's second line is body.
    assert parse_text_paper("Title\nsubtitle\n\nABSTRACT\n\nThe abstract.\n\nBody.") == {
        "title": "Title", "abstract": "The abstract.", "full_text": "subtitle\n\nBody."}
    assert parse_text_paper("Title\n\nAbstraction is a word.") == {"title": "Title", "full_text": "Abstraction is a word."}
    assert parse_text_paper("  \n\n ") == {}


def test_markdown_paper_with_front_matter_fences_and_text_before_the_title() -> None:
    record = parse_markdown_paper(
        "---\nid: md-1\ngenes: [BRCA1]\nyear: 2020\n---\nA preamble line.\n\n# The Title\n\n## Abstract\n"
        "BRCA1 matters.\n\n## Methods\n```\n# not a heading\n```\n\n## Results\n\n## Discussion\nDone.\n")
    assert record["id"] == "md-1" and record["genes"] == ["BRCA1"] and record["year"] == 2020
    assert record["title"] == "The Title" and record["abstract"] == "BRCA1 matters."
    assert record["sections"] == [{"heading": "", "text": "A preamble line."},
                                  {"heading": "Methods", "text": "```\n# not a heading\n```"},
                                  {"heading": "Results", "text": ""}, {"heading": "Discussion", "text": "Done."}]
