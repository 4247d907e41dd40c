"""Job 2 orchestration: audience -> typed, PII-free attributes -> clusters -> Mavera personas -> write-back.

The notebook calls these functions one section at a time. The analysis itself lives in
`attribute_typing`, `pii`, `clustering` and `cluster_profiles`; this module wires them to the
cache, the Mavera client and the Track client, and keeps three promises: nothing personal leaves
for Mavera (every payload passes `assert_no_pii`), personas are idempotent (a re-run creates and
spends nothing), and the write-back is a dry run unless asked otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from cio_mavera.cache import pulled_at
from cio_mavera.connect import Connection
from cio_mavera.customerio.track import BatchFailure, TrackClient, split_batch
from cio_mavera.errors import BudgetExceeded, InvalidParameter
from cio_mavera.jobs.attribute_typing import Schema, apply_schema, infer_schema
from cio_mavera.jobs.cluster_profiles import ClusterProfile, ClusterProfiles, profile_text
from cio_mavera.jobs.clustering import ClusterResult, NotEnoughData, cluster
from cio_mavera.mavera.budget import DEFAULT_WORST_CASE
from cio_mavera.mavera.client import MaveraClient
from cio_mavera.mavera.models import credits_of
from cio_mavera.pii import assert_no_pii, strip_pii

JOB = "attribute-personas"
KEY = "cio_id"
PERSONA_PREFIX = "cio-mavera: "
# Attributes this job writes back to Customer.io; a later pull must never cluster on them.
WRITE_BACK_PREFIX = "cio_mavera_"
CLUSTER_ATTRIBUTE = "cio_mavera_cluster"
PERSONA_ATTRIBUTE = "cio_mavera_persona"
ASSIGNMENTS_FILE = "cluster_assignments.parquet"
MAX_NAME_CHARS = 100  # §5.3: persona names are 2..100 characters
AUDIENCE_TYPES = {"b2b": "B2B", "b2c": "B2C"}
ENGAGE_QUESTION = (
    "You are a typical member of this customer audience. In three short bullet points: what would "
    "make you open, click and act on our emails and in-product messages, and what would make you "
    "ignore them or unsubscribe?"
)
_CATEGORY_KINDS = ("category",)


# --- audience and preparation ----------------------------------------------------------------


def load_audience(conn: Connection, segment_id: int | None = None, refresh: bool = False
                  ) -> pd.DataFrame:
    """Everyone (or one segment's members) with every attribute as strings, through the cache."""
    from cio_mavera import datasets

    return datasets.customers(conn, segment_id=segment_id, refresh=refresh)


def prepare(customers: pd.DataFrame, *, now: Any = None, drop_quasi: bool = True
            ) -> tuple[pd.DataFrame, Schema, dict[str, str]]:
    """Return (typed frame indexed by cio_id, schema, {PII column: reason}).

    Ages in days are measured from when the data was pulled (not from now), so re-running on the
    same cached pull gives the same profiles and persona descriptions.
    """
    if KEY not in customers.columns:
        raise InvalidParameter(f"the customer frame has no {KEY!r} column; load it with load_audience")
    if customers.empty:
        raise NotEnoughData("the audience has no customers; check segment_id (an empty or "
                            "unknown segment) or pull again with refresh=True")
    own = {c: "written back by this job (not an input)" for c in customers.columns
           if str(c).startswith(WRITE_BACK_PREFIX)}
    _, pii = strip_pii(customers.drop(columns=list(own)), keep=[KEY], drop_quasi=drop_quasi)
    schema = infer_schema(customers, key=KEY, exclude={**pii, **own})
    when = now if now is not None else pulled_at(customers)
    return apply_schema(customers, schema, now=when), schema, pii


def find_clusters(typed: pd.DataFrame, schema: Schema, k_range: range | Sequence[int] = range(2, 9),
                  seed: int = 0, *, sample_size: int = 5000) -> ClusterResult:
    """Choose k over `k_range` (silhouette + resampling stability) and fit seeded k-means."""
    return cluster(typed, schema, k_range=list(k_range), sample_size=sample_size, seed=seed)


# --- personas --------------------------------------------------------------------------------


def cluster_name(profile: ClusterProfile) -> str:
    """A short descriptive name: the cluster's strongest over-represented category and number.

    Built from two traits only (most distinguishing category level, most distinguishing other
    attribute) so small shifts in the data rarely rename a persona: the name is its identity.
    """
    top = profile.top
    phrases = []
    cats = top[top["kind"].isin(_CATEGORY_KINDS)]
    others = top[~top["kind"].isin(_CATEGORY_KINDS)]
    picks = [cats.head(1), others.head(1)] if len(cats) and len(others) else [top.head(2)]
    for frame in picks:
        phrases.extend(_trait_phrase(r) for r in frame.itertuples(index=False))
    if not phrases:
        return f"Audience cluster {profile.cluster + 1}"
    text = ", ".join(phrases)
    return text[0].upper() + text[1:]


def _human(column: str) -> str:
    return str(column).replace("_", " ").strip()


def _trait_phrase(r: Any) -> str:
    column = str(r.column)
    if r.kind in _CATEGORY_KINDS:
        return f"{_human(r.level)} {_human(column)}"
    if r.kind == "boolean":
        return _human(column) if r.smd > 0 else f"not {_human(column)}"
    if column.endswith("_days_ago"):
        base = column[: -len("_days_ago")]
        for suffix in ("_at", "_date", "_on"):
            if base.endswith(suffix):
                base = base[: -len(suffix)]
        return f"{_human(base)} long ago" if r.smd > 0 else f"{_human(base)} recently"
    return f"{'high' if r.smd > 0 else 'low'} {_human(column)}"


def persona_prefix(segment_id: int | None = None) -> str:
    """"cio-mavera: ", or "cio-mavera (segment 21): " so a segment's personas never overwrite others."""
    return PERSONA_PREFIX if segment_id is None else f"cio-mavera (segment {int(segment_id)}): "


def persona_payloads(profiles: ClusterProfiles, audience: Literal["b2b", "b2c"] | str = "b2b",
                     segment_id: int | None = None) -> list[dict[str, Any]]:
    """One create/update body per cluster (in `profiles.clusters` order), checked to hold no PII.

    Personas are found again by name, so the name carries the audience scope (everyone or one
    segment) plus the cluster's two defining traits.
    """
    kind = AUDIENCE_TYPES.get(str(audience).lower())
    if kind is None:
        raise InvalidParameter(f"audience must be 'b2b' or 'b2c', got {audience!r}")
    names = _unique([cluster_name(p) for p in profiles.clusters])
    payloads = []
    for profile, name in zip(profiles.clusters, names, strict=True):
        full = (persona_prefix(segment_id) + name)[:MAX_NAME_CHARS].rstrip(" ,")
        who = "business buyers and users" if kind == "B2B" else "consumers"
        description = (f"{kind} persona for an audience of {who}, built by cio-mavera from "
                       f"aggregated Customer.io attributes (no individual's data). "
                       + profile_text(profile))
        payload = {"name": full, "description": description, "type": kind}
        assert_no_pii(payload, what=f"persona payload for cluster {profile.cluster + 1}")
        payloads.append(payload)
    return payloads


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i, name in enumerate(names):
        key = name.casefold()
        out.append(name if key not in seen else f"{name} (cluster {i + 1})")
        seen[key] = i
    return out


def _worst_case(client: MaveraClient, kind: str) -> int:
    table = client.budget.worst_case if client.budget is not None else DEFAULT_WORST_CASE
    return int(table[kind])


def plan_personas(client: MaveraClient, payloads: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per payload: does the persona exist, unchanged or changed, and the worst-case cost of syncing.

    Read-only (list and get calls, which cost no credits).
    """
    rows = []
    for payload in payloads:
        existing = client.find_persona(str(payload["name"]))
        if existing is None:
            status, persona_id, cost = "new", None, _worst_case(client, "persona")
        else:
            persona_id = str(existing.get("id"))
            changed = _changed_fields(client, existing, payload)
            status = "changed" if changed else "unchanged"
            cost = _worst_case(client, "persona_update") if changed else 0
        rows.append({"name": payload["name"], "status": status, "persona_id": persona_id,
                     "cost": cost})
    return pd.DataFrame(rows, columns=["name", "status", "persona_id", "cost"])


def _changed_fields(client: MaveraClient, persona: Mapping[str, Any],
                    payload: Mapping[str, Any]) -> list[str]:
    held = dict(persona)
    if any(k not in held for k in payload) and persona.get("id"):
        held.update(client.get_persona(str(persona["id"])))
    details = held.get("details") if isinstance(held.get("details"), dict) else {}
    changed = []
    for key, wanted in payload.items():
        value = held.get(key, details.get(key))
        if value is None:
            continue  # not echoed by the server: cannot compare (ensure_persona does the same)
        if key == "name":
            same = " ".join(str(value).split()).casefold() == " ".join(str(wanted).split()).casefold()
        else:
            same = value == wanted
        if not same:
            changed.append(key)
    return changed


def estimate_persona_cost(payloads: Sequence[Mapping[str, Any]], client: MaveraClient) -> int:
    """Worst-case credits creating these personas would cost now (300 per persona that is missing)."""
    return int(plan_personas(client, payloads)["cost"].sum())


def sync_personas(client: MaveraClient, payloads: Sequence[Mapping[str, Any]], create: bool = True,
                  *, plan: pd.DataFrame | None = None) -> pd.DataFrame:
    """Ensure one persona per payload; with `create=False` only preview (no create or update).

    Returns one row per payload, in order: name, status (created, updated, unchanged, skipped; or
    would create / would update / exists in a preview), persona_id, credits, reason. A persona the
    budget cannot afford is refused before sending and recorded as skipped. Pass the `plan` already
    shown to the reader to skip looking every persona up again.
    """
    if plan is None or len(plan) != len(payloads):
        plan = plan_personas(client, payloads)
    rows = []
    for payload, planned in zip(payloads, plan.itertuples(index=False), strict=True):
        row = {"name": payload["name"], "status": "", "persona_id": planned.persona_id,
               "credits": 0, "reason": ""}
        if not create:
            row["status"] = {"new": "would create", "changed": "would update"}.get(
                planned.status, "exists")
            row["reason"] = "preview only (create_personas=False)"
            rows.append(row)
            continue
        assert_no_pii(dict(payload), what=f"persona {payload['name']!r}")
        fields = {k: v for k, v in payload.items() if k != "name"}
        try:
            persona, created = client.ensure_persona(str(payload["name"]), **fields)
        except BudgetExceeded as exc:
            row.update(status="skipped", reason=str(exc))
            rows.append(row)
            continue
        row["persona_id"] = str(persona.get("id"))
        row["credits"] = credits_of(persona) if created else 0
        row["status"] = ("created" if created
                         else "updated" if planned.status == "changed" else "unchanged")
        rows.append(row)
    return pd.DataFrame(rows, columns=["name", "status", "persona_id", "credits", "reason"])


def ask_what_engages(client: MaveraClient, persona_id: str) -> str:
    """The persona's answer, through Chat, to what would make it engage with our messages."""
    return client.chat(ENGAGE_QUESTION, persona_id=persona_id).content.strip()


def engagement_answers(client: MaveraClient, personas: pd.DataFrame, *, ask: bool = True
                       ) -> dict[str, str | None]:
    """{persona name: answer or None} for every synced persona; budget refusals become None."""
    answers: dict[str, str | None] = {}
    for row in personas.itertuples(index=False):
        answers[row.name] = None
        if not ask or not row.persona_id or row.status not in ("created", "updated", "unchanged"):
            continue
        try:
            answers[row.name] = ask_what_engages(client, str(row.persona_id))
        except BudgetExceeded:
            continue  # the budget records the skip; the card says it was not asked
    return answers


# --- outputs ---------------------------------------------------------------------------------


def output_dir(conn: Connection) -> Path:
    """The runner's run directory when there is one, else `<cache>/attribute-personas/`."""
    run_dir = os.environ.get("CIO_MAVERA_RUN_DIR")
    return Path(run_dir) if run_dir else conn.cache_dir / JOB


def cluster_assignments_path(directory: Path) -> Path:
    """Where the cio_id -> cluster parquet lives inside `directory`."""
    return Path(directory) / ASSIGNMENTS_FILE


def write_cluster_assignments(result: ClusterResult, directory: Path,
                              persona_names: Sequence[str] | None = None) -> Path:
    """Write cio_id, cluster (0-based), number (1-based, as in the report), persona; return the path."""
    frame = result.assignments()
    frame["number"] = frame["cluster"] + 1
    if persona_names is not None:
        frame["persona"] = [persona_names[c] for c in frame["cluster"]]
    path = cluster_assignments_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


# --- write-back ------------------------------------------------------------------------------


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


# --- results.json ----------------------------------------------------------------------------


def persona_results(*, customers: pd.DataFrame, schema: Schema, pii_dropped: Mapping[str, str],
                    result: ClusterResult, profiles: ClusterProfiles,
                    payloads: Sequence[Mapping[str, Any]], personas: pd.DataFrame,
                    answers: Mapping[str, str | None], assignments_path: Path,
                    credits_spent: int, budget: Any = None,
                    write_back_report: WriteBackReport | None = None,
                    segment_id: int | None = None) -> dict[str, Any]:
    """The run's machine-readable findings for results.json (see DESIGN.md, Run outputs)."""
    clusters = []
    for profile, payload, row in zip(profiles.clusters, payloads,
                                     personas.itertuples(index=False), strict=True):
        clusters.append({
            "cluster": profile.cluster,
            "number": profile.cluster + 1,
            "size": profile.size,
            "share": round(profile.share, 4),
            "profile": profile.to_dict(),
            "persona_name": payload["name"],
            "persona_id": row.persona_id or None,
            "persona_status": row.status,
            "what_would_make_me_engage": answers.get(str(payload["name"])),
        })
    selection = result.selection
    when = pulled_at(customers)
    return {
        "audience": {"segment_id": segment_id, "customers": int(len(customers)),
                     "pulled_at": when.isoformat() if when is not None else None},
        "k": int(result.k),
        "model_selection": None if selection is None else {
            "reason": selection.reason, "stable": selection.stable,
            "table": selection.table.to_dict(orient="records")},
        "clusters": clusters,
        "assignments_path": str(assignments_path),
        "pii_columns_excluded": dict(pii_dropped),
        "schema": schema.to_frame().to_dict(orient="records"),
        "credits_spent": int(credits_spent),
        "budget": budget.summary() if budget is not None else None,
        "write_back": write_back_report.to_dict() if write_back_report is not None else None,
    }
