"""The credits ledger: parquet rows per call, append-safe across processes, read back as a DataFrame."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from cio_mavera.mavera.ledger import COLUMNS, CreditsLedger, credits_spent, ledger_dir, read_ledger


def test_flushed_rows_read_back_with_the_ledger_columns(tmp_path: Path) -> None:
    ledger = CreditsLedger(tmp_path, "sandbox")
    ledger.record(run="r1", job="campaign-messaging", endpoint="mave.chat", credits=27, cached=False)
    ledger.record(run="r1", job="campaign-messaging", endpoint="mave.chat", credits=0, cached=True)
    path = ledger.flush()
    assert path is not None and path.parent == ledger_dir(tmp_path, "sandbox")
    frame = read_ledger(tmp_path, "sandbox")
    assert list(frame.columns) == COLUMNS
    assert frame["credits"].tolist() == [27, 0]
    assert frame["cached"].tolist() == [False, True]
    assert str(frame["time"].dt.tz) == "UTC"


def test_modes_are_kept_apart(tmp_path: Path) -> None:
    sandbox = CreditsLedger(tmp_path, "sandbox")
    sandbox.record(run="r", job="j", endpoint="chat.completions", credits=3, cached=False)
    sandbox.flush()
    live = CreditsLedger(tmp_path, "live")
    live.record(run="r", job="j", endpoint="chat.completions", credits=5, cached=False)
    live.flush()
    assert read_ledger(tmp_path, "live")["credits"].tolist() == [5]
    assert read_ledger(tmp_path, "sandbox")["credits"].tolist() == [3]


def test_credits_spent_counts_one_run_including_unflushed_rows(tmp_path: Path) -> None:
    ledger = CreditsLedger(tmp_path, "live", flush_every=1000)
    ledger.record(run="a", job="j", endpoint="personas.create", credits=300, cached=False)
    ledger.flush()
    ledger.record(run="a", job="j", endpoint="chat.completions", credits=4, cached=False)
    ledger.record(run="b", job="j", endpoint="chat.completions", credits=2, cached=False)
    assert ledger.credits_spent("a") == 304
    assert credits_spent("a", data_dir=tmp_path, mode="live") == 300  # only what is on disk


def test_buffer_flushes_itself_every_n_rows(tmp_path: Path) -> None:
    ledger = CreditsLedger(tmp_path, "live", flush_every=3)
    for i in range(7):
        ledger.record(run="r", job="j", endpoint="responses", credits=i, cached=False)
    assert len(read_ledger(tmp_path, "live")) == 6
    assert len(ledger.pending()) == 1


def test_two_processes_appending_at_once_lose_no_rows(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from cio_mavera.mavera.ledger import CreditsLedger\n"
        "ledger = CreditsLedger(Path(sys.argv[1]), 'live', flush_every=7)\n"
        "for i in range(50):\n"
        "    ledger.record(run=sys.argv[2], job='j', endpoint='chat.completions', credits=1, cached=False)\n"
        "ledger.close()\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), run])
             for run in ("p1", "p2")]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    frame = read_ledger(tmp_path, "live")
    assert frame.groupby("run")["credits"].sum().to_dict() == {"p1": 50, "p2": 50}


def test_an_unreadable_ledger_file_is_skipped_not_fatal(tmp_path: Path, caplog) -> None:
    ledger = CreditsLedger(tmp_path, "live")
    ledger.record(run="r", job="j", endpoint="usage", credits=0, cached=False)
    ledger.flush()
    (ledger_dir(tmp_path, "live") / "torn.parquet").write_bytes(b"PAR1 not really")
    frame = read_ledger(tmp_path, "live")
    assert len(frame) == 1
    assert "torn.parquet" in caplog.text


def test_an_empty_ledger_is_an_empty_frame_with_the_columns(tmp_path: Path) -> None:
    frame = read_ledger(tmp_path, "live")
    assert isinstance(frame, pd.DataFrame) and frame.empty
    assert list(frame.columns) == COLUMNS
