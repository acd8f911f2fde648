"""The HTTP side's vocabulary: request bodies of Forge's own endpoints, the limits a request is checked
against, and the JSON error every refusal returns.

Errors take the OpenAI shape, so OpenAI clients raise them as typed exceptions:
`{"error": {"message": ..., "type": ..., "code": ..., "param": ...}}`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
               415: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
               503: "overloaded_error", 504: "timeout_error"}


def error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "code": code,
                      "param": param}}


class ApiError(HTTPException):
    """A refusal with an HTTP status and a JSON error body (see error_body)."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, detail=error_body(status, message, code, param)["error"], headers=headers)


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; from the recipe's serving section and the model's context length."""

    max_new_tokens: int
    max_input_tokens: int
    context_length: int | None
    max_pending: int
    max_batch_inputs: int
    timeout: float


class Body(BaseModel):
    """Unknown keys are refused, so a misspelt parameter is an error rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Sampling(Body):
    max_tokens: int | None = Field(None, ge=1,
                                   description="Tokens to generate at most; default serving.max_new_tokens.")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 is greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    stop: str | list[str] | None = Field(None, description="Up to 4 strings that end the answer.")


class GenerateRequest(Sampling):
    prompt: str = Field(..., min_length=1, description="The text to continue, e.g. a scientific question.")
    stream: bool = Field(False, description="Send the text as server-sent events while it is generated.")
    chat: bool | None = Field(None, description="Wrap the prompt as a user turn of the chat template; default: "
                                                "when the run trained on chat data.")


class PaperInput(Sampling):
    text: str = Field(..., min_length=1, description="An abstract or a paper's full text.")
    title: str = Field("", description="The paper's title, when known.")
    truncate: bool = Field(False, description="Cut a text over the input limit instead of refusing it.")


class SummarizeRequest(PaperInput):
    stream: bool = Field(False, description="Send the summary as server-sent events while it is generated.")


class AnalyzeRequest(PaperInput):
    fields: list[Literal["genes", "methods", "findings"]] = Field(
        default_factory=lambda: ["genes", "methods", "findings"], min_length=1, description="What to extract.")


class BatchRequest(Body):
    task: Literal["generate", "summarize", "analyze"] = Field(..., description="What to do with every input.")
    inputs: list[dict[str, Any]] = Field(..., min_length=1, description="Request bodies of that task (no stream).")


BATCH_MODELS: dict[str, type[Sampling]] = {"generate": GenerateRequest, "summarize": SummarizeRequest,
                                           "analyze": AnalyzeRequest}


# ------------------------------------------------------------------------------------ OpenAI chat requests
class ChatContentPart(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    type: str
    text: str = ""


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    role: str
    content: str | list[ChatContentPart] | None = None
    name: str | None = None


class ChatResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class ChatRequest(BaseModel):
    """The parameters of OpenAI's chat completions that Forge honours, with OpenAI's types taken strictly
    ("16" is not a number, true is not 1)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = ""
    messages: list[ChatMessageIn]
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    stream: bool | None = None
    seed: int | None = Field(None, ge=-2**63, le=2**63 - 1)  # a 64-bit integer, as OpenAI's
    user: str | None = None  # OpenAI's end-user id for abuse monitoring: no effect on the answer
    response_format: ChatResponseFormat | None = None


# OpenAI parameters Forge does not implement, accepted only at the value that asks for nothing (so a client that
# always sends its defaults works); any other value, and any parameter not named here or in ChatRequest, is
# refused with 400 unsupported_parameter rather than silently ignored.
NEUTRAL_CHAT_VALUES: dict[str, tuple[Any, ...]] = {
    "presence_penalty": (0, 0.0, None), "frequency_penalty": (0, 0.0, None), "logprobs": (False, None),
    "top_logprobs": (None,), "logit_bias": (None, {}), "tools": (None, []), "tool_choice": (None, "none"),
    "parallel_tool_calls": (None,), "functions": (None, []), "function_call": (None, "none"),
    "stream_options": (None,),
}


def parse_chat_request(body: Any) -> ChatRequest:
    """A chat request body checked as OpenAI checks it; ApiError 400 naming the parameter otherwise."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", "invalid_type")
    known = set(ChatRequest.model_fields)
    for key, value in body.items():
        if key in known or (key in NEUTRAL_CHAT_VALUES and _asks_nothing(value, NEUTRAL_CHAT_VALUES[key])):
            continue
        what = f"{key} is not supported by this server" if key in NEUTRAL_CHAT_VALUES else \
            f"unrecognized request argument: {key}"
        raise ApiError(400, what, "unsupported_parameter", str(key))
    try:
        request = ChatRequest.model_validate({k: v for k, v in body.items() if k in known})
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
        code = "invalid_type" if first["type"].endswith("_type") or first["type"] in _TYPE_ERRORS else "invalid_value"
        raise ApiError(400, f"{where}: {first['msg']}", code, where or None) from None
    if request.response_format is not None and request.response_format.type != "text":
        raise ApiError(400, f"response_format {request.response_format.type} is not supported by this server: it "
                            "cannot guarantee JSON output; ask for JSON in the prompt and parse the answer",
                       "unsupported_parameter", "response_format")
    return request


def _asks_nothing(value: Any, neutral: tuple[Any, ...]) -> bool:
    return value is None or any(value == v and type(value) is type(v) for v in neutral)  # False is not 0


# pydantic names the member of a union it tried in an error's location; the parameter's path leaves it out
_UNION_TAGS = {"str", "list[str]", "list[ChatContentPart]", "ChatContentPart", "int", "float", "bool",
               "ChatResponseFormat", "dict[str,any]"}
_TYPE_ERRORS = {"missing", "model_type", "model_attributes_type", "list_type", "dict_type", "is_instance_of"}
