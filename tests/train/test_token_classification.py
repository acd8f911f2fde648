"""Token classification end to end: a tiny BERT trained on a CoNLL file through `forge run`'s flow learns its
gene mentions (entity F1 by seqeval, strict IOB2), fully or with LoRA, and keeps its labels with the weights."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from forge.data.conll import read_conll

pytestmark = pytest.mark.slow


def fixture_f1(model_dir: Path, conll_file: Path) -> float:
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from forge.evaluate.entities import entity_scores
    from forge.model.tagging import tag_words

    sentences = read_conll(conll_file)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForTokenClassification.from_pretrained(model_dir).eval()
    predicted = tag_words(model, tokenizer, [s.words for s in sentences])
    return entity_scores([s.tags for s in sentences], predicted)["entity_f1"]


def test_a_tiny_encoder_learns_the_gene_mentions_of_a_conll_file(tagger_run: dict, conll_file: Path) -> None:
    assert tagger_run["status"] == "completed" and tagger_run["steps"] == 80
    model_dir = Path(tagger_run["adapter_path"])
    assert model_dir.name == "model"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"]
    assert config["id2label"] == {"0": "O", "1": "B-GENE", "2": "I-GENE"}
    assert fixture_f1(model_dir, conll_file) > 0.9
    # the trainer scored the validation sentences the same way (seqeval, strict IOB2) at its evaluations
    assert tagger_run["eval"]["entity_f1"] > 0.9
    assert tagger_run["data"]["train_examples"] == 42 and tagger_run["data"]["validation_examples"] == 6


def test_lora_training_keeps_the_labels_beside_the_adapter(tmp_path: Path, conll_file: Path, tiny_bert_dir: Path,
                                                           tagger_trainer) -> None:
    from peft import PeftModel
    from transformers import AutoModelForTokenClassification

    from forge.model.labels import read_labels

    summary = tagger_trainer(tmp_path, conll_file, tiny_bert_dir, lora=True, steps=4)
    adapter = Path(summary["adapter_path"])
    assert summary["status"] == "completed" and (adapter / "adapter_config.json").is_file()
    labels = read_labels(adapter)
    assert labels == ["O", "B-GENE", "I-GENE"]
    base = AutoModelForTokenClassification.from_pretrained(tiny_bert_dir, num_labels=len(labels))
    model = PeftModel.from_pretrained(base, str(adapter))
    # the classifier head was trained and saved with the adapter (PEFT's modules_to_save for TOKEN_CLS)
    trained = dict(model.named_parameters())
    assert any("classifier" in name and "modules_to_save" in name for name in trained)
