"""Cursor pagination and time windows, as the App API needs them (reference §2.3, §3.5)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..errors import ApiError
from .errors import APP_SERVICE

PageFetch = Callable[[str | None], tuple[list[Any], str | None]]

# Empty pages with a `next` followed in a row before giving up. No source says how many a live
# list can hold (UNVERIFIED); each costs one request of the App API's 10 a second.
MAX_EMPTY_PAGES = 25


def cursor_pages(fetch: PageFetch, *, max_empty_pages: int = MAX_EMPTY_PAGES) -> Iterator[list[Any]]:
    """Yield non-empty pages from `fetch(start) -> (items, next)` until `next` is falsy.

    The end is a falsy `next` only ("" on the last page, or null/absent). An empty page that
    still carries a `next` is not proof of the end (Airbyte's live notes on segment membership,
    reference §2.3), so it is followed; `/v1/sender_identities`' trailing empty page ends with
    `next: ""` and stops the loop by that. More than `max_empty_pages` empty pages in a row, or a
    cursor that repeats itself, raise `ApiError` rather than loop or return a list that may be
    incomplete. A short page never ends the list.
    """
    start: str | None = None
    empty_in_a_row = 0
    while True:
        items, next_token = fetch(start)
        if items:
            empty_in_a_row = 0
            yield items
        else:
            empty_in_a_row += 1
        if not next_token:
            return
        if next_token == start:
            raise ApiError(f"Customer.io handed back the cursor {start!r} it was asked for; "
                           "stopped paging so as not to loop (the list may be incomplete) — "
                           "retry later", service=APP_SERVICE)
        if empty_in_a_row > max_empty_pages:
            raise ApiError(f"Customer.io sent {empty_in_a_row} empty pages in a row, each with "
                           f"a next cursor; stopped after {max_empty_pages} (the list may be "
                           "incomplete) — retry later", service=APP_SERVICE)
        start = next_token


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
