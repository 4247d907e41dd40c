"""Who is in which audience cluster: what other jobs need from job 2, as one public function.

Job 2 saves its cio_id -> cluster file with each run (a run on everyone also as the workspace's
latest, in the cache); another job (retention research) reads it through `audience_clusters`, or,
when job 2 has not run, gets clusters fitted on the people it has with the same pipeline and names.
A cluster's one name is `cluster_names`' (the persona's name less its "cio-mavera: " scope).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cio_mavera.connect import Connection
from cio_mavera.errors import CioMaveraError
from cio_mavera.jobs.audiences.analysis import cluster_names, find_clusters, prepare
from cio_mavera.jobs.audiences.data import JOB, KEY
from cio_mavera.jobs.audiences.profiles import profile_clusters
from cio_mavera.jobs.audiences.results import cluster_assignments_path

MIN_PEOPLE_TO_FIT = 20
_PERSONA_SCOPE = r"^cio-mavera(?: \(segment \d+\))?: "


def _empty() -> pd.DataFrame:
    return pd.DataFrame({KEY: pd.Series(dtype=object), "cluster": pd.Series(dtype="Int64"),
                         "cluster_name": pd.Series(dtype=object)})


def saved_assignments(conn: Connection | None, path: str | Path | None = None) -> pd.DataFrame | None:
    """(cio_id, cluster, cluster_name) from job 2's saved file (given, or cached for `conn`)."""
    if path is None and conn is None:
        return None
    candidate = Path(path) if path else cluster_assignments_path(conn.cache_dir / JOB)
    if not candidate.is_file():
        return None
    frame = pd.read_parquet(candidate)
    if KEY not in frame or "cluster" not in frame:
        return None
    if "cluster_name" in frame:
        names = frame["cluster_name"]
    elif "persona" in frame:  # files written before cluster_name: the persona name less its scope
        names = frame["persona"].astype(str).str.replace(_PERSONA_SCOPE, "", regex=True)
    else:
        names = "Cluster " + (frame["cluster"] + 1).astype(str)
    return pd.DataFrame({KEY: frame[KEY].astype(str), "cluster": frame["cluster"].astype(int),
                         "cluster_name": names.astype(str)})


def audience_clusters(people: pd.DataFrame, *, conn: Connection | None = None,
                      assignments_path: str | Path | None = None,
                      k_range: Sequence[int] = range(2, 7), seed: int = 0,
                      now: Any = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(cio_id, cluster, cluster_name) for `people`, and how they were obtained.

    Uses job 2's assignments when available; otherwise fits clusters on `people` with the job-2
    pipeline. Clusters are numbered 0 = largest.
    """
    assigned = saved_assignments(conn, assignments_path)
    if assigned is not None:
        return assigned[assigned[KEY].isin(set(people[KEY]))].reset_index(drop=True), {
            "source": "job-2 assignments", "k": int(assigned["cluster"].nunique())}
    if len(people) < MIN_PEOPLE_TO_FIT:
        return _empty(), {"source": "none", "k": 0,
                          "reason": f"only {len(people)} people, too few to cluster"}
    try:
        typed, schema, _ = prepare(people.reset_index(drop=True),
                                   now=now or pd.Timestamp.now(tz="UTC"))
        result = find_clusters(typed, schema, k_range, seed, sample_size=5000)
    except CioMaveraError as exc:
        return _empty(), {"source": "none", "k": 0, "reason": str(exc)}
    names = cluster_names(profile_clusters(typed, result.labels))
    out = pd.DataFrame({KEY: result.labels.index.astype(str), "cluster": result.labels.to_numpy()})
    out["cluster_name"] = out["cluster"].map(names)
    return out, {"source": "fitted on the people in the event log", "k": int(result.k),
                 "profiles": {int(c): names[c] for c in names}}
