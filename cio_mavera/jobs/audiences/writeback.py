"""Job 2 write-back: each person's cluster and persona name to Customer.io through Track v2 batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from cio_mavera.connect import Connection
from cio_mavera.customerio.track import BatchFailure, TrackClient, split_batch
from cio_mavera.errors import InvalidParameter
from cio_mavera.jobs.audiences.clustering import ClusterResult
from cio_mavera.jobs.audiences.data import CLUSTER_ATTRIBUTE, KEY, PERSONA_ATTRIBUTE


@dataclass
class WriteBackReport:
    """What a write-back did (or, in a dry run, would do)."""

    dry_run: bool
    people: int
    operations: int
    requests: int
    sample: list[dict[str, Any]]
    accepted: int = 0
    failed_first_attempt: int = 0
    retried: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)  # final, after the retry

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary for results.json."""
        return asdict(self)


def write_back_operations(assignments: pd.DataFrame, persona_names: Mapping[int, str]
                          ) -> list[dict[str, Any]]:
    """Track v2 person identify operations setting the cluster number and persona name."""
    ops = []
    for cio_id, cluster_index in zip(assignments[KEY].astype(str), assignments["cluster"],
                                     strict=True):
        c = int(cluster_index)
        ops.append({"type": "person", "action": "identify", "identifiers": {KEY: cio_id},
                    "attributes": {CLUSTER_ATTRIBUTE: c + 1,
                                   PERSONA_ATTRIBUTE: persona_names.get(c, "")}})
    return ops


def write_back(track_client: TrackClient | None, assignments: pd.DataFrame,
               persona_names: Mapping[int, str], dry_run: bool = True, *,
               sample_size: int = 3) -> WriteBackReport:
    """Set `cio_mavera_cluster` and `cio_mavera_persona` on each person via Track v2 batch.

    A dry run sends nothing (no client needed) and reports counts and a sample. A real run reports
    per-item failures (207s) and retries the failed items once.
    """
    ops = write_back_operations(assignments, persona_names)
    groups, too_large = split_batch(ops)
    report = WriteBackReport(dry_run=dry_run, people=len(assignments), operations=len(ops),
                             requests=len(groups), sample=ops[:sample_size])
    if dry_run:
        report.failures = [_failure(f, ops) for f in too_large]
        return report
    if track_client is None:
        raise InvalidParameter("a real write-back needs a TrackClient; pass dry_run=True to preview")
    first = track_client.batch(ops)
    report.requests = first.requests
    retry_idx = [f.index for f in first.failures if f.reason != "too_large"]
    final = [f for f in first.failures if f.reason == "too_large"]
    report.failed_first_attempt = len(first.failures)
    if retry_idx:
        second = track_client.batch([ops[i] for i in retry_idx])
        report.requests += second.requests
        report.retried = len(retry_idx)
        final += [BatchFailure(retry_idx[f.index], f.reason, f.field, f.message)
                  for f in second.failures]
    report.failures = [_failure(f, ops) for f in sorted(final, key=lambda f: f.index)]
    report.accepted = len(ops) - len(report.failures)
    return report


def write_back_for_run(conn: Connection, result: ClusterResult, persona_names: Sequence[str],
                       enabled: bool, dry_run: bool = True) -> WriteBackReport | None:
    """The notebook's write-back step: None when disabled, a dry run, or a real Track batch."""
    if not enabled:
        return None
    assignments = result.assignments()
    names = dict(enumerate(persona_names))
    if dry_run:
        return write_back(None, assignments, names, dry_run=True)
    with TrackClient(conn) as track:
        return write_back(track, assignments, names, dry_run=False)


def _failure(failure: BatchFailure, ops: list[dict[str, Any]]) -> dict[str, Any]:
    return {"cio_id": ops[failure.index]["identifiers"][KEY], "reason": failure.reason,
            "field": failure.field, "message": failure.message}

