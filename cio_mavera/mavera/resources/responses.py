"""`client.responses`: Responses-API answers, with JSON-schema structured output parsed and checked."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..core import Resource
from ..errors import StructuredOutputError
from ..models import ResponseResult, credits_of
from .chat import DEFAULT_MODEL, as_messages


class Responses(Resource):
    """The Responses API (`POST /responses`)."""

    def create(self, input: str | Sequence[Mapping[str, Any]], *, persona_id: str | None = None,
               schema: Mapping[str, Any] | None = None, schema_name: str = "result",
               model: str = DEFAULT_MODEL, instructions: str | None = None,
               temperature: float | None = None) -> ResponseResult:
        """One Responses-API answer; with `schema`, `.parsed` is the validated JSON object."""
        body: dict[str, Any] = {"model": model,
                                "input": input if isinstance(input, str) else as_messages(input)}
        if persona_id:
            body["persona_id"] = persona_id
        if instructions:
            body["instructions"] = instructions
        if temperature is not None:
            body["temperature"] = temperature
        if schema is not None:
            body["text"] = {"format": {"type": "json_schema", "name": schema_name,
                                       "schema": dict(schema), "strict": True}}

        def check(data: dict[str, Any]) -> None:
            if schema is not None:
                parse_structured(data, schema, schema_name)

        data, cached = self._core.call("responses", "POST", "/responses", body=body,
                                       cost="responses", cacheable=True, idempotent=True,
                                       check=check)
        parsed = parse_structured(data, schema, schema_name) if schema is not None else None
        usage = data.get("usage") or {}
        return ResponseResult(output_text(data), parsed, usage, credits_of(data), data, cached)


def output_text(data: dict[str, Any]) -> str:
    """The answer's text: `output_text`, else the text parts of `output` joined."""
    if isinstance(data.get("output_text"), str):
        return data["output_text"]
    texts = []
    for item in data.get("output") or []:
        for part in (item or {}).get("content") or []:
            if (part or {}).get("type") in ("output_text", "text") and part.get("text") is not None:
                texts.append(str(part["text"]))
    return "".join(texts)


def parse_structured(data: dict[str, Any], schema: Mapping[str, Any] | None,
                     schema_name: str) -> dict[str, Any]:
    """The structured output as a dict, with the schema's required keys present."""
    parsed = data.get("output_parsed")
    if not isinstance(parsed, dict):
        text = output_text(data)
        try:
            parsed = json.loads(text)
        except ValueError:
            raise StructuredOutputError(
                f"Mavera's answer for schema {schema_name!r} is not JSON: {text[:120]!r}") from None
    if not isinstance(parsed, dict):
        raise StructuredOutputError(f"Mavera's answer for schema {schema_name!r} is a "
                                    f"{type(parsed).__name__}, not an object")
    required = list((schema or {}).get("required") or [])
    missing = [k for k in required if k not in parsed]
    if missing:
        raise StructuredOutputError(f"Mavera's answer for schema {schema_name!r} lacks required "
                                    f"key(s) {missing}")
    return parsed
