"""What a notebook kernel knows of its run, and its results.json.

Every job notebook imports this (through `jobs.context`), so it stays light: running and rendering
notebooks is `reports`, which a kernel never needs.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .files import atomic_write

# Environment the runner gives the kernel; notebooks read these through `current_run()`.
RUN_DIR_ENV = "CIO_MAVERA_RUN_DIR"
RUN_ID_ENV = "CIO_MAVERA_RUN_ID"
JOB_ENV = "CIO_MAVERA_JOB"


def current_run() -> dict[str, str | None]:
    """The run this kernel belongs to (None values when the notebook runs outside the runner)."""
    return {"run_dir": os.environ.get(RUN_DIR_ENV), "run_id": os.environ.get(RUN_ID_ENV),
            "job": os.environ.get(JOB_ENV)}


def json_default(value: Any) -> Any:
    """`value` as something JSON can hold (numpy scalars, timestamps, frames, paths)."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pd.Timestamp | dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, pd.DataFrame):
        return json.loads(value.to_json(orient="records", date_format="iso"))
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"cannot put {type(value).__name__} in results.json")


def write_results(results: Mapping[str, Any], parameters: Mapping[str, Any] | None = None) -> Path | None:
    """Write the run's machine-readable findings to results.json (inside a runner run only).

    Returns the path written, or None when the notebook runs interactively or under plain
    papermill, where there is no run directory.
    """
    run = current_run()
    payload = {"job": run["job"], "run_id": run["run_id"], "parameters": dict(parameters or {}),
               **results}
    text = json.dumps(payload, indent=2, default=json_default, allow_nan=False)
    if not run["run_dir"]:
        return None
    return atomic_write(Path(run["run_dir"]) / "results.json", text)
