"""Paper files the reader tests build: PDFs drawn with fpdf2 (one column, two columns, an image-only page)
and the hostile or broken XML cases. The well-formed XML fixtures are written by hand under fixtures/papers/."""
from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "papers"


def _pdf():
    from fpdf import FPDF

    pdf = FPDF(format="A4", unit="pt")
    pdf.set_auto_page_break(False)
    pdf.add_page()
    return pdf


def _lines(pdf, x: float, y: float, lines: list[str], size: float = 10, style: str = "",
           leading: float = 13) -> float:
    pdf.set_font("Helvetica", style, size)
    for line in lines:
        pdf.text(x, y, line)
        y += leading
    return y


def one_column_pdf(path: Path) -> Path:
    """A one-column paper: a large title, authors, an Abstract heading, numbered bold headings, a word
    hyphenated at a line end, a page number, then References (which must be cut)."""
    pdf = _pdf()
    y = _lines(pdf, 60, 80, ["CDKN2A deletion in melanoma cell lines"], size=18, style="B", leading=24)
    y = _lines(pdf, 60, y + 4, ["Ada Okafor, Per Lindqvist"], size=10)
    y = _lines(pdf, 60, y + 14, ["Abstract"], size=11, style="B")
    y = _lines(pdf, 60, y, ["We report that CDKN2A is deleted in most melanoma cell lines and that",
                            "its loss predicts a poor response."])
    y = _lines(pdf, 60, y + 8, ["Keywords: CDKN2A; melanoma"])
    y = _lines(pdf, 60, y + 14, ["1 Introduction"], size=11, style="B")
    y = _lines(pdf, 60, y, ["The tumour suppressor CDKN2A is often lost. Its hyphen-",
                            "ated name is split here on purpose, and BRCA1-",
                            "associated risk keeps its hyphen."])
    y = _lines(pdf, 60, y + 14, ["2 Methods"], size=11, style="B")
    y = _lines(pdf, 60, y, ["We sequenced forty cell lines."])
    _lines(pdf, 290, 800, ["1"], size=9)  # a page number
    pdf.add_page()
    y = _lines(pdf, 60, 80, ["3 Results"], size=11, style="B")
    y = _lines(pdf, 60, y, ["CDKN2A was deleted in thirty lines."])
    y = _lines(pdf, 60, y + 14, ["References"], size=11, style="B")
    _lines(pdf, 60, y, ["1. Smith J. A cited paper that must not be read. 2001."])
    pdf.output(str(path))
    return path


def two_column_pdf(path: Path) -> Path:
    """A two-column page under a full-width title: the left column's text must come before the right's,
    although their lines sit side by side."""
    pdf = _pdf()
    _lines(pdf, 60, 70, ["Two columns of KRAS biology"], size=16, style="B")
    left = ["LEFT one: KRAS is mutated in", "LEFT two: pancreatic cancer and", "LEFT three: in lung cancer.",
            "LEFT four: we studied both."]
    right = ["RIGHT one: mutant KRAS binds", "RIGHT two: GTP and signals to", "RIGHT three: RAF and MEK.",
             "RIGHT four: inhibitors help."]
    _lines(pdf, 60, 130, ["Introduction"], size=11, style="B")
    _lines(pdf, 60, 150, left)
    _lines(pdf, 320, 150, right)
    pdf.output(str(path))
    return path


def running_header_pdf(path: Path) -> Path:
    """Three pages under the same running header (with the page's number in it) and footer."""
    pdf = _pdf()
    for page in range(1, 4):
        if page > 1:
            pdf.add_page()
        _lines(pdf, 60, 40, [f"Journal of Test Genomics 12 (2026) {100 + page}"], size=8)
        y = 90
        if page == 1:
            y = _lines(pdf, 60, 90, ["PTEN loss across three pages"], size=16, style="B", leading=24)
        y = _lines(pdf, 60, y + 10, [f"Part {page}"], size=11, style="B")
        _lines(pdf, 60, y, [f"PTEN text of page {page}."])
        _lines(pdf, 60, 810, ["Downloaded from the test archive"], size=8)
    pdf.output(str(path))
    return path


def image_only_pdf(path: Path) -> Path:
    """A scanned page: one raster image, no text layer."""
    from PIL import Image, ImageDraw

    picture = path.with_suffix(".png")
    image = Image.new("RGB", (400, 200), "white")
    ImageDraw.Draw(image).text((10, 10), "Text drawn into pixels is not a text layer", fill="black")
    image.save(picture)
    pdf = _pdf()
    pdf.image(str(picture), x=40, y=40, w=400)
    pdf.output(str(path))
    picture.unlink()
    return path


ENTITY_BOMB = """<?xml version="1.0"?>
<!DOCTYPE article [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<article><front><article-meta><title-group><article-title>&lol9;</article-title></title-group></article-meta></front></article>
"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE PubmedArticleSet [
 <!ENTITY secret SYSTEM "http://192.0.2.1/secret.txt">
]>
<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>1</PMID><Article>
<ArticleTitle>&secret;</ArticleTitle></Article></MedlineCitation></PubmedArticle></PubmedArticleSet>
"""
