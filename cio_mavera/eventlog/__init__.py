"""Job 3's event log at scale: the parquet layout and compaction (`layout`), DuckDB reads and
incremental aggregates over it (`query`), and the delivery-history backfill (`backfill`)."""
