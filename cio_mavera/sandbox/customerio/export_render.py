"""The files behind the sandbox's exports: gzip-compressed CSV with a header row, written in chunks.

Customer.io does not document the file (customerio-api.md §9); the sandbox writes the format the
kit assumes (`cio_mavera.customerio.export_files`): a header of column names, then one row per
person (cio_id, id, email, then each attribute as the string the App API reports; a missing
attribute is an empty field) or per delivery. Values are what a read of the same people through
the App API returns, so both paths of a pull can be compared row for row.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from ...files import atomic_path
from .deliveries import Messages
from .directory import Directory

IDENTIFIERS = ("cio_id", "id", "email")
CHUNK_ROWS = 20_000
# Plain metric names of a delivery row, each the unix time it was reached (empty if never).
DELIVERY_METRIC_COLUMNS = ("sent", "delivered", "opened", "clicked", "converted", "bounced",
                           "spammed", "unsubscribed", "dropped", "failed", "undeliverable",
                           "human_opened", "human_clicked", "prefetch_opened", "prefetch_clicked")
DELIVERY_COLUMNS = ("delivery_id", "deduplicate_id", "cio_id", "id", "email", "recipient", "type",
                    "campaign_id", "action_id", "parent_action_id", "newsletter_id", "content_id",
                    "broadcast_id", "msg_template_id", "subject", "failure_message", "created",
                    *DELIVERY_METRIC_COLUMNS)


class CustomerSnapshot:
    """The people an export selected, frozen when it was asked for (Track writes after it don't show)."""

    def __init__(self, directory: Directory, rows: np.ndarray,
                 attributes: Sequence[str] | None) -> None:
        self.people = directory.people
        self.n = directory.n
        self.rows = np.asarray(rows, dtype=np.int64)
        written = directory.written
        with written.lock:
            self.updates = {r: dict(v) for r, v in written.updates.items()}
            self.created = {r: directory.attributes(r)
                            for r in self.rows[self.rows >= self.n].tolist()}
        if attributes is None:
            extra = {name for values in [*self.updates.values(), *self.created.values()]
                     for name in values}
            base = [c for c in self.people.ws.customers.columns if c not in IDENTIFIERS]
            attributes = base + sorted(extra - set(base) - set(IDENTIFIERS))
        self.columns = [*IDENTIFIERS, *[a for a in attributes if a not in IDENTIFIERS]]

    def chunks(self, size: int = CHUNK_ROWS) -> Iterator[pa.Table]:
        """The selected people as tables of string columns, `size` rows at a time."""
        known = set(self.people.ws.customers.columns)
        for start in range(0, len(self.rows), size):
            rows = self.rows[start:start + size]
            inside = rows[rows < self.n]
            columns = {}
            for name in self.columns:
                values = self.people.column_strings(name, inside) if name in known \
                    else [None] * len(inside)
                columns[name] = values
            table_rows = self._merge(rows, inside, columns)
            yield pa.table({name: pa.array(values, pa.string())
                            for name, values in table_rows.items()})

    def _merge(self, rows: np.ndarray, inside: np.ndarray,
               columns: dict[str, list[str | None]]) -> dict[str, list[str | None]]:
        """Workspace values with Track's updates on top, and created people in their places."""
        if not self.updates and len(inside) == len(rows):
            return columns
        position = {int(r): i for i, r in enumerate(inside)}
        for row, changes in self.updates.items():
            i = position.get(row)
            if i is not None:
                for name, value in changes.items():
                    if name in columns:
                        columns[name][i] = value or None
        if len(inside) == len(rows):
            return columns
        merged: dict[str, list[str | None]] = {name: [] for name in columns}
        for row in rows.tolist():
            i = position.get(row)
            for name, values in columns.items():
                merged[name].append(values[i] if i is not None
                                    else self.created[row].get(name) or None)
        return merged


def write_csv_gz(path: Path, tables: Iterator[pa.Table], columns: Sequence[str]) -> int:
    """Write `tables` as one gzip-compressed CSV with a header row; return the data rows."""
    rows = 0
    with atomic_path(path, fsync=False) as tmp, gzip.open(tmp, "wb", compresslevel=1) as out:
        header = pa.table({name: pa.array([], pa.string()) for name in columns})
        pacsv.write_csv(header, out)
        options = pacsv.WriteOptions(include_header=False)
        for table in tables:
            pacsv.write_csv(table.select(list(columns)), out, options)
            rows += table.num_rows
    return rows


def render_customers(snapshot: CustomerSnapshot, path: Path) -> int:
    """Write a customers export file; return its rows."""
    return write_csv_gz(path, snapshot.chunks(), snapshot.columns)


def delivery_rows(messages: Messages, records: list[dict[str, Any]], directory: Directory,
                  attributes: Sequence[str]) -> pa.Table:
    """One row per delivery: its ids, owner, copy, creation and the time of each metric reached."""
    out: dict[str, list[str | None]] = {name: [] for name in (*DELIVERY_COLUMNS, *attributes)}
    for record in records:
        message = messages.render(record)
        who = message["customer_identifiers"]
        flat: dict[str, Any] = {**message, "delivery_id": message["id"], **who,
                                **{m: message["metrics"].get(m) for m in DELIVERY_METRIC_COLUMNS}}
        for name in DELIVERY_COLUMNS:
            value = flat.get(name)
            out[name].append(None if value is None or value == "" else str(value))
        if attributes:
            person = directory.attributes(int(record["_row"]))
            for name in attributes:
                out[name].append(person.get(name))
    return pa.table({name: pa.array(values, pa.string()) for name, values in out.items()})


def render_deliveries(table: pa.Table, path: Path) -> int:
    """Write a deliveries export file; return its rows."""
    return write_csv_gz(path, iter([table]), table.column_names)
