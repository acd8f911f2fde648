"""`forge eval` of a token classifier (`model.task: token_classification`): its mentions scored two ways, in
the report `forge eval` writes for every run (report.json, report.md, bootstrap intervals by sentence):

- entities: entity-level precision, recall and F1 (seqeval's strict IOB2 matching: exact words and type) on
  tagged sentences: `evaluation.data` as a CoNLL file or folder, else the run's held-out conll split;
- bc2gm: the official BioCreative II gene mention score (forge/evaluate/bc2gm_score.py) when
  `evaluation.data` is a BC2GM folder (sentence file, GENE.eval, ALTGENE.eval); the predictions are also
  written as `eval/bc2gm_predictions.eval`, in the official format, for the task's own script.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from forge.evaluate.errors import EvaluationError


def sentence_counts(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> list[tuple[int, int, int]]:
    """(tp, fp, fn) of each sentence under seqeval's strict IOB2 entities; their sums give entity_scores."""
    from seqeval.scheme import IOB2, Entities

    def entities(tags: Sequence[Sequence[str]]) -> list[set[tuple[int, int, str]]]:
        found = Entities([list(t) for t in tags], IOB2, suffix=False).entities
        return [{(e.start, e.end, e.tag) for e in sentence} for sentence in found]

    out = []
    for g, p in zip(entities(gold), entities(predicted)):
        out.append((len(g & p), len(p - g), len(g - p)))
    return out


def bc2gm_counts(gold: Any, predicted: dict[str, list[tuple[int, int]]]) -> list[tuple[int, int, int]]:
    """(tp, fp, fn) of each BC2GM sentence under the official rules (they are counted sentence by sentence)."""
    from forge.evaluate.bc2gm_score import score_mentions

    out = []
    for s in gold:
        score = score_mentions({s.id: [(m.start, m.end) for m in s.mentions]},
                               {s.id: [(m.start, m.end) for m in s.alternatives]},
                               {s.id: predicted.get(s.id, [])})
        out.append((score.tp, score.fp, score.fn))
    return out


def bc2gm_predictions(model: Any, tokenizer: Any, sentences: Any, max_length: int) -> dict[str, list[tuple[int, int]]]:
    """The mentions a token classifier finds in BC2GM sentences, as BC2GM offsets (non-space, end inclusive)."""
    from forge.evaluate.biocreative import to_nonspace_span
    from forge.model.tagging import find_mentions

    texts = [s.text for s in sentences]
    found = find_mentions(model, tokenizer, texts, max_length)
    return {s.id: [to_nonspace_span(s.text, start, end) for start, end, _ in spans]
            for s, spans in zip(sentences, found)}


def evaluate_tagger(resolved: Any, run_dir: Path, progress: bool = True, compare: str | None = None) -> dict[str, Any]:
    """Score a token-classification run and write `<run_dir>/eval/`; returns the report. A baseline is not
    compared yet (the report says so when one is asked for)."""
    started = time.time()
    recipe = resolved.recipe
    ev = recipe.evaluation
    from forge.plan import compile_plan

    plan = compile_plan(recipe)
    from forge.evaluate.models import find_trained, load_models
    from forge.evaluate.report import build_report, write_report
    from forge.model.labels import read_labels

    _, trained = find_trained(run_dir)
    labels = read_labels(trained)
    if not labels:
        raise EvaluationError(f"{trained} holds no labels of the token classifier",
                              "train it again with forge run (labels.json is written beside the model)")
    plan = dataclasses.replace(plan, model=dataclasses.replace(plan.model, labels=tuple(labels)))
    pair = load_models(recipe, plan, run_dir, None)
    model, tokenizer = pair.tuned.model, pair.tuned.tokenizer
    max_length = min(recipe.training.max_seq_length, getattr(model.config, "max_position_embeddings", 512) or 512)
    results: dict[str, dict[str, Any]] = {}
    notes = list(pair.notes)
    if compare is not None and compare.strip().lower() not in ("none", "null", ""):
        notes.append(f"--compare {compare}: a token classifier is scored alone (baselines are not compared yet)")
    source, written = _score(recipe, model, tokenizer, max_length, run_dir, results, notes)
    info = {"run_name": recipe.run.name, "run_dir": str(run_dir), "model_source": pair.tuned.source,
            "base_model": recipe.model.name_or_path, "compare_with": None, "baseline_label": None,
            "tasks_requested": list(results), "data": {"source": source, "documents": written},
            "settings": {"max_length": max_length}}
    report = build_report(results=results, gates=ev.gates, samples=ev.bootstrap_samples, seed=recipe.run.seed,
                          info=info, notes=notes)
    report["wall_seconds"] = round(time.time() - started, 2)
    write_report(report, run_dir / "eval")
    from forge.evaluate.tracking import log_report, tracking_target

    uri, run_id = tracking_target(run_dir, recipe)
    report["tracking"] = log_report(uri, run_id, report, run_dir / "eval") if uri and run_id else {"status": "off"}
    if report["tracking"]["status"] != "off":
        write_report(report, run_dir / "eval")  # keep the tracking outcome with the report
    return report


def _score(recipe: Any, model: Any, tokenizer: Any, max_length: int, run_dir: Path,
           results: dict[str, dict[str, Any]], notes: list[str]) -> tuple[str, int]:
    """Fill results with the entities or bc2gm task; returns (data source, sentences scored)."""
    from forge.evaluate import genes
    from forge.evaluate.results import TaskResult

    statistics = {"precision": genes.precision_statistic, "recall": genes.recall_statistic, "f1": genes.f1_statistic}
    ev = recipe.evaluation
    path = Path(ev.data) if ev.data else None
    if path is not None and not path.exists():
        raise EvaluationError(f"evaluation data {path} does not exist", "check evaluation.data")
    from forge.evaluate.biocreative import find_bc2gm, read_bc2gm

    folder = path.parent if path is not None and path.is_file() and path.name.endswith(".eval") else path
    bc2gm = find_bc2gm(folder) if folder is not None and folder.is_dir() else None
    if bc2gm:
        from forge.evaluate.bc2gm_score import to_prediction_lines

        sentences = read_bc2gm(*bc2gm, check_offsets=False)
        predicted = bc2gm_predictions(model, tokenizer, sentences, max_length)
        counts = bc2gm_counts(sentences, predicted)
        if bc2gm[2] is None:
            notes.append("bc2gm: the folder has no ALTGENE.eval, so no alternative was accepted")
        target = run_dir / "eval"
        target.mkdir(parents=True, exist_ok=True)
        lines = to_prediction_lines(predicted, {s.id: s.text for s in sentences})
        (target / "bc2gm_predictions.eval").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        notes.append(f"bc2gm: predictions in {target / 'bc2gm_predictions.eval'} (official format)")
        result = TaskResult("bc2gm", "fine-tuned", units=genes.units([genes.GeneCounts(*c) for c in counts]),
                            statistics={f"bc2gm_{k}": v for k, v in statistics.items()})
        total = [sum(c[i] for c in counts) for i in range(3)]
        result.details = {"sentences": len(counts), "tp": total[0], "fp": total[1], "fn": total[2]}
        results["bc2gm"] = {"tuned": result.finish(), "baseline": None}
        return f"BC2GM {folder}", len(counts)
    from forge.data.conll import build_conll_datasets, conll_files, read_conll

    if path is not None:
        sentences = [s for file in conll_files(path) for s in read_conll(file)]
        words, tags, source = [s.words for s in sentences], [s.tags for s in sentences], str(path)
    else:
        split = getattr(build_conll_datasets(recipe), ev.split)
        names = split.features["tags"].feature.names
        words, tags = split["words"], [[names[i] for i in row] for row in split["tags"]]
        source = f"{ev.split} split"
    if not words:
        raise EvaluationError(f"there is nothing to evaluate on: {source} holds no sentences",
                              f"set data.split.{ev.split} above 0, or evaluation.data to a CoNLL file")
    from forge.model.tagging import tag_words

    counts = sentence_counts(tags, tag_words(model, tokenizer, words, max_length))
    result = TaskResult("entities", "fine-tuned", units=genes.units([genes.GeneCounts(*c) for c in counts]),
                        statistics={f"entity_{k}": v for k, v in statistics.items()})
    total = [sum(c[i] for c in counts) for i in range(3)]
    result.details = {"sentences": len(counts), "tp": total[0], "fp": total[1], "fn": total[2],
                      "matching": "seqeval strict IOB2"}
    results["entities"] = {"tuned": result.finish(), "baseline": None}
    return source, len(counts)
