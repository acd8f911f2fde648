"""`forge serve` over real HTTP on 127.0.0.1: every endpoint (an OpenAI client too, streaming included), the
bad inputs of the issue, a bounded concurrent load and a flood; the server must keep serving throughout."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import requests

from serve_support import API_KEY, headers, sse_events

pytestmark = pytest.mark.slow
PAPER = ("BRCA1 and TP53 regulate DNA repair in breast cells. We used CRISPR screens and RNA-seq. "
         "Loss of PTEN activates tumor growth in lung tissue.")


def post(server, path: str, body: dict, key: str | None = API_KEY, **kwargs) -> requests.Response:
    return requests.post(f"{server.url}{path}", json=body, headers=headers(key), timeout=60, **kwargs)


def error_of(response: requests.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and body["error"]["message"], body
    return body["error"]


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0, timeout=60)


def test_health_info_and_metrics_need_no_key(server) -> None:
    health = requests.get(f"{server.url}/health", timeout=10)
    assert health.status_code == 200 and health.text == "ok"
    assert requests.get(f"{server.url}/info", timeout=10).json()["model"]["run"] == "quickstart"
    metrics = requests.get(f"{server.url}/metrics", timeout=10)
    assert metrics.status_code == 200 and "forge_queue_depth" in metrics.text


def test_openai_client_chat_and_models(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == ["quickstart"]
    reply = client.chat.completions.create(model="quickstart", max_tokens=8, temperature=0,
                                           messages=[{"role": "system", "content": "You are a geneticist."},
                                                     {"role": "user", "content": "What does TP53 do?"}])
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert 1 <= reply.usage.completion_tokens <= 8 and reply.usage.prompt_tokens > 5
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_openai_client_streaming_matches_the_whole_answer(client: openai.OpenAI) -> None:
    ask = {"model": "quickstart", "max_tokens": 12, "temperature": 0,
           "messages": [{"role": "user", "content": "Which genes regulate apoptosis?"}]}
    whole = client.chat.completions.create(**ask).choices[0].message.content
    chunks = list(client.chat.completions.create(**ask, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].usage.completion_tokens <= 12


def test_openai_client_gets_typed_errors(server, client: openai.OpenAI) -> None:
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0).chat.completions.create(
            model="quickstart", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model="quickstart", messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=10_000)


def test_generate_whole_and_streamed(server) -> None:
    body = {"prompt": "BRCA1 regulates", "max_tokens": 10, "stop": ["zzzz"]}
    whole = post(server, "/v1/generate", body)
    assert whole.status_code == 200, whole.text
    result = whole.json()
    assert result["finish_reason"] in ("stop", "length") and result["usage"]["completion_tokens"] <= 10
    streamed = post(server, "/v1/generate", {**body, "stream": True}, stream=True)
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    events = sse_events(streamed)
    assert events[-1] == "[DONE]" and events[-2]["finish_reason"] == result["finish_reason"]
    assert "".join(e["text"] for e in events[:-1]) == result["text"]


def test_summarize_and_analyze(server) -> None:
    summary = post(server, "/v1/summarize", {"text": PAPER, "title": "DNA repair", "max_tokens": 12})
    assert summary.status_code == 200, summary.text
    assert isinstance(summary.json()["summary"], str) and summary.json()["usage"]["completion_tokens"] <= 12
    analysis = post(server, "/v1/analyze", {"text": PAPER, "max_tokens": 12})
    assert analysis.status_code == 200, analysis.text
    result = analysis.json()
    assert all(isinstance(result[f], list) and all(isinstance(x, str) for x in result[f])
               for f in ("genes", "methods", "findings"))
    assert set(result["raw"]) == {"genes", "methods", "findings"}
    only_genes = post(server, "/v1/analyze", {"text": PAPER, "fields": ["genes"], "max_tokens": 4}).json()
    assert "genes" in only_genes and "methods" not in only_genes


def test_long_paper_is_refused_unless_truncated(server) -> None:
    long_text = PAPER * 40  # well over serving.max_input_tokens (256)
    refused = post(server, "/v1/summarize", {"text": long_text, "max_tokens": 4})
    assert refused.status_code == 400 and error_of(refused)["code"] == "context_length_exceeded"
    assert "truncate" in error_of(refused)["message"]
    cut = post(server, "/v1/summarize", {"text": long_text, "max_tokens": 4, "truncate": True})
    assert cut.status_code == 200, cut.text
    assert cut.json()["usage"]["prompt_tokens"] <= 256


def test_batch_answers_every_input_in_order(server) -> None:
    prompts = ["gene " * n for n in (1, 3, 5, 7, 9)]
    inputs = [{"prompt": p, "max_tokens": 3 + i} for i, p in enumerate(prompts)]
    response = post(server, "/v1/batch", {"task": "generate", "inputs": inputs})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 5
    prompt_tokens = [r["usage"]["prompt_tokens"] for r in results]
    assert prompt_tokens == sorted(prompt_tokens) and len(set(prompt_tokens)) == 5  # matched to its input
    assert all(r["usage"]["completion_tokens"] <= 3 + i for i, r in enumerate(results))
    papers = post(server, "/v1/batch", {"task": "analyze", "inputs": [{"text": PAPER, "max_tokens": 4}] * 2})
    assert papers.status_code == 200 and all("genes" in r for r in papers.json()["results"])
    bad = post(server, "/v1/batch", {"task": "generate",
                                     "inputs": [{"prompt": "a"}, {"prompt": "b", "max_tokens": 999}]})
    assert bad.status_code == 400 and error_of(bad)["param"] == "inputs[1].max_tokens"
    too_many = post(server, "/v1/batch", {"task": "generate", "inputs": [{"prompt": "a"}] * 17})
    assert too_many.status_code == 400 and error_of(too_many)["code"] == "too_many_inputs"


@pytest.mark.parametrize("case", ["malformed_json", "missing_field", "unknown_field", "not_json", "prompt_over_limit",
                                  "stream_prompt_over_limit", "max_tokens_over_limit", "wrong_key", "no_key",
                                  "body_too_large", "unknown_path", "bad_role"])
def test_bad_input_gets_its_status_and_a_json_error(server, case: str) -> None:
    url, auth = f"{server.url}/v1/generate", {**headers(), "Content-Type": "application/json"}
    expected = {"malformed_json": (400, "invalid_json"), "missing_field": (422, "missing_field"),
                "unknown_field": (422, None), "not_json": (415, "unsupported_media_type"),
                "prompt_over_limit": (400, "context_length_exceeded"),
                "stream_prompt_over_limit": (400, "context_length_exceeded"),
                "max_tokens_over_limit": (400, "max_tokens_exceeded"), "wrong_key": (401, "invalid_api_key"),
                "no_key": (401, "invalid_api_key"), "body_too_large": (413, "request_too_large"),
                "unknown_path": (404, None), "bad_role": (400, "invalid_value")}[case]
    if case == "malformed_json":
        response = requests.post(url, data=b'{"prompt": "x"', headers=auth, timeout=30)
    elif case == "missing_field":
        response = post(server, "/v1/generate", {"max_tokens": 3})
    elif case == "unknown_field":
        response = post(server, "/v1/generate", {"prompt": "x", "max_new_tokens": 3})
    elif case == "not_json":
        response = requests.post(url, data={"prompt": "x"}, headers=headers(), timeout=30)
    elif case in ("prompt_over_limit", "stream_prompt_over_limit"):
        response = post(server, "/v1/generate", {"prompt": "gene " * 400, "stream": case.startswith("stream")})
    elif case == "max_tokens_over_limit":
        response = post(server, "/v1/generate", {"prompt": "x", "max_tokens": 65})
    elif case == "wrong_key":
        response = post(server, "/v1/generate", {"prompt": "x"}, key="not-the-key")
    elif case == "no_key":
        response = post(server, "/v1/generate", {"prompt": "x"}, key=None)
    elif case == "body_too_large":
        response = post(server, "/v1/generate", {"prompt": "x" * 70_000})
    elif case == "unknown_path":
        response = post(server, "/v1/nothing-here", {"prompt": "x"})
    else:
        response = post(server, "/v1/chat/completions", {"model": "m", "messages": [{"role": "robot", "content": "x"}]})
    status, code = expected
    assert response.status_code == status, response.text
    error = error_of(response)
    if code:
        assert error["code"] == code
    # and the server goes on serving
    assert post(server, "/v1/generate", {"prompt": "TP53", "max_tokens": 2}).status_code == 200


def test_200_requests_from_16_clients_are_all_answered_and_matched(server, serve_run_dir) -> None:
    """Each request has its own prompt length, so the usage of each answer shows it is the answer to that request."""
    from transformers import AutoTokenizer

    from forge.serve.prompts import encode, encode_messages

    tokenizer = AutoTokenizer.from_pretrained(serve_run_dir / "adapter")
    local = threading.local()

    def call(i: int) -> tuple[int, int, dict]:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        prompt, max_tokens = "case" + " cells" * i, 1 + i % 8  # " cells" is one token: 200 prompt lengths
        if i % 4 == 3:  # a streamed chat
            body = {"model": "m", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
                    "stream": True, "temperature": 0}
            response = session.post(f"{server.url}/v1/chat/completions", json=body, headers=headers(), stream=True,
                                    timeout=120)
            events = sse_events(response)
            usage = events[-2]["usage"]
            finish = next((c["finish_reason"] for e in events for c in e.get("choices", []) if c.get("finish_reason")),
                          None)
            expected = len(encode_messages(tokenizer, [{"role": "user", "content": prompt}]))
        elif i % 2:
            body = {"model": "m", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
            response = session.post(f"{server.url}/v1/chat/completions", json=body, headers=headers(), timeout=120)
            assert response.status_code == 200, (i, response.text)
            usage, finish = response.json()["usage"], response.json()["choices"][0]["finish_reason"]
            expected = len(encode_messages(tokenizer, [{"role": "user", "content": prompt}]))
        else:
            response = session.post(f"{server.url}/v1/generate", json={"prompt": prompt, "max_tokens": max_tokens},
                                    headers=headers(), timeout=120)
            assert response.status_code == 200, (i, response.text)
            usage, finish = response.json()["usage"], response.json()["finish_reason"]
            expected = len(encode(tokenizer, prompt, chat=False))
        assert usage["prompt_tokens"] == expected, (i, usage, expected)
        assert usage["completion_tokens"] <= max_tokens, (i, usage)
        # an answer is never empty unless the model ended it at once (its first token was end-of-text)
        assert usage["completion_tokens"] >= 1 or finish == "stop", (i, usage, finish)
        return i, response.status_code, usage

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(200)))
    assert [i for i, _, _ in results] == list(range(200))
    assert all(status == 200 for _, status, _ in results)
    assert post(server, "/v1/generate", {"prompt": "after the load", "max_tokens": 2}).status_code == 200


def test_a_flood_is_refused_with_429_and_the_server_recovers(server) -> None:
    barrier = threading.Barrier(96)

    def call(i: int) -> requests.Response:
        barrier.wait(30)
        return post(server, "/v1/generate", {"prompt": f"flood {i}", "max_tokens": 64})

    with ThreadPoolExecutor(96) as pool:
        responses = list(pool.map(call, range(96)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(429) >= 1 and statuses.count(200) >= 1
    busy = next(r for r in responses if r.status_code == 429)
    assert error_of(busy)["code"] == "server_busy" and busy.headers["Retry-After"] == "1"
    assert requests.get(f"{server.url}/health", timeout=10).status_code == 200
    assert post(server, "/v1/generate", {"prompt": "after the flood", "max_tokens": 2}).status_code == 200


def test_metrics_count_requests_tokens_and_batches(server) -> None:
    post(server, "/v1/generate", {"prompt": "metrics", "max_tokens": 3})
    post(server, "/v1/generate", {"prompt": "metrics"}, key=None)
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line and not line.startswith("#")}
    assert samples['forge_requests_total{endpoint="/v1/generate",status="200"}'] >= 1
    assert samples['forge_requests_total{endpoint="/v1/generate",status="401"}'] >= 1
    assert samples['forge_request_duration_seconds_count{endpoint="/v1/generate"}'] >= 1
    assert samples["forge_generated_tokens_total"] >= 3 and samples["forge_prompt_tokens_total"] >= 1
    assert samples["forge_batch_size_count"] >= 1
    assert samples["forge_queue_depth"] == 0 and samples["forge_requests_pending"] == 0
