"""Helpers for the data tests (imported by name; pytest puts this folder on sys.path): small paper
records, running one step, and writing source files and recipes. The tokenizer fixture is in
tests/conftest.py (`demo_bpe_tokenizer`)."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from forge.data.papers import ScientificPaper
from forge.data.steps import STEPS, StepContext, StepOutput

# Function-word-rich sentences about genes: English enough for the language check, long enough for min_words.
FILLER = ("The results of this study show that the expression of {gene} was higher in the tumour samples "
          "than in the matched normal tissue, and that this change was associated with a poor outcome for "
          "the patients who were treated with the standard therapy in this cohort.")


def paper(id: str = "p1", **fields: Any) -> ScientificPaper:
    """A validated paper with a title unless one is given."""
    return ScientificPaper.from_record({"title": f"Paper {id}", **fields, "id": id}, id)


def long_paper(id: str, gene: str = "BRCA1", sentences: int = 3, **fields: Any) -> ScientificPaper:
    """A paper whose abstract is `sentences` English sentences about `gene` (about 45 words each)."""
    return paper(id, abstract=" ".join(FILLER.format(gene=gene) for _ in range(sentences)), **fields)


def run_step(name: str, papers: list[ScientificPaper], context: StepContext | None = None,
             **params: Any) -> StepOutput:
    """Run one registered step with validated arguments, as the runner would."""
    entry = STEPS.get(name)
    output = entry.function(papers, entry.params.model_validate(params), context or StepContext())
    return output if isinstance(output, StepOutput) else StepOutput(output)


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_recipe(path: Path, body: str) -> Path:
    """A recipe file: the body (dedented) plus a model section that names no network resource."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = textwrap.dedent(body).lstrip("\n")
    if "model:" not in text:
        text += "\nmodel:\n  name_or_path: forge:tiny-llama\n"
    path.write_text(text, encoding="utf-8")
    return path
