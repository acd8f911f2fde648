"""The readers of researchers' own papers: JATS, PubMed XML (plain and gzip), BioC XML and JSON, PDF. Each
reader's field mapping on fixtures written to the public specifications, and each bad case: truncated XML,
an entity bomb, an external entity, an image-only PDF, an empty file, a wrong extension, a bad annotation."""
from __future__ import annotations

import gzip
import json
import shutil
import socket
import time
from pathlib import Path

import pytest

from paper_files import (ENTITY_BOMB, EXTERNAL_ENTITY, FIXTURES, image_only_pdf, one_column_pdf,
                         running_header_pdf, two_column_pdf)
from forge.data.detect import detect_format
from forge.data.readers import ReadResult, read_sources
from forge.data.safe_xml import iter_elements
from forge.recipe.schema import DataSource


def read(path: Path, **source: object) -> ReadResult:
    return read_sources([DataSource(path=str(path), **source)])


def by_id(result: ReadResult) -> dict:
    return {p.id: p for p in result.papers}


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt fails the test: no reader may reach the network (external entities, DTDs)."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a reader tried to connect: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# ------------------------------------------------------------------------------------------------- JATS
def test_jats_article_fields() -> None:
    result = read(FIXTURES / "jats_article.xml")
    assert result.bad == [] and dict(result.formats) == {"jats": 1}
    paper = result.papers[0]
    assert paper.id == "31000001"
    assert paper.metadata == {"pmid": "31000001", "pmcid": "PMC6500001"}
    assert paper.title == "Loss of STK11 drives ROS1 expression in lung adenocarcinoma"
    assert paper.abstract == ("Background: The role of STK11 in lung adenocarcinoma is unclear.\n"
                              "Results: Knockout of STK11 raised ROS1 expression (p = 0.001).")
    assert [(s.heading, s.text) for s in paper.sections] == [
        ("", "An opening paragraph before the first section."),
        ("Introduction", "STK11 is a tumour suppressor [1]."),
        ("Methods / Cell culture", "A549 cells were grown in DMEM.\nMedium was changed daily."),
        ("Figure 1", "Growth curves. Cells lacking STK11 grew faster."),
        ("Methods / Statistics", "We used a test."),
        ("Results", "ROS1 rose threefold."),
        ("Table 1", "Expression by genotype."),
    ]
    assert paper.keywords == ("STK11", "lung adenocarcinoma")
    assert (paper.year, paper.journal, paper.doi) == (2019, "Genome Research Letters", "10.1000/grl.2019.001")
    assert paper.authors == ("Ada Okafor", "Per Lindqvist")  # the editor is not an author
    text = paper.model_dump_json()
    assert "must not be read" not in text and "core facility" not in text and "graphical" not in text


def test_jats_captions_can_be_dropped() -> None:
    paper = read(FIXTURES / "jats_article.xml", captions=False).papers[0]
    assert [s.heading for s in paper.sections] == ["", "Introduction", "Methods / Cell culture",
                                                   "Methods / Statistics", "Results"]
    assert "Growth curves" not in paper.model_dump_json()


def test_pmc_articleset_holds_many_articles() -> None:
    result = read(FIXTURES / "pmc_articleset.xml")
    assert [p.id for p in result.papers] == ["PMC7000001", "10.1000/osj.2022.2"]
    first, second = result.papers
    assert (first.journal, first.year, first.sections[0].heading) == ("Cell Genomics Notes", 2021, "Results")
    assert (second.journal, second.doi, second.abstract) == ("Old Style Journal", "10.1000/osj.2022.2",
                                                            "TP53 is often mutated in glioma.")


def test_truncated_jats_set_keeps_the_articles_before_the_break(tmp_path: Path) -> None:
    text = (FIXTURES / "pmc_articleset.xml").read_text()
    cut = tmp_path / "cut.xml"
    cut.write_text(text[:text.index("TP53 in glioma")])
    result = read(cut)
    assert [p.id for p in result.papers] == ["PMC7000001"]
    [bad] = result.bad
    assert bad.source == str(cut) and bad.where.startswith("line 20, column")
    assert "truncated" in bad.reason or "unclosed" in bad.reason


# ----------------------------------------------------------------------------------------------- PubMed
def test_pubmed_citations_fields() -> None:
    result = read(FIXTURES / "pubmed.xml")
    assert result.bad == [] and [p.id for p in result.papers] == ["32000001", "9000002"]  # DeleteCitation is no paper
    egfr, kras = result.papers
    assert egfr.title == "EGFR mutations predict response to gefitinib."
    assert egfr.abstract == "BACKGROUND: EGFR is mutated in lung cancer.\nRESULTS: Patients with EGFR L858R responded."
    assert (egfr.year, egfr.journal, egfr.doi) == (2020, "Journal of Cancer Genomics", "10.1000/jcg.2020.7")
    assert egfr.keywords == ("EGFR", "gefitinib")
    assert egfr.metadata == {"mesh_terms": ["Carcinoma, Non-Small-Cell Lung/genetics", "ErbB Receptors"],
                             "pmcid": "PMC7100001"}
    assert egfr.authors == ("Yui Tanaka", "Lung Genomics Consortium")
    assert (kras.year, kras.doi, kras.abstract) == (1998, "10.1000/hgq.1998.2",
                                                    "KRAS is activated in most pancreatic tumours.")


def test_pubmed_gzip_reads_like_plain(tmp_path: Path) -> None:
    packed = tmp_path / "pubmed25n0001.xml.gz"
    packed.write_bytes(gzip.compress((FIXTURES / "pubmed.xml").read_bytes()))
    assert detect_format(packed) == ("pubmed_xml", "")
    assert read(packed).papers == read(FIXTURES / "pubmed.xml").papers
    data = (FIXTURES / "pubmed.xml").read_bytes()
    members = tmp_path / "members.xml.gz"  # gzip files may be several members end to end (as pigz and cat make)
    members.write_bytes(gzip.compress(data[:1000]) + gzip.compress(data[1000:]))
    assert read(members).papers == read(FIXTURES / "pubmed.xml").papers


def test_truncated_pubmed_and_gzip_keep_what_came_before(tmp_path: Path) -> None:
    data = (FIXTURES / "pubmed.xml").read_bytes()
    cut_at = data.index(b"<PMID Version=\"1\">9000002")
    plain = tmp_path / "cut.xml"
    plain.write_bytes(data[:cut_at])
    packed = tmp_path / "cut.xml.gz"
    packed.write_bytes(gzip.compress(data)[:-60])  # a download stopped short, in the second citation
    for path in (plain, packed):
        result = read(path)
        assert [p.id for p in result.papers] == ["32000001"], path
        assert len(result.bad) == 1 and result.bad[0].source == str(path)
    assert read(packed).bad[0].reason.startswith("cannot read")


def test_streaming_clears_each_citation_once_read(tmp_path: Path) -> None:
    citation = (FIXTURES / "pubmed.xml").read_text().split("<PubmedArticle>")[1].split("</PubmedArticle>")[0]
    path = tmp_path / "many.xml"
    path.write_text("<PubmedArticleSet>" + "".join(
        f"<PubmedArticle>{citation.replace('32000001', str(i))}</PubmedArticle>" for i in range(50))
        + "</PubmedArticleSet>")
    seen = [element for element, _ in iter_elements(path, {"PubmedArticle"})]
    assert len(seen) == 50
    assert all(len(element) == 0 for element in seen)  # nothing of a finished citation stays in memory


# ------------------------------------------------------------------------------------------------- BioC
def test_bioc_xml_passages_genes_and_a_bad_offset() -> None:
    result = read(FIXTURES / "bioc_collection.xml")
    assert result.bad == [] and [p.id for p in result.papers] == ["33000001", "33000002"]
    melanoma, methods = result.papers
    assert melanoma.title == "BRAF V600E and MEK inhibition in melanoma"
    assert melanoma.abstract.startswith("Mutant B-Raf activates MAP2K1.")
    assert [(g.symbol, g.aliases) for g in melanoma.genes] == [("BRAF", ("B-Raf",)), ("MEK", ("MAP2K1",))]
    assert melanoma.metadata["gene_ids"] == {"BRAF": "673", "MEK": "5604"}
    [warning] = result.warnings  # annotation 5 says BRAF where the text has something else: dropped, paper kept
    assert warning.source.endswith("bioc_collection.xml")
    assert warning.where == "document 1 (33000001), annotation 5"
    assert "'BRAF' does not match offsets 84-89" in warning.reason
    assert [(s.heading, s.text) for s in methods.sections] == [("Methods", "We sequenced KRAS exons.")]
    assert methods.gene_symbols == ["KRAS"] and "gene_ids" not in methods.metadata


def test_pubtator_bioc_json() -> None:
    result = read(FIXTURES / "pubtator.json")
    assert dict(result.formats) == {"bioc": 1} and result.bad == [] and result.warnings == []
    paper = result.papers[0]
    assert (paper.id, paper.title, paper.year, paper.journal) == ("34000001", "TP53 loss in glioma", 2021,
                                                                  "Nat Gene Notes")
    assert paper.authors == ("Rossi M", "Chen L")
    assert [(g.symbol, g.aliases) for g in paper.genes] == [("TP53", ("p53",)), ("IDH1", ())]
    assert paper.metadata["gene_ids"] == {"TP53": "7157", "IDH1": "3417"}


def test_bioc_json_collection_and_one_document_per_line(tmp_path: Path) -> None:
    document = {"id": "d1", "infons": {}, "relations": [], "passages": [
        {"offset": 0, "infons": {"type": "title"}, "text": "MYC in lymphoma", "sentences": [], "relations": [],
         "annotations": [{"id": "a", "infons": {"type": "Gene", "NCBI Gene": "4609"}, "text": "MYC",
                          "locations": [{"offset": 0, "length": 3}]},
                         {"id": "b", "infons": {"type": "Gene"}, "text": "MYC",
                          "locations": [{"offset": 40, "length": 3}]}]}]}
    collection = tmp_path / "collection.json"
    collection.write_text(json.dumps({"source": "test", "date": "", "key": "", "infons": {},
                                      "documents": [document]}))
    lines = tmp_path / "lines.json"
    lines.write_text(json.dumps(document) + "\n" + json.dumps({**document, "id": "d2"}) + "\n{broken\n")
    one = read(collection)
    assert [(p.id, p.gene_symbols, p.metadata) for p in one.papers] == [("d1", ["MYC"], {"gene_ids": {"MYC": "4609"}})]
    assert [w.where for w in one.warnings] == ["document 1 (d1), annotation b"]
    assert "fall outside the passage text" in one.warnings[0].reason
    many = read(lines)
    assert [p.id for p in many.papers] == ["d1", "d2"]
    assert [(b.where, b.reason.split(":")[0]) for b in many.bad] == [("line 3", "invalid JSON")]


# -------------------------------------------------------------------------------------------------- PDF
def test_pdf_one_column(tmp_path: Path) -> None:
    result = read(one_column_pdf(tmp_path / "cdkn2a.pdf"))
    assert result.bad == [] and dict(result.formats) == {"pdf": 1}
    paper = result.papers[0]
    assert (paper.id, paper.title) == ("cdkn2a", "CDKN2A deletion in melanoma cell lines")
    assert paper.abstract == ("We report that CDKN2A is deleted in most melanoma cell lines and that its loss "
                              "predicts a poor response.")  # the author line before the abstract is front matter
    assert paper.keywords == ("CDKN2A", "melanoma")
    assert [s.heading for s in paper.sections] == ["1 Introduction", "2 Methods", "3 Results"]
    intro = paper.sections[0].text
    assert "hyphenated name" in intro and "BRCA1-associated" in intro
    assert paper.sections[2].text == "CDKN2A was deleted in thirty lines."
    assert "must not be read" not in paper.model_dump_json()  # References and after are cut
    assert paper.metadata == {"pages": 2}


def test_pdf_two_columns_read_column_by_column(tmp_path: Path) -> None:
    paper = read(two_column_pdf(tmp_path / "kras.pdf")).papers[0]
    assert paper.title == "Two columns of KRAS biology"
    text = paper.sections[0].text
    order = [text.index(f"{side} {n}:") for side in ("LEFT", "RIGHT") for n in ("one", "two", "three", "four")]
    assert order == sorted(order)


def test_pdf_running_headers_and_footers_are_dropped(tmp_path: Path) -> None:
    paper = read(running_header_pdf(tmp_path / "pten.pdf")).papers[0]
    assert paper.title == "PTEN loss across three pages"
    assert [(s.heading, s.text) for s in paper.sections] == [
        ("Part 1", "PTEN text of page 1."), ("Part 2", "PTEN text of page 2."), ("Part 3", "PTEN text of page 3.")]


def test_image_only_pdf_is_a_bad_record(tmp_path: Path) -> None:
    path = image_only_pdf(tmp_path / "scan.pdf")
    result = read(path)
    assert result.papers == []
    [bad] = result.bad
    assert (bad.source, bad.where) == (str(path), "file") and bad.reason.startswith("no text layer")
    assert "OCR" in bad.reason


# --------------------------------------------------------------------------------- hostile and broken files
@pytest.mark.parametrize("text, name, fragment", [(ENTITY_BOMB, "bomb.xml", "entity declaration (lol)"),
                                                  (EXTERNAL_ENTITY, "external.xml", "entity declaration (secret)")])
def test_entity_bomb_and_external_entity_are_bad_records(tmp_path: Path, text: str, name: str,
                                                         fragment: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    started = time.perf_counter()
    result = read(path)
    assert time.perf_counter() - started < 5  # refused at the declaration, never expanded
    assert result.papers == []
    [bad] = result.bad
    assert bad.source == str(path) and fragment in bad.reason and "switched off" in bad.reason


def test_empty_files_are_bad_records_by_name(tmp_path: Path) -> None:
    for name in ("empty.xml", "empty.pdf", "empty.json"):
        (tmp_path / name).write_bytes(b"")
    shutil.copy(FIXTURES / "pubmed.xml", tmp_path / "good.xml")
    result = read(tmp_path)
    assert len(result.papers) == 2
    assert sorted((Path(b.source).name, b.reason) for b in result.bad) == [
        ("empty.json", "empty file"), ("empty.pdf", "empty file"), ("empty.xml", "empty file")]


def test_wrong_extensions(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "jats_article.xml", tmp_path / "article.txt")  # XML under a text name: read as JATS
    (tmp_path / "paper.pdf").write_text("Just a text file with the wrong name.")
    result = read(tmp_path)
    assert dict(result.formats) == {"jats": 1, "pdf": 1}
    assert [p.id for p in result.papers] == ["31000001"]
    [bad] = result.bad
    assert Path(bad.source).name == "paper.pdf" and bad.reason.startswith("not a PDF")
    forced = read(tmp_path, format="pdf")  # a folder read as PDFs skips the rest, saying so
    assert [Path(f).name for f in forced.files] == ["paper.pdf"]
    assert forced.skipped == [(str(tmp_path / "article.txt"), "not a pdf file (.pdf)")]


def test_folder_names_every_file_it_skips(tmp_path: Path) -> None:
    for name in ("jats_article.xml", "pubmed.xml", "pubtator.json"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    (tmp_path / "notes.docx").write_bytes(b"PK\x03\x04\x14\x00binary")
    (tmp_path / "odd.xml").write_text("<?xml version='1.0'?><catalog><item/></catalog>")
    (tmp_path / "c.jsonl").write_text(json.dumps({"id": "c", "title": "EGFR"}) + "\n")
    result = read(tmp_path)
    assert result.files_line() == ("read 4 files (1 jsonl, 1 jats, 1 pubmed_xml, 1 bioc); skipped 2: "
                                   "notes.docx (unknown format), odd.xml (unknown XML (root element <catalog>))")


def test_a_folder_with_nothing_readable_says_what_it_skipped(tmp_path: Path) -> None:
    from forge.data.errors import DataError

    (tmp_path / "notes.docx").write_bytes(b"PK\x03\x04 a word file")
    with pytest.raises(DataError, match=r"holds no paper files .*; skipped notes\.docx \(unknown format\)"):
        read(tmp_path)


def test_an_undeclared_named_entity_is_a_bad_record_with_its_place(tmp_path: Path) -> None:
    path = tmp_path / "nbsp.xml"
    path.write_text('<?xml version="1.0"?>\n<article><front><article-meta><title-group>'
                    '<article-title>A&nbsp;title</article-title></title-group></article-meta></front></article>\n')
    [bad] = read(path).bad
    assert bad.where == "line 2, column 60" and bad.reason.startswith("undefined entity")


def test_a_bad_bioc_document_is_one_bad_record(tmp_path: Path) -> None:
    text = (FIXTURES / "bioc_collection.xml").read_text()
    path = tmp_path / "one_bad.xml"
    path.write_text(text.replace("<offset>21</offset>", "<offset>x</offset>"))  # document 2's second passage
    result = read(path)
    assert [p.id for p in result.papers] == ["33000001"]
    [bad] = result.bad
    assert (bad.where, bad.reason) == ("document 2", "not a BioC document: passage 2 has no whole-number "
                                                     "<offset> (got 'x')")


def test_gzipped_bioc_json_lines_stream_and_a_cut_keeps_the_lines_before(tmp_path: Path) -> None:
    documents = json.loads((FIXTURES / "pubtator.json").read_text())["PubTator3"]
    lines = "".join(json.dumps({**documents[0], "id": f"d{i}"}) + "\n" for i in range(200)).encode()
    whole = tmp_path / "pubtator.jsonl.gz"
    whole.write_bytes(gzip.compress(lines))
    assert [p.id for p in read(whole).papers] == [f"d{i}" for i in range(200)]
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(lines)[:-100])
    result = read(cut)
    assert 0 < len(result.papers) < 200 and [p.id for p in result.papers] == [f"d{i}" for i in range(len(result.papers))]
    assert [(b.where, b.reason.split(":")[0]) for b in result.bad][-1] == ("file", "cannot read")
    assert "gzip stream ends early" in result.bad[-1].reason
