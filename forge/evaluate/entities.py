"""Token classifiers as mention finders, and their scores: entity-level precision, recall and F1 with seqeval
in strict IOB2 mode (a mention counts only with its exact words and type, as in CoNLL-2003 and the BioNLP
shared tasks), computed on word tags (each word read from its first sub-token), and the mentions found in
raw text as character spans (for serving and for the official BC2GM score).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from forge.data.subwords import IGNORE, encode_words, split_words
from forge.evaluate.token_labels import bio_spans

BATCH = 32


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro precision, recall and F1 over entities (seqeval, strict IOB2), from word tags per sentence."""
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    gold, predicted = [list(s) for s in gold], [list(s) for s in predicted]
    kwargs: dict[str, Any] = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    return {"entity_precision": float(precision_score(gold, predicted, **kwargs)),
            "entity_recall": float(recall_score(gold, predicted, **kwargs)),
            "entity_f1": float(f1_score(gold, predicted, **kwargs))}


def trainer_metrics(names: Sequence[str]) -> tuple[Callable[[Any], dict[str, float]], Callable[[Any, Any], Any]]:
    """(compute_metrics, preprocess_logits_for_metrics) for transformers' Trainer: entity scores of the labelled
    (first) sub-tokens, with only the argmax of the logits kept between batches."""
    def argmax(logits: Any, labels: Any) -> Any:
        return (logits[0] if isinstance(logits, tuple) else logits).argmax(-1)

    def compute(prediction: Any) -> dict[str, float]:
        gold, predicted = [], []
        for row_labels, row_predicted in zip(prediction.label_ids, prediction.predictions):
            kept = [(int(g), int(p)) for g, p in zip(row_labels, row_predicted) if g != IGNORE]
            gold.append([names[g] for g, _ in kept])
            predicted.append([names[p] for _, p in kept])
        return entity_scores(gold, predicted)

    return compute, argmax


def tag_words(model: Any, tokenizer: Any, sentences: Sequence[Sequence[str]], max_length: int = 512,
              batch_size: int = BATCH) -> list[list[str]]:
    """The predicted tag of every word (its first sub-token's argmax label); words cut off by max_length get O."""
    import torch

    id2label = model.config.id2label
    device = next(model.parameters()).device
    out: list[list[str]] = []
    for begin in range(0, len(sentences), batch_size):
        chunk = sentences[begin:begin + batch_size]
        encoded = [encode_words(tokenizer, list(words), max_length) for words in chunk]
        batch = tokenizer.pad([{"input_ids": e["input_ids"], "attention_mask": e["attention_mask"]} for e in encoded],
                              return_tensors="pt")
        with torch.inference_mode():
            best = model(**{k: v.to(device) for k, v in batch.items()}).logits.argmax(-1).tolist()
        for words, e, row in zip(chunk, encoded, best):
            tags = ["O"] * len(words)
            previous = None
            for position, word in enumerate(e["word_ids"]):
                if word is not None and word != previous:
                    tags[word] = str(id2label[int(row[position])])
                if word is not None:
                    previous = word
            out.append(tags)
    return out


def find_mentions(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int = 512) -> list[list[tuple[int, int, str]]]:
    """Mentions (start, end, type) in raw texts, as character spans [start, end): the texts cut into words, the
    words tagged, and the tags read as IOB (an I- without its B- opens a mention, as conlleval reads it)."""
    word_spans = [split_words(text) for text in texts]
    tags = tag_words(model, tokenizer, [[text[s:e] for s, e in spans] for text, spans in zip(texts, word_spans)],
                     max_length)
    return [bio_spans(t, spans, text) for text, spans, t in zip(texts, word_spans, tags)]
