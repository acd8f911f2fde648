"""ScientificPaper: validation of raw records, field aliases, and the text views the steps use."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from forge.data.papers import ScientificPaper, body_text, heading_matches, paper_text, validation_reason


def test_aliases_map_onto_fields_and_unknown_keys_go_to_metadata() -> None:
    record = {"pmid": 12345, "title": "T", "summary": "An abstract.", "text": "Body.", "publication_year": "2019",
              "venue": "J", "score": 0.7, "gold_genes": ["BRCA1", {"symbol": "TP53", "aliases": ["p53"]}],
              "authors": "Smith J; Lee K", "license": "CC-BY"}
    paper = ScientificPaper.from_record(record, "fallback")
    assert paper.id == "12345"  # a numeric id becomes a string
    assert (paper.abstract, paper.full_text, paper.year, paper.journal) == ("An abstract.", "Body.", 2019, "J")
    assert paper.quality_score == 0.7
    assert paper.gene_symbols == ["BRCA1", "TP53"] and paper.genes[1].aliases == ("p53",)
    assert paper.authors == ("Smith J", "Lee K")
    assert paper.metadata == {"license": "CC-BY"}


def test_sections_from_a_mapping_or_bare_strings() -> None:
    paper = ScientificPaper.from_record({"sections": {"Methods": "We did.", "Results": "It worked."}}, "s")
    assert [(s.heading, s.text) for s in paper.sections] == [("Methods", "We did."), ("Results", "It worked.")]
    paper = ScientificPaper.from_record({"sections": ["Untitled text.", {"heading": "H", "text": "t"}]}, "s")
    assert [(s.heading, s.text) for s in paper.sections] == [("", "Untitled text."), ("H", "t")]


def test_missing_id_takes_the_default() -> None:
    assert ScientificPaper.from_record({"title": "T"}, "file-3").id == "file-3"


@pytest.mark.parametrize(("record", "reason"), [
    ({"id": "x"}, "no text"),
    ({"id": "x", "title": "  ", "abstract": "\n", "sections": [{"heading": "", "text": " "}]}, "no text"),
    ({"id": "x", "title": "T", "year": 1200}, "year: Input should be greater than or equal to 1800"),
    ({"id": "x", "title": "T", "quality_score": 1.5}, "quality_score: Input should be less than or equal to 1"),
    ({"id": "x", "title": "T", "genes": ["BRCA 1"]}, "genes.0.symbol: gene symbol 'BRCA 1' is not a symbol"),
    ({"id": " padded", "title": "T"}, "id: String should match pattern"),
    ({"id": "x", "title": "T", "sections": [{"heading": "H", "body": "b"}]}, "sections.0.body: Extra inputs are not permitted"),
])
def test_bad_records_are_refused_with_a_reason_that_names_the_field(record: dict, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ScientificPaper.from_record(record, "default")
    assert reason in validation_reason(caught.value)
    assert "\n" not in validation_reason(caught.value)


def test_a_record_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError, match="expected an object, got list"):
        ScientificPaper.from_record([1, 2], "x")  # type: ignore[arg-type]


def test_paper_is_immutable() -> None:
    paper = ScientificPaper.from_record({"title": "T"}, "x")
    with pytest.raises(ValidationError):
        paper.title = "changed"  # type: ignore[misc]


def test_paper_text_joins_fields_in_order_and_skips_empty_sections() -> None:
    paper = ScientificPaper.from_record({
        "title": "T", "abstract": "A.", "keywords": ["k1", "k2"], "full_text": "unused when there are sections",
        "sections": [{"heading": "Methods", "text": "M."}, {"heading": "Empty", "text": ""}, {"heading": "", "text": "X."}],
    }, "p")
    assert body_text(paper) == "Methods\nM.\n\nEmpty\n\nX."  # a heading without text is kept on its own
    assert paper_text(paper) == "T\n\nA.\n\nMethods\nM.\n\nEmpty\n\nX."
    assert paper_text(paper, ["keywords", "title"]) == "Keywords: k1, k2\n\nT"
    assert paper_text(paper, ["full_text"]) == "unused when there are sections"
    assert paper_text(paper, ["sections", "full_text"]) == body_text(paper)  # the body appears once
    with pytest.raises(ValueError, match="unknown paper field 'authors'"):
        paper_text(paper, ["authors"])


def test_full_text_stands_in_for_missing_sections() -> None:
    paper = ScientificPaper.from_record({"title": "T", "full_text": "Body."}, "p")
    assert paper_text(paper) == "T\n\nBody."


@pytest.mark.parametrize(("heading", "patterns", "how", "expected"), [
    ("References", ["reference"], "contains", True),
    ("5. References:", ["references"], "exact", True),
    ("IV) Methods", ["methods"], "exact", True),
    ("Materials and Methods", ["methods"], "exact", False),
    ("Materials and Methods", ["methods"], "contains", True),
    ("Supplementary Table 2", [r"^supp\w*\s+table"], "regex", True),
    ("Results", [], "contains", False),
])
def test_heading_matches(heading: str, patterns: list[str], how: str, expected: bool) -> None:
    assert heading_matches(heading, patterns, how) is expected
