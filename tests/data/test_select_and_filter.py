"""select_sections and filter_quality: which parts of a paper, and which papers, go on to training."""
from __future__ import annotations

from data_support import FILLER, long_paper, paper, run_step
from forge.data.quality import looks_english

SECTIONS = [{"heading": "Introduction", "text": "Intro."}, {"heading": "2. Methods", "text": "Methods."},
            {"heading": "Results", "text": ""}, {"heading": "Discussion", "text": "Discussion."},
            {"heading": "References", "text": "[1] Smith J. J Gen. 2020."},
            {"heading": "Acknowledgements", "text": "We thank."}]


def headings(papers: list) -> list[str]:
    return [s.heading for s in papers[0].sections]


def test_select_sections_by_default_drops_back_matter_and_empty_sections() -> None:
    out = run_step("select_sections", [paper("s", abstract="A.", sections=SECTIONS)]).papers
    assert headings(out) == ["Introduction", "2. Methods", "Discussion"]
    assert out[0].abstract == "A."


def test_select_sections_keep_list_and_exact_match() -> None:
    out = run_step("select_sections", [paper("s", sections=SECTIONS)], keep=["methods", "results"], match="exact",
                   drop_empty=False).papers
    assert headings(out) == ["2. Methods", "Results"]  # numbering is ignored by exact


def test_select_sections_regex_and_abstract_switch() -> None:
    out = run_step("select_sections", [paper("s", abstract="A.", sections=SECTIONS)], keep=[r"^(intro|disc)"],
                   match="regex", keep_abstract=False).papers
    assert headings(out) == ["Introduction", "Discussion"] and out[0].abstract == ""


def test_select_sections_drops_a_paper_left_with_nothing() -> None:
    record = paper("s", title="", sections=[{"heading": "References", "text": "[1] Smith."}])
    output = run_step("select_sections", [record])
    assert output.papers == [] and output.dropped == {"no_text": 1}


def test_language_check() -> None:
    english = FILLER.format(gene="TP53")
    german = ("Die Ergebnisse dieser Studie zeigen, dass die Expression von TP53 in den Tumorproben höher war "
              "als im gepaarten Normalgewebe, und dass diese Veränderung mit einer schlechten Prognose verbunden war.")
    # 20 words: 2 function words are the default 10% share, 1 is below it
    assert looks_english("the and " + "gene " * 18) and not looks_english("the " + "gene " * 19)
    assert looks_english(english) and not looks_english(german)
    assert looks_english("BRCA1 TP53 EGFR")  # too short to judge: the benefit of the doubt
    assert not looks_english("\u8fd9\u9879\u7814\u7a76\u8868\u660e TP53 \u5728\u80bf\u7624\u4e2d\u8868\u8fbe\u5347\u9ad8" * 3)


def test_filter_quality_reasons() -> None:
    good = long_paper("good", quality_score=0.9)
    low = long_paper("low", quality_score=0.2)
    unscored = long_paper("unscored")
    short = paper("short", abstract="TP53 is a gene.", quality_score=0.9)
    german = paper("german", abstract=" ".join(["Die Expression von TP53 war bei den Patienten deutlich erhöht."] * 8))
    output = run_step("filter_quality", [good, low, unscored, short, german], min_score=0.5)
    assert [p.id for p in output.papers] == ["good", "unscored"]
    assert output.dropped == {"low_quality": 1, "too_short": 1, "not_english": 1}


def test_filter_quality_missing_score_and_length_bounds() -> None:
    unscored = long_paper("unscored", sentences=3)  # 3 x 45 words + a 2-word title
    output = run_step("filter_quality", [unscored], min_score=0.5, missing_score="drop")
    assert output.papers == [] and output.dropped == {"no_quality_score": 1}
    words = len(f"Paper unscored {' '.join([FILLER.format(gene='BRCA1')] * 3)}".split())
    assert run_step("filter_quality", [unscored], min_words=words).papers == [unscored]
    assert run_step("filter_quality", [unscored], min_words=words + 1).dropped == {"too_short": 1}
    assert run_step("filter_quality", [unscored], max_words=words - 1).dropped == {"too_long": 1}
    assert run_step("filter_quality", [unscored], max_words=words).papers == [unscored]


def test_filter_quality_without_language_check_keeps_other_languages() -> None:
    german = paper("german", abstract=" ".join(["Die Expression von TP53 war bei den Patienten deutlich erhöht."] * 8))
    assert run_step("filter_quality", [german], english=False).papers == [german]


def test_filter_quality_on_the_demo_corpus_drops_what_the_generator_marked(demo_papers: list) -> None:
    output = run_step("filter_quality", demo_papers, min_score=0.5)
    kept = {p.id for p in output.papers}
    assert all(p.quality_score is None or p.quality_score >= 0.5 for p in output.papers)
    low = [p for p in demo_papers if p.quality_score is not None and p.quality_score < 0.5]
    assert output.dropped["low_quality"] == len(low) and not kept & {p.id for p in low}
    assert output.dropped.get("not_english", 0) >= 1  # the generator writes a few German/French/Spanish papers
    assert len(kept) + sum(output.dropped.values()) == len(demo_papers)
