"""Progress bars for long steps: in a terminal and in JupyterLab alike, silent in reports.

The report runner sets TQDM_DISABLE=1 (a rendered report has no use for a bar), so the same call
draws a bar for an analyst in a notebook or shell and nothing under papermill or a pipe.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm

Progress = Callable[[int, "int | None"], None]


def _in_a_kernel() -> bool:
    """Whether this code runs in a Jupyter kernel (IPython is only looked at if already loaded)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def enabled() -> bool:
    """Bars are drawn on a terminal or in a notebook kernel, unless TQDM_DISABLE says otherwise."""
    flag = os.environ.get("TQDM_DISABLE", "").strip().lower()
    return flag in ("", "0", "false", "no") and (_in_a_kernel() or sys.stderr.isatty())


@contextmanager
def progress_bar(label: str, unit: str) -> Iterator[Progress | None]:
    """A `progress(done, total)` callback drawing a bar, or None when bars are off."""
    if not enabled():
        yield None
        return
    bar = tqdm(desc=label, unit=unit, unit_scale=True, leave=False, file=sys.stderr)

    def update(done: int, total: int | None) -> None:
        if total is not None and bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()
