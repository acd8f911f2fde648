"""BioCreative II gene mention (BC2GM) files as a gold source: a sentence file (`ID sentence` per line) and
annotation files (`ID|start end|mention` per line; GENE.eval for the gold mentions, ALTGENE.eval for the
alternative spellings accepted for them).

BC2GM offsets count characters with every space removed, and the end is inclusive.
"""
from __future__ import annotations

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
               check_offsets: bool = True) -> list[GeneSentence]:
    """Sentences in file order, each with its gold mentions (and alternatives when the file is given)."""
    texts = _read_sentences(Path(sentences))
    gold = _read_mentions(Path(genes), texts, check_offsets)
    alt = _read_mentions(Path(alternatives), texts, check_offsets) if alternatives else {}
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


def _read_mentions(path: Path, texts: dict[str, str], check: bool) -> dict[str, list[Mention]]:
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
                raise EvaluationError(f"{path}:{number}: {e}", "BC2GM offsets count non-space characters") from None
            if found.replace(" ", "") != text.replace(" ", ""):
                raise EvaluationError(f"{path}:{number}: offsets {start} {end} give {found!r}, not {text!r}",
                                      "BC2GM offsets count non-space characters, end inclusive")
        mentions[sid].append(Mention(start, end, text))
    return mentions


def _lines(path: Path) -> Sequence[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise EvaluationError(f"cannot read {path}: {e}", "check the evaluation.data path") from None
