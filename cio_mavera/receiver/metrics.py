"""Receiver counters rendered in the Prometheus text exposition format (version 0.0.4)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..customerio.webhooks import REASONS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "cio_mavera_webhooks"

# Every rejection reason the receiver and its connection limits use, so each series exists (at 0)
# from the first scrape. None of these is a signed body: those are never refused.
REJECT_REASONS = (
    "missing_signature", "bad_timestamp", "stale_timestamp", "bad_signature", "too_large",
    "queue_unavailable", "header_too_large", "header_timeout", "body_timeout", "over_capacity",
)
# Why a signed body became a dead letter at the receiver: the parser's codes, plus the queue refusing
# the row and a parser bug.
DEAD_LETTER_REASONS = (*REASONS, "queue_refused", "parser_error")


@dataclass
class ReceiverMetrics:
    """In-process counters of one receiver (each process exposes its own; Prometheus sums them)."""

    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter = field(default_factory=Counter)
    dead_lettered: Counter = field(default_factory=Counter)

    def reject(self, reason: str) -> None:
        self.rejected[reason] += 1

    def dead_letter(self, reason: str) -> None:
        self.dead_lettered[reason] += 1

    def render(self, queue_depth: int | None, backend: str, dead_waiting: int | None = None) -> str:
        """The metrics page; `queue_depth` None means the queue could not be read."""
        lines = [
            f"# HELP {PREFIX}_received_total Webhook requests received.",
            f"# TYPE {PREFIX}_received_total counter",
            f"{PREFIX}_received_total {self.received}",
            f"# HELP {PREFIX}_accepted_total Events committed to the queue (first delivery).",
            f"# TYPE {PREFIX}_accepted_total counter",
            f"{PREFIX}_accepted_total {self.accepted}",
            f"# HELP {PREFIX}_duplicates_total Events acknowledged that were already queued (same event_id).",
            f"# TYPE {PREFIX}_duplicates_total counter",
            f"{PREFIX}_duplicates_total {self.duplicates}",
            f"# HELP {PREFIX}_rejected_total Webhook requests rejected, by reason.",
            f"# TYPE {PREFIX}_rejected_total counter",
        ]
        for reason in sorted(set(REJECT_REASONS) | set(self.rejected)):
            lines.append(f'{PREFIX}_rejected_total{{reason="{reason}"}} {self.rejected[reason]}')
        lines += [
            f"# HELP {PREFIX}_dead_lettered_total Signed bodies this receiver stored as dead letters "
            "and acknowledged, by reason.",
            f"# TYPE {PREFIX}_dead_lettered_total counter",
        ]
        for reason in sorted(set(DEAD_LETTER_REASONS) | set(self.dead_lettered)):
            lines.append(f'{PREFIX}_dead_lettered_total{{reason="{reason}"}} {self.dead_lettered[reason]}')
        lines += [
            f"# HELP {PREFIX}_dead_letters Dead letters waiting in the store (every receiver and worker).",
            f"# TYPE {PREFIX}_dead_letters gauge",
        ]
        if dead_waiting is not None:
            lines.append(f'{PREFIX}_dead_letters{{backend="{backend}"}} {dead_waiting}')
        lines += [
            f"# HELP {PREFIX}_queue_depth Events queued and not yet acknowledged by a worker.",
            f"# TYPE {PREFIX}_queue_depth gauge",
        ]
        if queue_depth is not None:
            lines.append(f'{PREFIX}_queue_depth{{backend="{backend}"}} {queue_depth}')
        lines += [
            f"# HELP {PREFIX}_queue_up 1 when the queue just committed and answered the depth query.",
            f"# TYPE {PREFIX}_queue_up gauge",
            f'{PREFIX}_queue_up{{backend="{backend}"}} {0 if queue_depth is None else 1}',
        ]
        return "\n".join(lines) + "\n"
