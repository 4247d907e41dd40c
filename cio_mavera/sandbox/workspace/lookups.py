"""Reading a generated workspace: daily metric series, attribute strings and rows by identifier."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cio_mavera.errors import CioMaveraError

from .campaigns import SERIES, SERIES_INDEX
from .generator import Workspace


class WorkspaceLookupError(CioMaveraError, KeyError):
    """The sandbox workspace has no campaign/action/identifier of that name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def metric_series(ws: Workspace, campaign_id: int, action_id: int | None, start_day: dt.date,
                  end_day: dt.date) -> dict[str, np.ndarray]:
    """Daily counts per v2 series for start_day..end_day inclusive (zeros outside the generated days).

    With action_id None it is the campaign total (sum over its actions).
    """
    in_campaign = (ws.actions["campaign_id"] == campaign_id).to_numpy()
    if not in_campaign.any():
        raise WorkspaceLookupError(f"no campaign {campaign_id} in sandbox workspace {ws.site_id}")
    if action_id is None:
        block = ws.metric_cube[in_campaign].sum(axis=0)
    else:
        match = np.flatnonzero(in_campaign & (ws.actions["action_id"] == action_id).to_numpy())
        if match.size == 0:
            raise WorkspaceLookupError(f"no action {action_id} in campaign {campaign_id}")
        block = ws.metric_cube[match[0]]
    n_days = (end_day - start_day).days + 1
    out = np.zeros((len(SERIES), max(n_days, 0)), dtype=np.int64)
    offset = (start_day - ws.first_day).days  # index of start_day in the cube
    lo, hi = max(offset, 0), min(offset + n_days, ws.days)
    if hi > lo:
        out[:, lo - offset:hi - offset] = block[:, lo:hi]
    return {name: out[SERIES_INDEX[name]] for name in SERIES}


def customer_attribute_strings(ws: Workspace, rows: np.ndarray | Sequence[int]) -> list[dict[str, str]]:
    """Each row's attributes as Customer.io returns them: all values strings, missing ones omitted."""
    subset = ws.customers.iloc[np.asarray(rows, dtype=np.int64)]
    columns = {name: _as_strings(subset[name]) for name in subset.columns}
    return [{name: values[i] for name, values in columns.items() if values[i] is not None}
            for i in range(len(subset))]


def find_rows(ws: Workspace, id_type: str, values: Sequence[str]) -> np.ndarray:
    """Row index of each identifier of kind id|email|cio_id|phone, -1 where unknown."""
    if id_type not in ("id", "email", "cio_id", "phone"):
        raise WorkspaceLookupError(f"id_type must be id, email, cio_id or phone, got {id_type!r}")
    index = ws._lookup.get(id_type)
    if index is None:
        # id and phone have gaps (email-only people); index only the people who have a value.
        column = ws.customers[id_type].astype(object)
        present = column.notna() & (column != "")
        index = pd.Series(np.flatnonzero(present.to_numpy()), index=pd.Index(column[present]))
        index = index[~index.index.duplicated()]
        ws._lookup[id_type] = index
    positions = index.reindex(pd.Index(list(values), dtype=object)).fillna(-1)
    return positions.to_numpy(dtype=np.int64)



def _as_strings(column: pd.Series) -> list[str | None]:
    """The column as Customer.io attribute strings (None where the person has no value)."""
    dtype = column.dtype
    missing = column.isna().to_numpy()
    if pd.api.types.is_bool_dtype(dtype):
        values = np.where(column.to_numpy(dtype=bool), "true", "false").tolist()
    elif pd.api.types.is_datetime64_dtype(dtype):
        values = column.dt.strftime("%Y-%m-%d").tolist()
    elif pd.api.types.is_float_dtype(dtype):
        values = [f"{v:.2f}".rstrip("0").rstrip(".") for v in column.to_numpy(dtype=float)]
    elif pd.api.types.is_integer_dtype(dtype):
        values = [str(int(v)) for v in column.to_numpy(dtype=np.int64, na_value=0)]
    else:
        values = column.astype(object).tolist()
    return [None if m or v == "" else v for v, m in zip(values, missing, strict=True)]
