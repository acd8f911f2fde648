"""BioCreative II gene mention (BC2GM) files as a gold source: a sentence file (`ID sentence` per line) and
annotation files (`ID|start end|mention` per line; GENE.eval for the gold mentions, ALTGENE.eval for the
alternative spellings accepted for them).

BC2GM offsets count characters with every space removed, and the end is inclusive. A mention whose offsets do
not give its text in its sentence (the official training files hold a few) is dropped with a counted warning
that names it (file, line, sentence id); the rest of the file is kept.
"""
from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from forge.evaluate.errors import EvaluationError
from forge.evaluate.genes import GoldGene

GENE_FILE, ALT_FILE = "GENE.eval", "ALTGENE.eval"
SENTENCE_FILES = ("test.in", "train.in", "sentences.txt", "sentences.in")


@dataclass(frozen=True)
class Mention:
    """A gene mention: non-space character offsets (end inclusive) and its text."""

    start: int
    end: int
    text: str

    def overlaps(self, other: Mention) -> bool:
        return self.start <= other.end and other.start <= self.end


@dataclass(frozen=True)
class GeneSentence:
    """A sentence with its gold mentions and the accepted alternatives."""

    id: str
    text: str
    mentions: tuple[Mention, ...] = ()
    alternatives: tuple[Mention, ...] = field(default=())

    @property
    def gold(self) -> list[GoldGene]:
        """One gold gene per mention; overlapping alternatives are its aliases."""
        return [GoldGene(m.text, tuple(a.text for a in self.alternatives if a.overlaps(m) and a.text != m.text))
                for m in self.mentions]


@dataclass(frozen=True)
class DroppedMention:
    """An annotation line left out because its offsets do not match its sentence: where it is and why."""

    path: str
    line: int
    sentence_id: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.sentence_id}: {self.reason}"


def nonspace_index(text: str) -> list[int]:
    """For each non-space character (in order), its index in text."""
    return [i for i, ch in enumerate(text) if not ch.isspace()]


def span_text(text: str, start: int, end: int) -> str:
    """The text of a BC2GM span (non-space offsets, end inclusive)."""
    index = nonspace_index(text)
    if not 0 <= start <= end < len(index):
        raise ValueError(f"span {start} {end} is outside a sentence of {len(index)} non-space characters")
    return text[index[start]:index[end] + 1]


def to_nonspace_span(text: str, start: int, end: int) -> tuple[int, int]:
    """A character span [start, end) of text as BC2GM offsets (the span must hold a non-space character)."""
    inside = [n for n, i in enumerate(nonspace_index(text)) if start <= i < end]
    if not inside:
        raise ValueError(f"character span {start}:{end} holds no non-space character")
    return inside[0], inside[-1]


def read_bc2gm(sentences: Path, genes: Path, alternatives: Path | None = None,
               check_offsets: bool = True, dropped: list[DroppedMention] | None = None) -> list[GeneSentence]:
    """Sentences in file order, each with its gold mentions (and alternatives when the file is given).

    With check_offsets, a mention whose offsets do not give its text in its sentence is left out, appended to
    `dropped` when given, and counted in one warning on stderr."""
    texts = _read_sentences(Path(sentences))
    left_out: list[DroppedMention] = []
    gold = _read_mentions(Path(genes), texts, check_offsets, left_out)
    alt = _read_mentions(Path(alternatives), texts, check_offsets, left_out) if alternatives else {}
    if left_out:
        shown = "; ".join(map(str, left_out[:5])) + (f"; and {len(left_out) - 5} more" if len(left_out) > 5 else "")
        print(f"forge: warning: dropped {len(left_out)} BC2GM mention{'s' if len(left_out) > 1 else ''} whose "
              f"offsets do not match the sentence: {shown}", file=sys.stderr, flush=True)
    if dropped is not None:
        dropped.extend(left_out)
    return [GeneSentence(sid, text, tuple(gold.get(sid, ())), tuple(alt.get(sid, ()))) for sid, text in texts.items()]


def find_bc2gm(folder: Path) -> tuple[Path, Path, Path | None] | None:
    """(sentences, GENE.eval, ALTGENE.eval or None) when the folder holds a BC2GM set, else None."""
    folder = Path(folder)
    if not (folder / GENE_FILE).is_file():
        return None
    sentences = next((folder / n for n in SENTENCE_FILES if (folder / n).is_file()), None)
    if sentences is None:
        found = sorted(folder.glob("*.in"))
        sentences = found[0] if found else None
    if sentences is None:
        raise EvaluationError(f"{folder} has {GENE_FILE} but no sentence file ({', '.join(SENTENCE_FILES)} or *.in)",
                              "put the BC2GM sentence file beside GENE.eval")
    alt = folder / ALT_FILE
    return sentences, folder / GENE_FILE, alt if alt.is_file() else None


def _read_sentences(path: Path) -> dict[str, str]:
    texts: dict[str, str] = {}
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        sid, _, text = line.partition(" ")
        if not text.strip():
            raise EvaluationError(f"{path}:{number}: expected 'ID sentence', got {line[:60]!r}",
                                  "each line of a BC2GM sentence file is an id, a space and the sentence")
        texts[sid] = text.strip()
    return texts


def _read_mentions(path: Path, texts: dict[str, str], check: bool,
                   dropped: list[DroppedMention]) -> dict[str, list[Mention]]:
    mentions: dict[str, list[Mention]] = defaultdict(list)
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        parts = line.split("|", 2)
        try:
            sid, offsets, text = parts
            start, end = (int(v) for v in offsets.split())
        except ValueError:
            raise EvaluationError(f"{path}:{number}: expected 'ID|start end|mention', got {line[:60]!r}",
                                  "use the BC2GM GENE.eval format") from None
        if sid not in texts:
            raise EvaluationError(f"{path}:{number}: sentence {sid!r} is not in the sentence file",
                                  "use the sentence file that belongs to these annotations")
        if check:
            try:
                found = span_text(texts[sid], start, end)
            except ValueError as e:
                dropped.append(DroppedMention(str(path), number, sid, str(e)))
                continue
            if "".join(found.split()) != "".join(text.split()):
                dropped.append(DroppedMention(str(path), number, sid, f"offsets {start} {end} give {found!r}, "
                                                                      f"not {text!r}"))
                continue
        mentions[sid].append(Mention(start, end, text))
    return mentions


def _lines(path: Path) -> Sequence[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise EvaluationError(f"cannot read {path}: {e}", "check the evaluation.data path") from None
