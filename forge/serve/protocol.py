"""The HTTP side's vocabulary: request bodies of Forge's own endpoints, the limits a request is checked
against, and the JSON error every refusal returns.

Errors take the OpenAI shape, so OpenAI clients raise them as typed exceptions:
`{"error": {"message": ..., "type": ..., "code": ..., "param": ...}}`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field

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
