"""Server-sent event framing for the streaming routes (chat completions, responses, Mave)."""

from __future__ import annotations

import json
from typing import Any


def sse(data: Any, event: str | None = None) -> str:
    """One event: an optional `event:` line and a `data:` line (JSON unless `data` is a string)."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


def pieces(text: str, words_per_piece: int = 4) -> list[str]:
    """`text` cut into chunks that concatenate back to it exactly."""
    words = text.split(" ")
    out = []
    for i in range(0, len(words), words_per_piece):
        piece = " ".join(words[i:i + words_per_piece])
        out.append(piece if i + words_per_piece >= len(words) else piece + " ")
    return out
