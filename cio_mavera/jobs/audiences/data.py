"""Job 2 data: the audience (everyone, or one segment) with every attribute as text, from the cache."""

from __future__ import annotations

import pandas as pd

from cio_mavera import datasets
from cio_mavera.connect import Connection
from cio_mavera.progress import Progress

JOB = "attribute-personas"
KEY = "cio_id"
# Attributes this job writes back to Customer.io; a later pull must never cluster on them.
WRITE_BACK_PREFIX = "cio_mavera_"
CLUSTER_ATTRIBUTE = "cio_mavera_cluster"
PERSONA_ATTRIBUTE = "cio_mavera_persona"


def load_audience(conn: Connection, segment_id: int | None = None, refresh: bool = False, *,
                  progress: Progress | None = None) -> pd.DataFrame:
    """Everyone (or one segment's members) with every attribute as strings, through the cache;
    `progress(done, total)` hears people as they are stored (`cio_mavera.progress.progress_bar`)."""
    return datasets.customers(conn, segment_id=segment_id, refresh=refresh, progress=progress)

