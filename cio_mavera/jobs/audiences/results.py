"""Job 2 outputs: the cio_id -> cluster parquet, and results.json."""

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
from cio_mavera.jobs.audiences.profiles import ClusterProfiles
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


def write_cluster_assignments(result: ClusterResult, directory: Path,
                              persona_names: Sequence[str] | None = None) -> Path:
    """Write cio_id, cluster (0-based), number (1-based, as in the report), persona; return the path."""
    frame = result.assignments()
    frame["number"] = frame["cluster"] + 1
    if persona_names is not None:
        frame["persona"] = [persona_names[c] for c in frame["cluster"]]
    path = cluster_assignments_path(directory)
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return path

def persona_results(run: RunContext, *, customers: pd.DataFrame, schema: Schema, pii_dropped: Mapping[str, str],
                    result: ClusterResult, profiles: ClusterProfiles,
                    payloads: Sequence[Mapping[str, Any]], personas: pd.DataFrame,
                    answers: Mapping[str, str | None], assignments_path: Path,
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
        "structure": _structure(result),
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


def _structure(result: ClusterResult) -> str:
    """"clear", "moderate", "none" (no k >= 2 supported: one audience) or "given" (k was fixed)."""
    clarity = getattr(result.selection, "clarity", None)
    return clarity or ("given" if result.selection is None else "unrated")


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The table as JSON-able records (NaN, e.g. a stability never computed, as null)."""
    return json.loads(table.to_json(orient="records"))
