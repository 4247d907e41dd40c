"""Customer.io exports into the parquet cache: ask for an export, wait, stream its file into parts.

Used by `datasets.customers(via="export")`; any other export (a campaign's deliveries, say) goes
into a cache entry the same way. The file is parsed as it downloads (`customerio.export_files`),
so memory stays flat whatever its size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pandas as pd
import pyarrow as pa

from .cache import CacheEntry, MaxAge
from .customerio.app import AppClient
from .customerio.export_files import DEFAULT_FORMAT, ExportFormat
from .customerio.exports import Export, PollPolicy
from .errors import NotFound

__all__ = ["export_into_cache"]

log = logging.getLogger("cio_mavera.export_cache")

Progress = Callable[[int, int | None], None]


def export_into_cache(app: AppClient, entry: CacheEntry, start_export: Callable[[], Export], *,
                      refresh: bool = False, max_age: MaxAge = None,
                      poll: PollPolicy | None = None,
                      export_format: ExportFormat = DEFAULT_FORMAT,
                      progress: Progress | None = None,
                      on_state: Callable[[Export], None] | None = None,
                      on_part: Callable[[str], None] | None = None) -> Export:
    """Fill `entry` (its lock held) with an export's file: `start_export()` asks for the export,
    then it is polled, downloaded and stored as parts `export-00000`, ... of string columns.

    Any export works: `lambda: app.exports.deliveries(campaign_id=7, start=..., end=...)`
    stores a campaign's deliveries as `lambda: app.exports.customers(filters)` stores people.
    A pull that stopped after asking for its export picks the same export up again (while it is
    not failed), so a rerun does not wait for Customer.io to write a second file. Parts are
    written as the file is read, but the entry is marked complete only once the whole file has
    been read intact; a failed attempt's parts are replaced or dropped. Returns the done export.
    """
    entry.begin(refresh=refresh, max_age=max_age)
    export = _stored_export(app, entry)
    if export is None:
        export = start_export()
        entry.write_part("export", pd.DataFrame({"export_id": [export.id],
                                                 "created_at": [export.created_at]}),
                         kind="export", requests=1)
    done = app.exports.wait(export.id, poll=poll, on_state=on_state)

    def store(index: int, table: pa.Table) -> None:
        name = f"export-{index:05d}"
        entry.write_part(name, table.to_pandas(), key=f"export-{done.id}")
        if on_part is not None:
            on_part(name)

    _, tables = app.exports.download(done, store, fmt=export_format, progress=progress)
    entry.complete(keep=[f"export-{i:05d}" for i in range(tables)])
    return done


def _stored_export(app: AppClient, entry: CacheEntry) -> Export | None:
    """The export an unfinished pull of this entry asked for, if it can still be used."""
    frame = entry.read_part("export")
    if frame is None or frame.empty:
        return None
    try:
        export = app.exports.get(int(frame["export_id"].iloc[0]))
    except NotFound:
        return None
    if export.is_failed:
        return None
    log.info("picking up export %d of an unfinished pull", export.id)
    return export
