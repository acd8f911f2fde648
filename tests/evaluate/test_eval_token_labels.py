"""The token-classification route for BERT-style models: spans to mentions and strict counts by hand, a forced
classifier's predictions, and a whole evaluation of a token classifier on a BioCreative set."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from forge.evaluate.genes import GeneCounts
from forge.evaluate.token_labels import has_bio_labels, mentions, predict_spans, span_counts

TEXT = "BRCA1 and TP53 bind"


def test_mentions_are_the_stripped_texts_of_the_spans() -> None:
    assert mentions(TEXT, [(0, 5, "GENE"), (9, 14, "GENE"), (14, 15)]) == ["BRCA1", "TP53"]


def test_strict_span_counts_by_hand() -> None:
    # predicted [0,5) [10,14) [15,19); gold [0,5) [10,15): one exact match; [10,14) is off by one character
    assert span_counts([(0, 5), (10, 14), (15, 19)], [(0, 5), (10, 15)]) == GeneCounts(tp=1, fp=2, fn=1)
    assert span_counts([], []) == GeneCounts(0, 0, 0)


def token_classifier(bert_dir: Path, favour: str = "I-GENE"):  # noqa: ANN201
    """The tiny BERT with a BIO head whose every token's argmax is `favour` (weights 0, one bias 1)."""
    import torch
    from transformers import AutoModelForTokenClassification

    labels = ["O", "B-GENE", "I-GENE"]
    model = AutoModelForTokenClassification.from_pretrained(
        bert_dir, num_labels=3, id2label=dict(enumerate(labels)), label2id={v: i for i, v in enumerate(labels)})
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([float(label == favour) for label in labels]))
    return model.eval()


def test_predict_spans_of_a_forced_classifier(tiny_bert_dir: Path) -> None:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    every_token = token_classifier(tiny_bert_dir, "I-GENE")
    assert has_bio_labels(every_token) and not has_bio_labels(AutoModelForMaskedLM.from_pretrained(tiny_bert_dir))
    # every token inside one entity: the span runs from the first to the last non-special token
    assert predict_spans(every_token, tokenizer, TEXT) == [(0, len(TEXT), "GENE")]
    assert predict_spans(token_classifier(tiny_bert_dir, "O"), tokenizer, TEXT) == []
    each = predict_spans(token_classifier(tiny_bert_dir, "B-GENE"), tokenizer, TEXT)  # one entity per token
    assert len(each) == len(tokenizer(TEXT, add_special_tokens=False)["input_ids"])
    assert "".join(TEXT[a:b] for a, b, _ in each).replace(" ", "") == TEXT.replace(" ", "")


@pytest.mark.slow
def test_evaluate_a_token_classifier_on_a_biocreative_set(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """A full fine-tune's model/ folder with a BIO head, evaluated on BC2GM files through `forge eval`."""
    from forge.cli import main
    from forge.recipe.validate import resolve

    bc2gm = tmp_path / "bc2gm"
    bc2gm.mkdir()
    # S1 is one gene; S2 has two (non-space offsets counted by hand, as in test_eval_biocreative.py)
    (bc2gm / "test.in").write_text("S1 TNF-alpha\nS2 The TNF-alpha gene and protein kinase C bind.\n")
    (bc2gm / "GENE.eval").write_text("S1|0 8|TNF-alpha\nS2|3 11|TNF-alpha\nS2|19 32|protein kinase C\n")
    papers = tmp_path / "papers.json"
    papers.write_text(json.dumps([{"id": "p", "title": "t", "abstract": "a"}]))
    recipe = tmp_path / "ner.yaml"
    recipe.write_text(f"run: {{name: ner, output_dir: {tmp_path / 'runs'}}}\n"
                      f"data: {{sources: [{{path: {papers}}}]}}\n"
                      f"model: {{name_or_path: {tiny_bert_dir}, task: masked_lm}}\n"
                      "lora: {enabled: false}\ntracking: {enabled: false}\n"
                      f"evaluation: {{tasks: [gene_recognition], data: {bc2gm}, compare_with: null, "
                      "bootstrap_samples: 100}\n")
    run_dir = tmp_path / "runs" / "ner"
    run_dir.mkdir(parents=True)
    (run_dir / "recipe.yaml").write_text(resolve(recipe).yaml_text)
    from transformers import AutoTokenizer

    token_classifier(tiny_bert_dir, "I-GENE").save_pretrained(run_dir / "model")
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(run_dir / "model")

    assert main(["eval", str(run_dir)]) == 0
    report = json.loads((run_dir / "eval" / "report.json").read_text())
    details = report["tasks"]["gene_recognition"]["tuned"]["details"]
    # S1: the one span is "TNF-alpha": tp 1. S2: one span over the whole sentence: fp 1, fn 2.
    # tp 1, fp 1, fn 2: P = 1/2, R = 1/3, F1 = 2 * (1/6) / (5/6) = 0.4; strict spans count the same here
    assert details["route"] == "token classification"
    assert (details["tp"], details["fp"], details["fn"]) == (1, 1, 2)
    assert report["metrics"]["gene_f1"]["tuned"] == pytest.approx(0.4)
    assert details["span_f1"] == pytest.approx(0.4)
    assert "perplexity" not in report["metrics"] and not report["has_baseline"]
