"""The label names of a token classifier, kept with its weights: a full model's config.json holds them
(id2label, the Hugging Face convention); a LoRA adapter folder has no config of the base, so training writes
them beside the adapter as labels.json, where evaluation and serving read them back."""
from __future__ import annotations

import json
from pathlib import Path

LABELS_FILE = "labels.json"


def save_labels(folder: Path, labels: list[str]) -> Path:
    """Write labels.json into folder (the label of class i is labels[i])."""
    path = Path(folder) / LABELS_FILE
    path.write_text(json.dumps({"labels": list(labels)}, indent=2) + "\n", encoding="utf-8")
    return path


def read_labels(folder: Path) -> list[str] | None:
    """The labels saved with a trained model: labels.json, else config.json's id2label; None when neither."""
    folder = Path(folder)
    try:
        if (folder / LABELS_FILE).is_file():
            return [str(n) for n in json.loads((folder / LABELS_FILE).read_text(encoding="utf-8"))["labels"]]
        if (folder / "config.json").is_file():
            id2label = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("id2label") or {}
            return [str(id2label[k]) for k in sorted(id2label, key=int)] or None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None
