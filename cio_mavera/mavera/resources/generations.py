"""`client.generations`: the generation apps (templates) and generations from them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from ..core import Resource
from ..models import GenerationResult, credits_of


class Generations(Resource):
    """Generate (`/generation-apps`, `/generations`)."""

    def apps(self, *, max_age: dt.timedelta | None = None) -> list[dict[str, Any]]:
        """The generation templates ("apps") and their input fields.

        The listing is free; with `max_age` a copy stored at most that long ago is returned without
        a request. The client's `refresh` forces a new listing.
        """
        core = self._core

        def fetch() -> list[dict[str, Any]]:
            data, _ = core.call("generation_apps", "GET", "/generation-apps")
            return list(data.get("data") or [])

        return core.listings.fetch("generation_apps", fetch, max_age=max_age, refresh=core.refresh)

    def create(self, app_id: str, inputs: Mapping[str, Any], *, persona_id: str | None = None,
               brand_voice_id: str | None = None, title: str | None = None) -> GenerationResult:
        """Run a generation app on `inputs`: one piece of copy (the documented `output`).

        The documented request has no variation count, so N variations are N calls with distinct
        inputs (each cached and budgeted on its own); see jobs/campaigns/variations.py.
        """
        body: dict[str, Any] = {"app_id": app_id, "input_data": dict(inputs)}
        for name, value in (("persona_id", persona_id), ("brand_voice_id", brand_voice_id),
                            ("title", title)):
            if value:
                body[name] = value
        data, cached = self._core.call("generations", "POST", "/generations", body=body,
                                       cost="generation", what=app_id, cacheable=True,
                                       idempotent=False)
        return GenerationResult(data.get("id"), generated_text(data),
                                str(data.get("content_type") or "markdown").lower(),
                                credits_of(data), data, cached)


def generated_text(data: dict[str, Any]) -> str:
    """The generated text: `output` (or its copy `content`), or the old shape's `markdown`."""
    for name in ("output", "content", "markdown"):
        if isinstance(data.get(name), str) and data[name]:
            return data[name]
    return ""
