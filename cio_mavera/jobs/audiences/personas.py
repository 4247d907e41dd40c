"""Job 2 Mavera steps: one custom persona per cluster (idempotent, budgeted), and what engages it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pandas as pd

from cio_mavera.errors import BudgetExceeded, InvalidParameter
from cio_mavera.jobs.audiences.analysis import cluster_names
from cio_mavera.jobs.audiences.profiles import ClusterProfiles, profile_text
from cio_mavera.jobs.context import RunContext
from cio_mavera.mavera.budget import DEFAULT_WORST_CASE
from cio_mavera.mavera.models import credits_of
from cio_mavera.pii import assert_no_pii

PERSONA_PREFIX = "cio-mavera: "
MAX_NAME_CHARS = 100  # §5.3: persona names are 2..100 characters
AUDIENCE_TYPES = {"b2b": "B2B", "b2c": "B2C"}
ENGAGE_QUESTION = (
    "You are a typical member of this customer audience. In three short bullet points: what would "
    "make you open, click and act on our emails and in-product messages, and what would make you "
    "ignore them or unsubscribe?"
)


def persona_prefix(segment_id: int | None = None) -> str:
    """"cio-mavera: ", or "cio-mavera (segment 21): " so a segment's personas never overwrite others."""
    return PERSONA_PREFIX if segment_id is None else f"cio-mavera (segment {int(segment_id)}): "


def persona_payloads(profiles: ClusterProfiles, audience: Literal["b2b", "b2c"] | str = "b2b",
                     segment_id: int | None = None) -> list[dict[str, Any]]:
    """One create/update body per cluster (in `profiles.clusters` order), checked to hold no PII.

    Personas are found again by name, so the name carries the audience scope (everyone or one
    segment) plus the cluster's name (`cluster_names`: its two defining traits).
    """
    kind = AUDIENCE_TYPES.get(str(audience).lower())
    if kind is None:
        raise InvalidParameter(f"audience must be 'b2b' or 'b2c', got {audience!r}")
    names = cluster_names(profiles)
    payloads = []
    for profile in profiles.clusters:
        full = persona_name(names[profile.cluster], segment_id)
        who = "business buyers and users" if kind == "B2B" else "consumers"
        description = (f"{kind} persona for an audience of {who}, built by cio-mavera from "
                       f"aggregated Customer.io attributes (no individual's data). "
                       + profile_text(profile))
        payload = {"name": full, "description": description, "type": kind}
        assert_no_pii(payload, what=f"persona payload for cluster {profile.cluster + 1}")
        payloads.append(payload)
    return payloads


def persona_name(cluster: str, segment_id: int | None = None) -> str:
    """The Mavera persona of a cluster: the audience scope, then the cluster's name (2-100 chars)."""
    return (persona_prefix(segment_id) + cluster)[:MAX_NAME_CHARS].rstrip(" ,")


def _worst_case(run: RunContext, kind: str) -> int:
    return int(run.budget.worst_case.get(kind, DEFAULT_WORST_CASE[kind]))


def plan_personas(run: RunContext, payloads: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per payload: does the persona exist, unchanged or changed, and the worst-case cost of syncing.

    Read-only (list and get calls, which cost no credits).
    """
    rows = []
    for payload in payloads:
        client = run.mavera
        existing = client.personas.find(str(payload["name"]))
        if existing is None:
            status, persona_id, cost = "new", None, _worst_case(run, "persona")
        else:
            persona_id = str(existing.get("id"))
            changed = client.personas.changes(existing, payload)
            status = "changed" if changed else "unchanged"
            cost = _worst_case(run, "persona_update") if changed else 0
        rows.append({"name": payload["name"], "status": status, "persona_id": persona_id,
                     "cost": cost})
    return pd.DataFrame(rows, columns=["name", "status", "persona_id", "cost"])


def estimate_persona_cost(run: RunContext, payloads: Sequence[Mapping[str, Any]]) -> int:
    """Worst-case credits creating these personas would cost now (300 per persona that is missing)."""
    return int(plan_personas(run, payloads)["cost"].sum())


def sync_personas(run: RunContext, payloads: Sequence[Mapping[str, Any]], create: bool = True,
                  *, plan: pd.DataFrame | None = None) -> pd.DataFrame:
    """Ensure one persona per payload; with `create=False` only preview (no create or update).

    Returns one row per payload, in order: name, status (created, updated, unchanged, skipped; or
    would create / would update / exists in a preview), persona_id, credits, reason. A persona the
    budget cannot afford is refused before sending and recorded as skipped. Pass the `plan` already
    shown to the reader to skip looking every persona up again.
    """
    if plan is None or len(plan) != len(payloads):
        plan = plan_personas(run, payloads)
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
            persona, created = run.mavera.personas.ensure(str(payload["name"]), **fields)
        except BudgetExceeded as exc:
            run.skip("persona", str(payload["name"]), exc)
            row.update(status="skipped", reason=str(exc))
            rows.append(row)
            continue
        row["persona_id"] = str(persona.get("id"))
        row["credits"] = credits_of(persona) if created else 0
        row["status"] = ("created" if created
                         else "updated" if planned.status == "changed" else "unchanged")
        rows.append(row)
    return pd.DataFrame(rows, columns=["name", "status", "persona_id", "credits", "reason"])


def ask_what_engages(run: RunContext, persona_id: str) -> str:
    """The persona's answer, through Chat, to what would make it engage with our messages."""
    return run.mavera.chat.create(ENGAGE_QUESTION, persona_id=persona_id).content.strip()


def engagement_answers(run: RunContext, personas: pd.DataFrame, *, ask: bool = True
                       ) -> dict[str, str | None]:
    """{persona name: answer or None} for every synced persona; budget refusals become None."""
    answers: dict[str, str | None] = {}
    for row in personas.itertuples(index=False):
        answers[row.name] = None
        if not ask or not row.persona_id or row.status not in ("created", "updated", "unchanged"):
            continue
        try:
            answers[row.name] = ask_what_engages(run, str(row.persona_id))
        except BudgetExceeded as exc:
            run.skip("engage", f"what engages {row.name}", exc)  # the card says it was not asked
    return answers
