"""`forge serve` of a token classifier over real HTTP: /v1/genes and /v1/analyze give the mentions of a tiny
BERT trained on a CoNLL file (tests/conftest.py `tagger_run`), with character offsets into the text sent."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests

from serve_support import API_KEY, SERVING, ServerProcess, free_port, headers

pytestmark = pytest.mark.slow
# the training file's first sentences written as running text: no space before a full stop, "IL-2" as one
# string, a line break between sentences
SENTENCES = 4


def running_text(conll_file: Path) -> tuple[str, list[str]]:
    """The first sentences of the CoNLL file as plain text, and their gold gene mentions in order."""
    from forge.data.conll import read_conll

    text, genes = "", []
    for sentence in read_conll(conll_file)[:SENTENCES]:
        words = list(sentence.words)
        line = " ".join(words).replace(" .", ".").replace(" - ", "-")
        text += line + "\n"
        mention: list[str] = []
        for word, tag in zip(words + ["."], list(sentence.tags) + ["O"]):
            if tag != "I-GENE" and mention:
                genes.append(" ".join(mention).replace(" - ", "-"))
                mention = []
            if tag != "O":
                mention.append(word)
    return text, genes


@pytest.fixture(scope="module")
def tagger_server(tagger_run: dict, forge_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    run_dir = Path(tagger_run["run_dir"])
    log = tmp_path_factory.mktemp("tagger-log") / "server.log"
    overrides = tuple(f"serving.{k}={v}" for k, v in {**SERVING, "max_input_tokens": 96}.items())
    process = ServerProcess(run_dir, free_port(), log, env={"FORGE_CACHE": str(forge_cache), "OMP_NUM_THREADS": "1"},
                            args=overrides)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def post(server, path: str, body: dict, key: str | None = API_KEY) -> requests.Response:
    return requests.post(f"{server.url}{path}", json=body, headers=headers(key), timeout=60)


def test_genes_gives_mentions_with_character_offsets(tagger_server, tagger_run: dict, conll_file: Path) -> None:
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from forge.model.tagging import find_mentions

    text, gold = running_text(conll_file)
    response = post(tagger_server, "/v1/genes", {"text": text})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "tagger"
    for mention in body["mentions"]:
        assert text[mention["start"]:mention["end"]] == mention["text"] and mention["type"] == "GENE"
    # what the server finds is what the trained model finds in the same text
    model_dir = Path(tagger_run["adapter_path"])
    model = AutoModelForTokenClassification.from_pretrained(model_dir).eval()
    [expected] = find_mentions(model, AutoTokenizer.from_pretrained(model_dir), [text])
    assert [(m["start"], m["end"]) for m in body["mentions"]] == [(s, e) for s, e, _ in expected]
    # and it learnt the training sentences' genes
    found = [m["text"] for m in body["mentions"]]
    hits = sum(min(found.count(g), gold.count(g)) for g in set(gold))
    assert hits >= 0.8 * len(gold) and len(found) <= len(gold) + 1, (found, gold)


def test_analyze_of_a_token_classifier_lists_its_genes(tagger_server, conll_file: Path) -> None:
    text, _ = running_text(conll_file)
    genes = post(tagger_server, "/v1/genes", {"text": text}).json()
    body = post(tagger_server, "/v1/analyze", {"text": text}).json()
    assert body["mentions"] == genes["mentions"] and body["genes"] == genes["genes"]
    assert body["genes"] == list(dict.fromkeys(m["text"] for m in genes["mentions"]))
    refused = post(tagger_server, "/v1/analyze", {"text": text, "fields": ["methods"]})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "unsupported_field"


def test_the_tagger_keeps_the_servers_rules(tagger_server) -> None:
    assert post(tagger_server, "/v1/genes", {"text": "BRCA1 binds KRAS."}, key=None).status_code == 401
    assert post(tagger_server, "/v1/genes", {"txt": "BRCA1 binds KRAS."}).status_code == 422
    long = " ".join(["BRCA1 binds the promoter of KRAS ."] * 20)
    over = post(tagger_server, "/v1/genes", {"text": long})
    assert over.status_code == 400 and over.json()["error"]["code"] == "context_length_exceeded"
    cut = post(tagger_server, "/v1/genes", {"text": long, "truncate": True})
    assert cut.status_code == 200 and cut.json()["mentions"][-1]["end"] < len(long) // 2
    assert post(tagger_server, "/v1/generate", {"prompt": "BRCA1"}).status_code == 404
    models = requests.get(f"{tagger_server.url}/v1/models", headers=headers(), timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["tagger"]
