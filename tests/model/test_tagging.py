"""Reading a token classifier's BIO tags as character spans, as evaluation and serving both do."""
from __future__ import annotations

import pytest

from forge.model.tagging import bio_spans

TEXT = "BRCA1 and TP53 bind"
#          BRCA  1     ' and'  ' TP'   53       ' bind'   (special tokens have offsets (0, 0))
OFFSETS = [(0, 0), (0, 4), (4, 5), (5, 9), (9, 12), (12, 14), (14, 19), (0, 0)]


def test_bio_spans_by_hand() -> None:
    labels = ["O", "B-GENE", "I-GENE", "O", "I-GENE", "I-GENE", "B-GENE", "B-GENE"]
    # B I -> BRCA1 [0, 5); O closes it; an I after O opens TP53 [9, 14) whose leading space is trimmed to
    # [10, 14); a B opens " bind" [14, 19) -> [15, 19); the final special token neither opens nor closes.
    assert bio_spans(labels, OFFSETS, TEXT) == [(0, 5, "GENE"), (10, 14, "GENE"), (15, 19, "GENE")]
    # without the text the byte-level spaces stay
    assert bio_spans(labels, OFFSETS)[1] == (9, 14, "GENE")
    # an I of another type opens a new entity; all O gives none
    assert bio_spans(["O", "B-GENE", "I-PROT", "O", "O", "O", "O", "O"], OFFSETS, TEXT) == [
        (0, 4, "GENE"), (4, 5, "PROT")]
    assert bio_spans(["O"] * 8, OFFSETS, TEXT) == []
    with pytest.raises(ValueError, match="7 labels for 8 tokens"):
        bio_spans(["O"] * 7, OFFSETS)
