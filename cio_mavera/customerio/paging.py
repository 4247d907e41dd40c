"""Cursor pagination and time windows, as the App API needs them (reference §2.3, §3.5)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger("cio_mavera.customerio")

PageFetch = Callable[[str | None], tuple[list[Any], str | None]]


def cursor_pages(fetch: PageFetch) -> Iterator[list[Any]]:
    """Yield non-empty pages from `fetch(start) -> (items, next)` until the list ends.

    The end is a falsy `next` ("" on the last page, or null/absent), or an empty page after the
    first: `/v1/sender_identities` hands out a `next` after its last item and then an empty page.
    (Airbyte notes an empty segment-membership page "is not proof of the end"; we follow the
    reference's client notes §8 and stop, since no source shows a later page with items.)
    A short page never ends the list.
    """
    start: str | None = None
    first = True
    while True:
        items, next_token = fetch(start)
        if not items and not first:
            return
        if items:
            yield items
        if not next_token:
            return
        if next_token == start:
            log.warning("cursor %r repeated itself; stopping to avoid an endless loop", start)
            return
        start, first = next_token, False


def inclusive_windows(start: int, end: int, window_s: int) -> list[tuple[int, int]]:
    """Split [start, end] (unix seconds, both inclusive) into windows that share no second.

    The messages endpoint treats `start_ts` and `end_ts` as inclusive, so each window ends one
    second before the next begins; otherwise a message created on a boundary is counted twice.
    """
    if window_s < 1:
        raise ValueError("window_s must be at least 1 second")
    windows = []
    lo = start
    while lo <= end:
        hi = min(lo + window_s - 1, end)
        windows.append((lo, hi))
        lo = hi + 1
    return windows
