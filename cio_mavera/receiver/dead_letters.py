"""Dead letters: signed webhook bodies the receiver or the worker could not use, and what to do with them.

They are kept by the queue backend (a table in the SQLite file, hashes beside the Redis stream), raw
with the reason and when, so nothing Customer.io delivered is lost while the stream keeps flowing.
Once the parser learns a shape, `replay_dead_letters` puts what it now reads back into the queue;
`dead_letter_summary` is what job 3's report shows.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..customerio.webhooks import MalformedWebhook, parse_event
from .queues import DeadLetter, WebhookQueue, open_queue, sqlite_path

__all__ = ["DeadLetter", "ReplayResult", "dead_letter_summary", "replay_dead_letters"]


@dataclass
class ReplayResult:
    """What a replay did: keys put back into the queue, and keys that still fail (with the reason)."""

    replayed: list[str] = field(default_factory=list)
    still_failing: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False


def replay_dead_letters(queue: WebhookQueue, keys: list[str] | None = None, *,
                        dry_run: bool = False) -> ReplayResult:
    """Re-parse waiting dead letters (all, or those whose key starts with one of `keys`); queue those
    the parser now reads, under their event_id, and mark them replayed. The worker takes it from there."""
    result = ReplayResult(dry_run=dry_run)
    for letter in queue.dead_letters():
        if keys is not None and not any(letter.key.startswith(prefix) for prefix in keys):
            continue
        try:
            event = parse_event(letter.payload)
        except MalformedWebhook as exc:
            result.still_failing[letter.key] = f"{exc.code}: {exc}"
            continue
        if dry_run or queue.replay_dead(letter.key, event.event_id):
            result.replayed.append(letter.key)
    return result


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat(timespec="seconds")


def dead_letter_summary(queue: WebhookQueue | str | Path) -> dict[str, Any]:
    """Dead letters waiting in `queue` (an open queue, a queue URL or a SQLite path), for a report.

    `{"waiting": n, "by_reason": {code: n}, "by_stage": {"receiver"|"worker": n}, "oldest": iso,
    "newest": iso, "replayed": n}`; a SQLite path that does not exist reads as no dead letters.
    """
    if not isinstance(queue, str | Path):
        return _summary(queue.dead_letters(), len(queue.dead_letters(replayed=True)))
    path = sqlite_path(queue)
    if path is not None and not path.exists():
        return _summary([], 0)
    opened = open_queue(queue)
    try:
        return _summary(opened.dead_letters(), len(opened.dead_letters(replayed=True)))
    finally:
        opened.close()


def _summary(letters: list[DeadLetter], replayed: int) -> dict[str, Any]:
    return {
        "waiting": len(letters),
        "by_reason": dict(Counter(letter.reason for letter in letters).most_common()),
        "by_stage": dict(Counter(letter.stage for letter in letters).most_common()),
        "oldest": _iso(min((letter.dead_at for letter in letters), default=None)),
        "newest": _iso(max((letter.dead_at for letter in letters), default=None)),
        "replayed": replayed,
    }
