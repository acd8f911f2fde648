"""The official BioCreative II gene mention (BC2GM) score of a prediction file: mention-level true positives,
false positives and false negatives over non-space character offsets, with the ALTGENE.eval alternatives, as
the task's evaluation script (alt_eval.perl, distributed with the BC2GM data) counts them.

The rules, read from alt_eval.perl and implemented here one for one:

- Offsets: a mention is `ID|start end|text`; start and end count the sentence's characters with every space
  removed, from 0, end inclusive. Only the sentence id and the two offsets are compared; the text is not.
- True positive / false negative, counted over the gold mentions of GENE.eval (each line one mention, in
  every sentence that has one): a gold mention G is found when some predicted mention of its sentence has
  exactly G's offsets, or exactly the offsets of an ALTGENE.eval alternative of that sentence that overlaps G
  (the alternative lies inside G, contains G, or overlaps one of its ends; shared end points count). A found
  gold mention adds 1 to TP, else 1 to FN: TP + FN is the number of gold mentions, however many predictions
  match one of them (a gold mention counts once), and one prediction equal to an alternative that overlaps
  two gold mentions finds both.
- False positive, counted over the predicted lines (each line, duplicates included): a prediction is a false
  positive unless its offsets equal a gold mention's or any alternative's of the same sentence. So a second
  prediction of the same gene (a duplicate line, or another of its alternatives) is neither a TP nor an FP.
- precision = TP / (TP + FP), recall = TP / (TP + FN), F1 their harmonic mean.

Where this module differs from the script, it is in what the script leaves undefined: a denominator of 0
gives 0 here (the script stops with a division by zero), the offset field must read `start end` in plain
decimal (the script compares that field as text, which then agrees with comparing the numbers), and a
prediction line that is malformed, names a sentence that is not in the sentence file, or has offsets outside
its sentence is refused with file:line (the script would count it as a false positive).
"""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from forge.evaluate.biocreative import ALT_FILE, GENE_FILE, find_bc2gm, nonspace_index, read_bc2gm, span_text
from forge.evaluate.errors import EvaluationError

Span = tuple[int, int]  # BC2GM offsets: non-space characters, end inclusive
_OFFSETS = re.compile(r"(0|[1-9][0-9]*) (0|[1-9][0-9]*)")


@dataclass(frozen=True)
class Bc2gmScore:
    """The counts of the official score and the figures made from them."""

    tp: int
    fp: int
    fn: int
    predictions: int = 0  # prediction lines read
    text_mismatches: int = 0  # prediction lines whose text is not the text at their offsets (not counted)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "precision": self.precision, "recall": self.recall, "f1": self.f1}


def overlaps(a: Span, b: Span) -> bool:
    """Whether two inclusive spans share a character (the script's four cases: inside, around, either end)."""
    return a[0] <= b[1] and b[0] <= a[1]


def score_mentions(gold: Mapping[str, Sequence[Span]], alternatives: Mapping[str, Sequence[Span]],
                   predicted: Mapping[str, Sequence[Span]]) -> Bc2gmScore:
    """TP, FP and FN of predicted mentions (per sentence id) against the gold mentions and their alternatives."""
    tp = fn = fp = 0
    for sid, mentions in gold.items():
        answers = set(predicted.get(sid, ()))
        alts = alternatives.get(sid, ())
        for g in mentions:
            if g in answers or any(s in answers and overlaps(s, g) for s in alts):
                tp += 1
            else:
                fn += 1
    for sid, answers in predicted.items():
        accepted = set(gold.get(sid, ())) | set(alternatives.get(sid, ()))
        fp += sum(1 for t in answers if t not in accepted)
    return Bc2gmScore(tp=tp, fp=fp, fn=fn, predictions=sum(len(a) for a in predicted.values()))


def read_predictions(path: Path, sentences: Mapping[str, str]) -> tuple[dict[str, list[Span]], int]:
    """Predicted mentions per sentence id from an `ID|start end|text` file (the text may be left out), and how
    many lines give a text other than the one at their offsets. Bad lines raise EvaluationError(file:line)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise EvaluationError(f"cannot read the prediction file {path}: {e}",
                              "give a file of ID|start end|text lines") from None
    found: dict[str, list[Span]] = defaultdict(list)
    mismatches = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        sid, bar, rest = line.partition("|")
        offsets, _, text = rest.partition("|")
        match = _OFFSETS.fullmatch(offsets)
        if not bar or not sid or match is None:
            raise EvaluationError(f"{path}:{number}: expected 'ID|start end|text', got {line[:60]!r}",
                                  "offsets are two whole numbers separated by one space (BC2GM format)")
        start, end = int(match.group(1)), int(match.group(2))
        if sid not in sentences:
            raise EvaluationError(f"{path}:{number}: sentence {sid!r} is not in the sentence file",
                                  "score predictions against the gold folder of the same sentences")
        length = len(nonspace_index(sentences[sid]))
        if start > end or end >= length:
            raise EvaluationError(f"{path}:{number}: offsets {start} {end} are outside sentence {sid!r} "
                                  f"({length} non-space characters)",
                                  "BC2GM offsets count non-space characters from 0, end inclusive")
        if text.strip() and span_text(sentences[sid], start, end).replace(" ", "") != text.replace(" ", ""):
            mismatches += 1
        found[sid].append((start, end))
    return dict(found), mismatches


def score_files(gold_dir: Path, predictions: Path) -> Bc2gmScore:
    """The official score of a prediction file against a BC2GM gold folder (sentence file, GENE.eval and
    ALTGENE.eval)."""
    folder = Path(gold_dir)
    if not folder.is_dir():
        raise EvaluationError(f"gold folder {folder} does not exist",
                              f"give the folder that holds the sentence file, {GENE_FILE} and {ALT_FILE}")
    if not Path(predictions).is_file():
        raise EvaluationError(f"prediction file {predictions} does not exist", "give a file of ID|start end|text lines")
    found = find_bc2gm(folder)
    if found is None:
        raise EvaluationError(f"{folder} has no {GENE_FILE}",
                              f"give the folder that holds the sentence file, {GENE_FILE} and {ALT_FILE}")
    sentences_file, genes_file, alt_file = found
    if alt_file is None:
        raise EvaluationError(f"{folder} has no {ALT_FILE}, which the official score reads",
                              "use the alternatives shipped with the set (an empty file if it has none)")
    # the gold is taken as written: the official script never checks gold offsets against the sentences
    sentences = read_bc2gm(sentences_file, genes_file, alt_file, check_offsets=False)
    texts = {s.id: s.text for s in sentences}
    gold = {s.id: [(m.start, m.end) for m in s.mentions] for s in sentences if s.mentions}
    alternatives = {s.id: [(m.start, m.end) for m in s.alternatives] for s in sentences if s.alternatives}
    predicted, mismatches = read_predictions(Path(predictions), texts)
    score = score_mentions(gold, alternatives, predicted)
    return Bc2gmScore(score.tp, score.fp, score.fn, score.predictions, mismatches)


def to_prediction_lines(predicted: Mapping[str, Sequence[Span]], sentences: Mapping[str, str]) -> list[str]:
    """Mentions as lines of the official prediction format (`ID|start end|text`), sentence by sentence."""
    return [f"{sid}|{start} {end}|{span_text(sentences[sid], start, end)}"
            for sid, spans in predicted.items() for start, end in spans]


def score_text(score: Bc2gmScore, gold_dir: Path | str, predictions: Path | str) -> str:
    """What `forge score bc2gm` prints."""
    lines = [f"forge score bc2gm: {predictions} against {gold_dir}",
             f"  TP {score.tp}  FP {score.fp}  FN {score.fn}",
             f"  precision {score.precision:.4f}  recall {score.recall:.4f}  F1 {score.f1:.4f}"]
    if score.text_mismatches:
        lines.append(f"  note: {score.text_mismatches} of {score.predictions} predicted lines give a text other than "
                     "the one at their offsets (offsets must count non-space characters); only offsets are scored")
    return "\n".join(lines)
