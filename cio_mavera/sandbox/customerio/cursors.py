"""Opaque page cursors in Customer.io's style: base64 of an offset, `""` when there is no next page.

Live cursors look like `"Mg=="` (base64 of `2`) and, for segment membership, `"MDo2MQ=="`
(base64 of `0:61`); clients must treat them as opaque, so the sandbox encodes offsets the same way.
"""

from __future__ import annotations

import base64
import binascii


class BadCursor(ValueError):
    """A `start` value that this server never handed out."""


def encode_cursor(offset: int, prefix: str = "", hollow: int = 0) -> str:
    """The opaque token for the page starting at `offset` (`hollow`: empty pages already served
    in front of it, see `CioState.hollow_pages`)."""
    return base64.b64encode(f"{prefix}{offset}{f'~{hollow}' if hollow else ''}".encode()).decode()


def decode_position(token: str | None, prefix: str = "") -> tuple[int, int]:
    """(offset, empty pages already served before it) behind `token` ((0, 0) without one)."""
    if not token:
        return 0, 0
    try:
        text = base64.b64decode(token.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadCursor(f"invalid start cursor {token!r}") from exc
    offset, _, hollow = text[len(prefix):].partition("~") if text.startswith(prefix) else ("", "", "")
    if not offset.isdigit() or not (hollow == "" or hollow.isdigit()):
        raise BadCursor(f"invalid start cursor {token!r}")
    return int(offset), int(hollow or 0)


def page_bounds(offset: int, limit: int, total: int, prefix: str = "") -> tuple[int, int, str]:
    """(start, stop, next token) for a page of `limit` items out of `total` starting at `offset`."""
    start = min(offset, total)
    stop = min(start + limit, total)
    return start, stop, (encode_cursor(stop, prefix) if stop < total else "")
