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

    def create(self, app_id: str, inputs: Mapping[str, Any], *, n: int = 1,
               persona_id: str | None = None, brand_voice_id: str | None = None,
               title: str | None = None) -> GenerationResult:
        """Run a generation app on `inputs`, asking for `n` variations."""
        body: dict[str, Any] = {"app_id": app_id, "input_data": dict(inputs)}
        if n != 1:
            # UNVERIFIED: the reference has no variation-count field; `n` follows the OpenAI name.
            body["n"] = n
        for name, value in (("persona_id", persona_id), ("brand_voice_id", brand_voice_id),
                            ("title", title)):
            if value:
                body[name] = value
        data, cached = self._core.call("generations", "POST", "/generations", body=body,
                                       cost="generation", what=app_id, cacheable=True,
                                       idempotent=False)
        return GenerationResult(data.get("id"), variations(data), credits_of(data), data, cached)


def variations(data: dict[str, Any]) -> list[str]:
    """The text variations of a generation body (one or more)."""
    found = data.get("variations")
    if isinstance(found, list) and found:
        return [str(v.get("content") or v.get("output") or "") if isinstance(v, dict) else str(v)
                for v in found]
    # Old generation shape used `markdown`; the new one `output` and `content`.
    for name in ("content", "output", "markdown"):
        if data.get(name):
            return [str(data[name])]
    return []
