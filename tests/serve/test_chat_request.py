"""The chat endpoint's request check (no server): any JSON body is either a ChatRequest or an ApiError 400 that
names the parameter, never another exception (which the server would answer with a 500)."""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forge.serve.protocol import ApiError, ChatRequest, parse_chat_request

MESSAGES = [{"role": "user", "content": "hi"}]
NAMES = sorted(ChatRequest.model_fields) + ["presence_penalty", "frequency_penalty", "logprobs", "logit_bias",
                                             "tools", "tool_choice", "max_new_tokens", "functions", ""]
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=8)


def check(body: Any) -> None:
    try:
        request = parse_chat_request(body)
    except ApiError as e:
        assert e.status_code == 400 and e.detail["message"] and e.detail["code"], e.detail
        return
    assert isinstance(request, ChatRequest) and request.messages is not None


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(NAMES), JSON, max_size=5), st.booleans())
def test_any_body_is_a_request_or_a_400(body: dict[str, Any], with_messages: bool) -> None:
    check({"messages": MESSAGES, **body} if with_messages else body)


@settings(max_examples=100, deadline=None)
@given(JSON)
def test_a_body_that_is_not_an_object_is_a_400(body: Any) -> None:
    check(body)


@pytest.mark.parametrize("param, value", [("max_tokens", 2**70), ("temperature", 1e308), ("n", -1), ("seed", 2**64),
                                          ("stop", [""] * 9), ("messages", [{"role": "user", "content": None}])])
def test_extreme_values_do_not_escape_the_check(param: str, value: Any) -> None:
    check({"messages": MESSAGES, param: value})


@pytest.mark.parametrize("seed", [0, -1, -2**63, 2**63 - 1, 2**63 - 1 + 7])  # the last: seed + i of choice i
def test_every_seed_the_check_lets_through_seeds_a_generator(seed: int) -> None:
    from forge.serve.generate import _generator

    assert _generator(seed, "cpu") is not None
    with pytest.raises(ApiError):
        parse_chat_request({"messages": MESSAGES, "seed": 2**63})
