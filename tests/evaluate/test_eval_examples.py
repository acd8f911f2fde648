"""Which examples each task gets from held-out papers: text for perplexity, annotated papers for genes,
reference summaries and questions from the metadata, and the max_examples cap."""
from __future__ import annotations

from forge.data.papers import ScientificPaper
from forge.evaluate.examples import from_papers
from forge.evaluate.genes import GoldGene


def paper(pid: str, **fields) -> ScientificPaper:  # noqa: ANN003
    return ScientificPaper.from_record({"id": pid, **fields}, pid)


PAPERS = [
    paper("a", title="STK11 in lung", abstract="STK11 drives ROS1.", sections=[{"heading": "Results", "text": "R."}],
          genes=[{"symbol": "STK11", "aliases": ["LKB1"]}, "ROS1"], tldr="STK11 drives ROS1 in lung cancer.",
          qa=[{"question": "Which gene drives ROS1?", "answers": ["STK11", "LKB1"]}, {"question": "no answer"},
              "not a question"]),
    paper("b", title="No genes annotated", abstract="An abstract.", sections=["A body without a heading."]),
    paper("c", title="Only a title"),
]


def test_each_task_gets_the_papers_that_have_what_it_needs() -> None:
    data = from_papers(PAPERS, "test split", fields=("title", "abstract"))
    assert data.documents == 3 and data.counts() == {"perplexity": 3, "gene_recognition": 1, "summarization": 2,
                                                     "question_answering": 1}
    assert [e.text for e in data.perplexity] == ["STK11 in lung\n\nSTK11 drives ROS1.",
                                                 "No genes annotated\n\nAn abstract.", "Only a title"]
    [genes] = data.gene_recognition  # papers without annotations are left out
    assert genes.gold == (GoldGene("STK11", ("LKB1",)), GoldGene("ROS1")) and genes.spans is None
    a, b = data.summarization
    # a reference summary in the metadata summarizes the abstract; else the abstract is the body's reference
    assert (a.source, a.references) == ("STK11 drives ROS1.", ("STK11 drives ROS1 in lung cancer.",))
    assert (b.source, b.references) == ("A body without a heading.", ("An abstract.",))
    [qa] = data.question_answering  # malformed questions are skipped
    assert (qa.id, qa.question, qa.answers, qa.context) == ("a/q0", "Which gene drives ROS1?", ("STK11", "LKB1"),
                                                            "STK11 drives ROS1.")


def test_max_examples_caps_each_task_and_says_so() -> None:
    data = from_papers(PAPERS, "test split", max_examples=2)
    assert data.counts()["perplexity"] == 2 and data.counts()["summarization"] == 2
    assert data.notes == ["perplexity: evaluated the first 2 of 3 examples (evaluation.max_examples)"]
