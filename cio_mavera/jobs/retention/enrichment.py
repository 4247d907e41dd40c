"""Job 3 enrichment: attach each event's person attributes (plan, mrr, lifecycle...) and audience cluster.

People come from a local store (`<cache>/retention-research/people.parquet`), then from the job-2
customers cache when it holds them, and only the rest from the App API in bulk (100 cio_ids per
request, within the workspace's shared rate limit). PII columns (emails, names, phones, addresses)
are dropped before anything is stored, and the enriched frame never carries the raw webhook payload,
so everything downstream works on attributes and aggregates only.

Clusters: a job-2 `cluster_assignments.parquet` (cio_id -> cluster, persona) is used when one is
given or found in the cache; otherwise the job-2 pipeline (typing, relevance-weighted k-means with
model selection) clusters the people seen in the event log, and each cluster is named from its
profile the way job 2 names personas.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cio_mavera import datasets
from cio_mavera.cache import Cache
from cio_mavera.connect import Connection
from cio_mavera.customerio.app import AppClient
from cio_mavera.files import atomic_path
from cio_mavera.jobs.audiences import audience_clusters
from cio_mavera.jobs.retention.cohorts import per_value
from cio_mavera.pii import strip_pii

__all__ = [
    "ATTRIBUTES",
    "Enriched",
    "PeopleStore",
    "enrich",
    "enrich_events",
    "fetch_people",
    "people_for",
    "pii_free",
]

JOB_DIR = "retention-research"
KEY = "cio_id"
# The attributes attached to each event (when the workspace has them); the rest stay in the store
# for clustering only.
ATTRIBUTES = ("plan", "mrr", "lifecycle_stage", "industry", "company_size", "seats")
EVENT_COLUMNS = ("event_id", "object_type", "metric", "timestamp", "campaign_id", "action_id",
                 "broadcast_id", "newsletter_id", "delivery_id", KEY)


@dataclass
class Enriched:
    """The enriched events plus where the people and clusters came from."""

    events: pd.DataFrame  # event columns + failure_message + ATTRIBUTES + cluster, cluster_name
    people: pd.DataFrame  # cio_id + PII-free attribute strings
    clusters: pd.DataFrame  # cio_id, cluster, cluster_name
    stats: dict[str, Any] = field(default_factory=dict)


def store_dir(conn: Connection) -> Path:
    """Where job 3 keeps its people store and fitted clusters for this workspace."""
    return conn.cache_dir / JOB_DIR


class PeopleStore:
    """PII-free person attributes by cio_id in one parquet file (atomic rewrite on add)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> pd.DataFrame:
        """Everyone stored so far (an empty frame with a cio_id column when nothing is)."""
        if not self.path.is_file():
            return pd.DataFrame({KEY: pd.Series(dtype=object)})
        try:
            return pd.read_parquet(self.path)
        except (OSError, ValueError):  # a corrupt file is refetched, never trusted
            return pd.DataFrame({KEY: pd.Series(dtype=object)})

    def add(self, people: pd.DataFrame) -> pd.DataFrame:
        """Merge `people` in (newest wins) and return the whole store."""
        merged = pd.concat([self.load(), people.astype(object)], ignore_index=True)
        merged = merged.drop_duplicates(subset=[KEY], keep="last").reset_index(drop=True)
        with atomic_path(self.path) as tmp:
            merged.astype(object).where(merged.notna(), None).astype("string").to_parquet(tmp, index=False)
        return merged


def pii_free(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` without personal data (by name and by value), keyed by cio_id."""
    if frame.empty:
        return frame
    clean, _ = strip_pii(frame, keep=[KEY], drop_quasi=True)
    return clean.drop(columns=[c for c in ("id",) if c in clean.columns])


def fetch_people(conn: Connection, cio_ids: Sequence[str], *, client: Any = None) -> tuple[pd.DataFrame, int]:
    """(PII-free attributes of `cio_ids` from the App API, requests made); 100 ids per request."""
    if not cio_ids:
        return pd.DataFrame({KEY: pd.Series(dtype=object)}), 0
    own = client is None
    app = client or AppClient(conn)
    try:
        before = app.stats.requests
        rows = [datasets.customer_row(c) for c in app.customers_attributes_many(list(cio_ids))]
        made = app.stats.requests - before
    finally:
        if own:
            app.close()
    frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame({KEY: pd.Series(dtype=object)})
    return pii_free(frame), made


def _customers_cache(conn: Connection) -> pd.DataFrame | None:
    """The job-2 audience pull (everyone, no segment) when it is cached and fresh; never pulls."""
    entry = Cache(conn.cache_dir).entry("customers", {"segment_id": None}, datasets.SCHEMA["customers"])
    try:
        return entry.load(datasets.DEFAULT_MAX_AGE["customers"])
    except (OSError, ValueError):
        return None


def people_for(conn: Connection, cio_ids: Iterable[str], *, refresh: bool = False,
               client: Any = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """(attributes of every cio_id in `cio_ids`, counts of where they came from)."""
    wanted = sorted({str(i) for i in cio_ids if isinstance(i, str) and i})
    store = PeopleStore(store_dir(conn) / "people.parquet")
    stored = store.load() if not refresh else pd.DataFrame({KEY: pd.Series(dtype=object)})
    known = set(stored[KEY])
    missing = [i for i in wanted if i not in known]
    from_customers = 0
    if missing and not refresh:
        cached = _customers_cache(conn)
        if cached is not None and KEY in cached:
            hit = cached[cached[KEY].astype(str).isin(missing)]
            if len(hit):
                stored = store.add(pii_free(hit.reset_index(drop=True)))
                from_customers = len(hit)
                missing = sorted(set(missing) - set(hit[KEY].astype(str)))
    fetched, requests = fetch_people(conn, missing, client=client)
    if len(fetched):
        stored = store.add(fetched)
    people = stored[stored[KEY].isin(wanted)].reset_index(drop=True)
    stats = {"people": len(wanted), "from_store": len(wanted) - from_customers - len(missing),
             "from_customers_cache": from_customers, "fetched": int(len(fetched)),
             "unknown": len(missing) - int(len(fetched)), "requests": int(requests)}
    return people, stats


# --- enrichment -------------------------------------------------------------------------------


def _failure_message(payload: Any) -> str | None:
    if not isinstance(payload, str) or "failure_message" not in payload:
        return None
    try:
        value = json.loads(payload).get("data", {}).get("failure_message")
    except (ValueError, AttributeError):
        return None
    return str(value) if value else None


def _normalise_plan(plans: pd.Series) -> pd.Series:
    text = plans.astype("string").str.strip().str.lower().str.replace(r"[\s_-]+", " ", regex=True)
    return text.where(text.notna() & (text != ""), None).astype(object)


def normalise_plan(plans: pd.Series) -> pd.Series:
    """Plan names lower-cased with whitespace trimmed and collapsed; missing stays missing."""
    return per_value(plans, _normalise_plan)


def _rows_of(keys: pd.Series, table: pd.DataFrame) -> np.ndarray | None:
    """Each key's row in `table` (unique cio_ids); None unless every key is a string found there."""
    if keys.dtype != object or table[KEY].dtype != object or keys.isna().any():
        return None
    index = pd.Index(table[KEY])
    if index.inferred_type != "string" or not index.is_unique:  # strings only, none missing
        return None
    rows = index.get_indexer(keys)
    return None if (rows < 0).any() else rows


def enrich(events: pd.DataFrame, people: pd.DataFrame, clusters: pd.DataFrame,
           attributes: Sequence[str] = ATTRIBUTES) -> pd.DataFrame:
    """Events with person attributes, cluster and bounce reason attached, and without the payload."""
    out = events.reindex(columns=[c for c in EVENT_COLUMNS if c in events.columns])  # a copy of those alone
    if "payload" in events:
        bounced = events["metric"].eq("bounced").to_numpy()
        messages = np.full(len(events), None, dtype=object)
        messages[bounced] = [_failure_message(p) for p in events["payload"].to_numpy()[bounced]]
        out["failure_message"] = messages
    else:
        out["failure_message"] = events.get("failure_message", None)
    keep = [KEY, *[a for a in attributes if a in people.columns]]
    attrs = people[keep].drop_duplicates(subset=[KEY])
    if "plan" in attrs:  # integrations spell plans "Pro", "pro ", "PRO": one spelling each
        attrs["plan"] = normalise_plan(attrs["plan"])
    if "mrr" in attrs:
        attrs["mrr"] = pd.to_numeric(attrs["mrr"], errors="coerce")
    for column in ("company_size", "seats"):
        if column in attrs:
            attrs[column] = pd.to_numeric(attrs[column], errors="coerce")
    audiences = clusters[[KEY, "cluster", "cluster_name"]].drop_duplicates(subset=[KEY])
    rows = [_rows_of(out[KEY], attrs)]
    same_people = (len(attrs) == len(audiences) and attrs[KEY].dtype == audiences[KEY].dtype
                   and bool(np.all(attrs[KEY].to_numpy() == audiences[KEY].to_numpy())))
    rows.append(rows[0] if same_people else _rows_of(out[KEY], audiences))  # clusters usually list the same people
    if {*attrs.columns, *audiences.columns} & set(out.columns) != {KEY}:  # a name in both: the merges' suffixes
        out = out.merge(attrs, on=KEY, how="left").merge(audiences, on=KEY, how="left")
    elif rows[0] is not None and rows[1] is not None:  # everyone known: what the merges give, by position
        out.index = pd.RangeIndex(len(out))  # the merges' index
        for table, at in zip((attrs, audiences), rows, strict=True):
            taken = table.drop(columns=KEY).iloc[at].set_axis(out.index)
            for column in taken.columns:
                out[column] = taken[column]
    else:  # join on the key alone, then attach
        joined = out[[KEY]].merge(attrs, on=KEY, how="left").merge(audiences, on=KEY, how="left")
        out.index = pd.RangeIndex(len(out))  # the merges' index
        for column in joined.columns:
            out[column] = joined[column]
    out["cluster"] = out["cluster"].astype("Int64")
    for column in attributes:
        if column not in out:
            out[column] = None
    return out


def enrich_events(conn: Connection, events: pd.DataFrame, *, refresh: bool = False,
                  assignments_path: str | Path | None = None, client: Any = None,
                  seed: int = 0) -> Enriched:
    """Attributes and clusters for everyone in `events` (fetching only who is missing), attached."""
    ids = events[KEY].dropna().astype(str).unique().tolist() if KEY in events else []
    people, stats = people_for(conn, ids, refresh=refresh, client=client)
    clusters, cluster_info = audience_clusters(people, conn=conn, assignments_path=assignments_path,
                                               seed=seed)
    enriched = enrich(events, people, clusters)
    path = store_dir(conn) / "clusters.parquet"
    with atomic_path(path) as tmp:
        clusters.to_parquet(tmp, index=False)
    stats = {**stats, "clusters": cluster_info, "clusters_path": str(path),
             "events_with_attributes": int(enriched["plan"].notna().sum()) if "plan" in enriched else 0,
             "events_with_cluster": int(enriched["cluster"].notna().sum())}
    return Enriched(enriched, people, clusters, stats)
