"""Job 2 outputs: the cio_id -> cluster parquet (the run's, and the workspace's latest), and results.json."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cio_mavera.cache import pulled_at
from cio_mavera.connect import Connection
from cio_mavera.files import atomic_path
from cio_mavera.jobs.audiences.attribute_types import Schema
from cio_mavera.jobs.audiences.clustering import ClusterResult
from cio_mavera.jobs.audiences.data import JOB
from cio_mavera.jobs.audiences.parameters import PARAMETERS
from cio_mavera.jobs.audiences.profiles import ClusterProfiles
from cio_mavera.jobs.audiences.uncertainty import placed_confidently, share_interval
from cio_mavera.jobs.audiences.writeback import WriteBackReport
from cio_mavera.jobs.context import RunContext

ASSIGNMENTS_FILE = "cluster_assignments.parquet"


def output_dir(conn: Connection) -> Path:
    """The runner's run directory when there is one, else `<cache>/attribute-personas/`."""
    run_dir = os.environ.get("CIO_MAVERA_RUN_DIR")
    return Path(run_dir) if run_dir else conn.cache_dir / JOB


def cluster_assignments_path(directory: Path) -> Path:
    """Where the cio_id -> cluster parquet lives inside `directory`."""
    return Path(directory) / ASSIGNMENTS_FILE


def latest_assignments_path(conn: Connection) -> Path:
    """Where the workspace's latest cio_id -> cluster file lives (what job 3 reads by default)."""
    return cluster_assignments_path(conn.cache_dir / JOB)


def write_cluster_assignments(result: ClusterResult, directory: Path,
                              cluster_names: Mapping[int, str] | None = None,
                              persona_names: Sequence[str] | None = None, *,
                              also: Path | None = None) -> Path:
    """Write cio_id, cluster (0-based), number (1-based, as in the report), cluster_name (its one
    name) and persona; return the path. `also`: a second copy (the workspace's latest)."""
    frame = result.assignments()
    frame["number"] = frame["cluster"] + 1
    if cluster_names is not None:
        frame["cluster_name"] = frame["cluster"].map(dict(cluster_names))
    if persona_names is not None:
        frame["persona"] = [persona_names[c] for c in frame["cluster"]]
    path = cluster_assignments_path(directory)
    for target in [path] + ([also] if also is not None and also != path else []):
        with atomic_path(target) as tmp:
            frame.to_parquet(tmp, index=False)
    return path


def save_assignments(conn: Connection, result: ClusterResult, cluster_names: Mapping[int, str],
                     persona_names: Sequence[str], segment_id: int | None = None) -> Path:
    """The run's assignments file; a run on everyone also becomes the workspace's latest, the one
    other jobs read (a segment's run would leave everyone else without a cluster)."""
    return write_cluster_assignments(
        result, output_dir(conn), cluster_names, persona_names,
        also=latest_assignments_path(conn) if segment_id is None else None)


def parameters_in(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The job's parameters as they stand in a notebook's `globals()`, checked (`ParameterSpec.values_in`)."""
    return PARAMETERS.values_in(namespace)


def persona_results(run: RunContext, *, customers: pd.DataFrame, typed: pd.DataFrame, schema: Schema,
                    pii_dropped: Mapping[str, str], result: ClusterResult,
                    profiles: ClusterProfiles, names: Mapping[int, str], traits: pd.DataFrame,
                    payloads: Sequence[Mapping[str, Any]], personas: pd.DataFrame,
                    answers: Mapping[str, str | None], assignments_path: Path,
                    write_back_report: WriteBackReport | None = None,
                    segment_id: int | None = None) -> dict[str, Any]:
    """The run's machine-readable findings for results.json (see DESIGN.md, Run outputs).

    Each cluster carries its one `name`, its share with a 95% interval, how surely the model
    places its members, and its defining traits with intervals (what the report shows).
    """
    sure = placed_confidently(result.certainty, result.labels)
    clusters = []
    for profile, payload, row in zip(profiles.clusters, payloads,
                                     personas.itertuples(index=False), strict=True):
        clusters.append({
            "cluster": profile.cluster,
            "number": profile.cluster + 1,
            "name": names[profile.cluster],
            "size": profile.size,
            "share": round(profile.share, 4),
            "share_interval": _rounded(share_interval(profile.size, len(result.labels))),
            "placed_confidently": _placed(sure, profile.cluster),
            "traits": _records(traits[traits["cluster"] == profile.cluster].drop(columns="cluster")),
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
                     "pulled_at": when.isoformat() if when is not None else None,
                     "with_missing_attributes": round(_with_gaps(result, typed), 4)},
        "k": int(result.k),
        "structure": _structure(result),
        "placed_confidently": _placed(sure, -1),
        "model_selection": None if selection is None else {
            "method": result.method, "reason": selection.reason, "stable": selection.stable,
            "clarity": getattr(selection, "clarity", None),
            "best_candidate": getattr(selection, "best_candidate", None),
            "table": _records(selection.table)},
        "attributes_left_out": dict(result.dropped),
        "clusters": clusters,
        "assignments_path": str(assignments_path),
        "pii_columns_excluded": dict(pii_dropped),
        "schema": schema.to_frame().to_dict(orient="records"),
        "write_back": write_back_report.to_dict() if write_back_report is not None else None,
        **run.results_footer(),
    }


def _rounded(interval: tuple[float, float]) -> list[float | None]:
    return [None if pd.isna(v) else round(float(v), 4) for v in interval]


def _placed(sure: pd.DataFrame | None, cluster: int) -> dict[str, Any] | None:
    """{threshold, share, interval} for one cluster (-1: everyone); None without probabilities."""
    if sure is None:
        return None
    row = sure[sure["cluster"] == cluster].iloc[0]
    return {"probability_at_least": 0.9, "share": round(float(row["share"]), 4),
            "interval": _rounded((row["low"], row["high"]))}


def _with_gaps(result: ClusterResult, typed: pd.DataFrame) -> float:
    """The share of customers missing at least one attribute the clustering used (all typed
    attributes when the method does not name them)."""
    used = [c for c in result.feature_names if c in typed.columns] or list(typed.columns)
    return float(typed[used].isna().any(axis=1).mean()) if used else 0.0


def _structure(result: ClusterResult) -> str:
    """"clear", "moderate", "none" (no k >= 2 supported: one audience) or "given" (k was fixed)."""
    clarity = getattr(result.selection, "clarity", None)
    return clarity or ("given" if result.selection is None else "unrated")


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The table as JSON-able records (NaN, e.g. a stability never computed, as null)."""
    return json.loads(table.to_json(orient="records"))
