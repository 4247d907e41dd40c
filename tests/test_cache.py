"""The parquet cache: manifest, atomic parts, max age, damaged files, resumable pulls."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from cio_mavera.cache import Cache, CacheEntry, pulled_at


def _entry(root: Path, version: int = 1, **params: object) -> CacheEntry:
    return Cache(root).entry("things", params or {"segment_id": None}, version)


def _frame(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"cio_id": [f"c{i}" for i in range(start, start + n)],
                         "plan": ["pro"] * n})


def _store(entry: CacheEntry, *parts: pd.DataFrame) -> None:
    entry.begin()
    for i, part in enumerate(parts):
        entry.write_part(f"part-{i:05d}", part)
    entry.complete()


def test_complete_entry_loads_with_manifest_and_pulled_at(tmp_path: Path) -> None:
    entry = _entry(tmp_path)
    _store(entry, _frame(3), _frame(2, start=3))
    manifest = json.loads(entry.manifest_path.read_text())
    assert manifest["status"] == "complete"
    assert manifest["rows"] == 5
    assert manifest["schema_version"] == 1
    assert manifest["parameters"] == {"segment_id": None}
    assert set(manifest["parts"]) == {"part-00000", "part-00001"}

    df = _entry(tmp_path).load()
    assert df is not None
    assert df["cio_id"].tolist() == ["c0", "c1", "c2", "c3", "c4"]
    assert pulled_at(df) is not None and pulled_at(df).tzinfo is not None


def test_entries_live_under_dataset_directory_per_parameter_set(tmp_path: Path) -> None:
    a, b = _entry(tmp_path, segment_id=1), _entry(tmp_path, segment_id=2)
    _store(a, _frame(1))
    _store(b, _frame(2))
    assert a.path.parent == b.path.parent == tmp_path / "things"
    assert a.path != b.path
    assert len(_entry(tmp_path, segment_id=2).load()) == 2


def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    entry = _entry(tmp_path)
    _store(entry, _frame(10))
    names = os.listdir(entry.path)
    assert sorted(names) == ["manifest.json", "part-00000.parquet"]


def test_partial_entry_is_not_loaded(tmp_path: Path) -> None:
    entry = _entry(tmp_path)
    entry.begin()
    entry.write_part("part-00000", _frame(3))
    assert _entry(tmp_path).load() is None


def test_entry_older_than_max_age_is_not_loaded(tmp_path: Path) -> None:
    entry = _entry(tmp_path)
    _store(entry, _frame(3))
    manifest = json.loads(entry.manifest_path.read_text())
    manifest["pulled_at"] = (pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=2)).isoformat()
    entry.manifest_path.write_text(json.dumps(manifest))
    assert _entry(tmp_path).load(max_age=3600) is None
    assert _entry(tmp_path).load(max_age=3 * 3600) is not None


def test_schema_mismatch_is_refetched_with_warning(tmp_path: Path, caplog) -> None:
    _store(_entry(tmp_path, version=1), _frame(3))
    with caplog.at_level(logging.WARNING, logger="cio_mavera.cache"):
        assert _entry(tmp_path, version=2).load() is None
    assert "schema version" in caplog.text


def test_corrupt_manifest_is_refetched_with_warning(tmp_path: Path, caplog) -> None:
    entry = _entry(tmp_path)
    _store(entry, _frame(3))
    entry.manifest_path.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="cio_mavera.cache"):
        assert _entry(tmp_path).load() is None
    assert "unreadable" in caplog.text


def test_damaged_part_is_forgotten_so_only_it_is_refetched(tmp_path: Path, caplog) -> None:
    entry = _entry(tmp_path)
    _store(entry, _frame(3), _frame(3, start=3))
    (entry.path / "part-00001.parquet").write_bytes(b"PAR1 garbage")
    fresh = _entry(tmp_path)
    with caplog.at_level(logging.WARNING, logger="cio_mavera.cache"):
        assert fresh.load() is None
    assert "damaged" in caplog.text
    kept = _entry(tmp_path).begin()
    assert kept == ["part-00000"]


def test_part_altered_but_still_valid_parquet_is_not_trusted(tmp_path: Path) -> None:
    entry = _entry(tmp_path)
    _store(entry, _frame(3))
    _frame(3, start=100).to_parquet(entry.path / "part-00000.parquet", index=False)
    assert _entry(tmp_path).load() is None


def test_begin_resumes_a_recent_partial_pull(tmp_path: Path) -> None:
    entry = _entry(tmp_path)
    entry.begin()
    entry.write_part("part-00000", _frame(3), key="k0")
    resumed = _entry(tmp_path)
    assert resumed.begin() == ["part-00000"]
    assert resumed.has_part("part-00000", "k0")
    assert not resumed.has_part("part-00000", "another-key")


def test_begin_with_refresh_starts_over(tmp_path: Path) -> None:
    entry = _entry(tmp_path)
    entry.begin()
    entry.write_part("part-00000", _frame(3))
    again = _entry(tmp_path)
    assert again.begin(refresh=True) == []
    assert not (again.path / "part-00000.parquet").exists()


def test_begin_does_not_resume_a_stale_partial_pull(tmp_path: Path) -> None:
    entry = _entry(tmp_path)
    entry.begin()
    entry.write_part("part-00000", _frame(3))
    manifest = json.loads(entry.manifest_path.read_text())
    manifest["started_at"] = (pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=3)).isoformat()
    entry.manifest_path.write_text(json.dumps(manifest))
    assert _entry(tmp_path).begin(max_age=86400) == []


def test_complete_with_keep_drops_parts_of_an_older_shape(tmp_path: Path) -> None:
    entry = _entry(tmp_path)
    entry.begin()
    for i in range(3):
        entry.write_part(f"part-{i:05d}", _frame(2, start=2 * i))
    entry.complete(keep=["part-00000", "part-00001"])
    df = _entry(tmp_path).load()
    assert len(df) == 4
    assert not (entry.path / "part-00002.parquet").exists()


def test_ids_parts_are_not_data(tmp_path: Path) -> None:
    entry = _entry(tmp_path)
    entry.begin()
    entry.write_part("ids", _frame(5), kind="ids")
    entry.write_part("part-00000", _frame(2))
    entry.complete()
    assert len(_entry(tmp_path).load()) == 2
    assert json.loads(entry.manifest_path.read_text())["rows"] == 2


def test_lock_makes_a_second_holder_wait(tmp_path: Path) -> None:
    order: list[str] = []
    first_in = threading.Event()

    def first() -> None:
        with _entry(tmp_path).lock():
            first_in.set()
            time.sleep(0.2)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait()
    with _entry(tmp_path).lock():
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]


def test_write_part_before_begin_is_an_error(tmp_path: Path) -> None:
    from cio_mavera.errors import CacheError

    with pytest.raises(CacheError):
        _entry(tmp_path).write_part("part-00000", _frame(1))
