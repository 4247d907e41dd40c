"""`client.usage`: the billing period's credits and the key's rate limit."""

from __future__ import annotations

from typing import Any

from ..core import Resource


class Usage(Resource):
    """Usage statistics (`GET /usage`)."""

    def get(self) -> dict[str, Any]:
        """The billing period's usage: credits used/remaining, requests, the key's rate limit."""
        data, _ = self._core.call("usage", "GET", "/usage")
        return data
