"""Parsed Mavera results: the fields jobs use, plus `raw` (the JSON as received) for everything else."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def credits_of(body: Any) -> int:
    """Credits this response charged: `usage.credits_used`, else `credits_charged` (persona create).

    A top-level `credits_used` is a resource's running total (threads, generations, focus groups on
    later reads), not a charge of this call, so it is not counted.
    """
    if not isinstance(body, dict):
        return 0
    usage = body.get("usage")
    if isinstance(usage, dict) and usage.get("credits_used") is not None:
        return int(usage["credits_used"])
    if body.get("credits_charged") is not None:
        return int(body["credits_charged"])
    return 0


@dataclass
class ChatResult:
    """One chat completion: the assistant's text and what it cost."""

    content: str
    usage: dict[str, Any]
    credits: int
    raw: dict[str, Any] = field(repr=False)
    cached: bool = False


@dataclass
class ResponseResult:
    """One Responses-API answer; `parsed` holds the JSON object when a schema was given."""

    text: str
    parsed: dict[str, Any] | None
    usage: dict[str, Any]
    credits: int
    raw: dict[str, Any] = field(repr=False)
    cached: bool = False

    @property
    def content(self) -> str:
        return self.text


@dataclass
class MaveResult:
    """One Mave Agent answer, with its research sources and the thread to continue."""

    content: str
    sources: list[dict[str, Any]]
    personas_used: list[dict[str, Any]]
    validation: dict[str, Any] | None
    thread_id: str | None
    credits: int
    raw: dict[str, Any] = field(repr=False)
    cached: bool = False


@dataclass
class GenerationResult:
    """One generation: its one piece of generated text (markdown or html) and what it cost."""

    id: str | None
    content: str
    content_type: str
    credits: int
    raw: dict[str, Any] = field(repr=False)
    cached: bool = False


@dataclass
class FocusGroupResult:
    """A completed focus group: per-question results, one row per persona answer, ranked stimuli."""

    id: str
    status: str
    questions: list[dict[str, Any]]
    responses: list[dict[str, Any]]
    stimuli: list[dict[str, Any]]
    credits: int
    raw: dict[str, Any] = field(repr=False)
    cached: bool = False
