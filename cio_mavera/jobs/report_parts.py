"""Small pieces every job's report uses: figures as PNG, the parameters table, data age."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Mapping
from typing import Any

import pandas as pd
from matplotlib.figure import Figure


def figure_png(figure: Figure, dpi: int = 110) -> bytes:
    """A figure as PNG bytes: displays the same under Agg, inline and in the static HTML report."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def parameters_table(parameters: Mapping[str, Any]) -> pd.DataFrame:
    """The run's parameters as a two-column table (the parameters cell itself is hidden in reports)."""
    return pd.DataFrame({"Parameter": list(parameters),
                         "Value": [repr(v) for v in parameters.values()]}).set_index("Parameter")


def age_text(when: pd.Timestamp) -> str:
    """How long ago `when` was, in the largest sensible unit ("45 s", "12 min", "3.5 h", "4 days")."""
    seconds = max(0.0, (pd.Timestamp(dt.datetime.now(dt.UTC)) - when).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"
