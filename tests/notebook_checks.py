"""Checks the notebook tests share: nbval execution and the code-free, offline report."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from cio_mavera.reports import PROJECT_ROOT


def run_nbval(notebook: Path, data_dir: Path, env: Mapping[str, str] | None = None) -> None:
    """Execute `notebook` under `pytest --nbval-lax` in sandbox mode and fail with its output."""
    environment = {**os.environ, "CIO_MAVERA_MODE": "sandbox", "CIO_MAVERA_DATA_DIR": str(data_dir),
                   "MPLBACKEND": "Agg", "TQDM_DISABLE": "1", **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
         "-q", str(Path(notebook).relative_to(PROJECT_ROOT))],
        cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert re.search(r"\d+ passed", done.stdout)


def assert_code_free_offline_report(page: str, code: Iterable[str], min_images: int) -> None:
    """The HTML shows none of `code`, loads nothing from the network and embeds its charts."""
    for snippet in ("def ", "import ", "write_results(", *code):
        assert snippet not in page, snippet
    assert "<script src=" not in page and "<link rel=\"stylesheet\" href=\"http" not in page
    charts = re.findall(r'<img [^>]*src="data:image/png;base64,', page)
    assert len(charts) >= min_images, f"{len(charts)} embedded charts, expected {min_images}+"
    assert "SANDBOX DATA" in page and "What to do next" in page
