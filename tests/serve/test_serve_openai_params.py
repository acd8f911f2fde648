"""`forge serve` on one interface's address (127.0.0.2): the OpenAI chat endpoint honours the parameters it
supports as OpenAI does and refuses every other with 400 naming it (strict types, no 500 for any body), a
truncated paper leaves room for the answer and says how much was read, and stopping prints nothing the user
did not cause."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import requests

from serve_support import ServerProcess, build_run_dir, free_port, headers

pytestmark = pytest.mark.slow
HOST = "127.0.0.2"  # an address of the loopback interface that is not one of LitServe's three hosts
MESSAGES = [{"role": "user", "content": "Which genes regulate DNA repair?"}]
PAPER = ("BRCA1 and TP53 regulate DNA repair in breast cells. We used CRISPR screens and RNA-seq. "
         "Loss of PTEN activates tumor growth in lung tissue. ")


@pytest.fixture(scope="module")
def server(tiny_llama_dir: Path, forge_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    # the prompt limit as large as the model's context (4096): a truncated paper used to fill all of it
    run_dir = build_run_dir(tiny_llama_dir, tmp_path_factory.mktemp("serve-params"),
                            serving={"max_input_tokens": 4096, "max_new_tokens": 64,
                                     "max_request_bytes": 1_000_000}, name="params")
    log = tmp_path_factory.mktemp("serve-params-log") / "server.log"
    process = ServerProcess(run_dir, free_port(), log, env={"FORGE_CACHE": str(forge_cache), "OMP_NUM_THREADS": "1"},
                            args=("--host", HOST))
    process.url = process.url.replace("127.0.0.1", HOST)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def chat(server, body: dict) -> requests.Response:
    return requests.post(f"{server.url}/v1/chat/completions", json=body, headers=headers(), timeout=60)


def test_it_listens_on_that_address_only(server) -> None:
    assert requests.get(f"{server.url}/health", timeout=10).status_code == 200
    port = server.url.rsplit(":", 1)[1]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=5)


@pytest.mark.parametrize("param, value", [("max_new_tokens", 5), ("logit_bias", {"5": 10}), ("logprobs", True),
                                          ("top_logprobs", 2), ("presence_penalty", 0.5),
                                          ("response_format", {"type": "json_object"}), ("tools", [{"type": "function",
                                          "function": {"name": "f"}}]), ("stream_options", {"include_usage": True})])
def test_a_parameter_it_does_not_implement_is_refused_by_name(server, param: str, value: object) -> None:
    response = chat(server, {"model": "m", "messages": MESSAGES, "max_tokens": 2, param: value})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_parameter" and error["param"] == param


@pytest.mark.parametrize("param, value, code", [("max_tokens", "16", "invalid_type"),
                                                ("max_tokens", True, "invalid_type"),
                                                ("temperature", True, "invalid_type"), ("seed", "7", "invalid_type"),
                                                ("n", 1.0, "invalid_type"), ("max_tokens", 0, "invalid_value"),
                                                ("max_tokens", -3, "invalid_value"),
                                                ("max_completion_tokens", 0, "invalid_value")])
def test_types_are_strict_and_token_counts_positive(server, param: str, value: object, code: str) -> None:
    response = chat(server, {"model": "m", "messages": MESSAGES, param: value})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code and response.json()["error"]["param"] == param


def test_what_asks_for_nothing_is_accepted_and_max_completion_tokens_counts(server) -> None:
    response = chat(server, {"model": "m", "messages": MESSAGES, "max_completion_tokens": 3, "max_tokens": 50,
                             "presence_penalty": 0, "frequency_penalty": 0.0, "logprobs": False, "user": "u1",
                             "response_format": {"type": "text"}})
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] <= 3  # the newer name wins, as OpenAI's


def test_a_seed_reproduces_a_sampled_answer(server) -> None:
    body = {"model": "m", "messages": MESSAGES, "max_tokens": 12, "temperature": 1.5}
    answers = {seed: [chat(server, {**body, "seed": seed}).json()["choices"][0]["message"]["content"]
                      for _ in range(2)] for seed in (1, 2, 3)}
    for seed, (first, second) in answers.items():
        assert first == second, seed
    assert len({first for first, _ in answers.values()}) > 1  # the seed, not the prompt, decides


def test_no_request_body_gives_a_500(server) -> None:
    """Random bodies built from the parameters' names and values of every JSON type: 200 or a 4xx, never 5xx."""
    rng = random.Random(20261204)
    names = ["model", "messages", "temperature", "top_p", "n", "max_tokens", "max_completion_tokens", "stop",
             "stream", "seed", "user", "response_format", "logprobs", "logit_bias", "tools", "tool_choice",
             "presence_penalty", "max_new_tokens", "", "messages\u0000"]
    values = [None, True, False, 0, -1, 1, 2, 1.5, -0.5, 1e308, 2**70, "", "16", "text", [], [1], ["a", "b"], {},
              {"type": "json_object"}, {"type": "text"}, MESSAGES, [{"role": "user"}], [{"role": 1, "content": "x"}],
              [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], [{"role": "user", "content": [{}]}]]
    for _ in range(80):
        body: object = {rng.choice(names): rng.choice(values) for _ in range(rng.randint(0, 4))}
        if rng.random() < 0.7:
            body = {"messages": MESSAGES, "max_tokens": 2, **body}  # mostly valid bodies with one odd value
        if rng.random() < 0.05:
            body = rng.choice(values)
        response = requests.post(f"{server.url}/v1/chat/completions", data=json.dumps(body),
                                 headers={**headers(), "Content-Type": "application/json"}, timeout=60)
        assert response.status_code < 500, (body, response.text)
        if response.status_code != 200:
            assert response.json()["error"]["message"], body


def test_a_truncated_paper_leaves_room_for_the_answer_and_says_how_much_was_read(server) -> None:
    long_paper = PAPER * 400  # some 12,000 tokens, far over the 4096-token context
    for path, body in (("/v1/summarize", {"text": long_paper, "truncate": True, "max_tokens": 32}),
                       ("/v1/summarize", {"text": long_paper, "truncate": True}),
                       ("/v1/analyze", {"text": long_paper, "truncate": True, "max_tokens": 8, "fields": ["genes"]})):
        response = requests.post(f"{server.url}{path}", json=body, headers=headers(), timeout=120)
        assert response.status_code == 200, (path, response.text)
        out = response.json()
        answer_room = body.get("max_tokens", 64)
        assert out["usage"]["prompt_tokens"] + answer_room <= 4096
        read = out["input"]
        assert read["truncated"] and read["characters"] == len(long_paper)
        assert 0 < read["characters_read"] < len(long_paper) and read["fraction_read"] < 1
    whole = requests.post(f"{server.url}/v1/summarize", json={"text": PAPER, "truncate": True, "max_tokens": 4},
                          headers=headers(), timeout=60).json()
    assert whole["input"] == {"truncated": False, "characters_read": len(PAPER), "characters": len(PAPER),
                              "fraction_read": 1.0}


def test_stopping_prints_nothing_the_user_did_not_cause(server) -> None:
    assert server.stop() == 0
    log = server.log.read_text()
    assert "forge serve: stopped" in log
    for noise in ("Warning", "leaked", "Traceback", "\r"):
        assert noise not in log, log
