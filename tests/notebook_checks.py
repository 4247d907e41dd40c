"""Checks the notebook tests share: nbval execution and the code-free, offline report."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from html.parser import HTMLParser
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


# Attributes through which a page loads something (an <a href> is a link, not a load).
_LOADING_ATTRIBUTES = frozenset({"src", "href", "srcset", "data", "poster", "xlink:href",
                                 "background", "codebase", "manifest"})
_CSS_URL = re.compile(r"""url\(\s*(['"]?)(.*?)\1\s*\)|@import\s+(['"])(.*?)\3""", re.I | re.S)


class _Loads(HTMLParser):
    """Collects every URL an HTML page would fetch: tag attributes, inline styles, <style> CSS."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[tuple[str, str]] = []  # (where, url)
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"
        for name, value in attrs:
            if not value:
                continue
            if name == "style":
                self._css(f"<{tag} style>", value)
            elif name in _LOADING_ATTRIBUTES and not (tag == "a" and name == "href"):
                urls = [part.strip().split(" ")[0] for part in value.split(",")] \
                    if name == "srcset" else [value.strip()]
                self.urls += [(f"<{tag} {name}>", url) for url in urls if url]

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self._css("<style>", data)

    def _css(self, where: str, css: str) -> None:
        for match in _CSS_URL.finditer(css):
            url = (match.group(2) or match.group(4) or "").strip()
            if url:
                self.urls.append((where, url))


def external_loads(page: str) -> list[tuple[str, str]]:
    """Every (where, url) of `page` that loads from outside the file: anything but data: or #."""
    parser = _Loads()
    parser.feed(page)
    parser.close()
    return [(where, url) for where, url in parser.urls
            if not url.lower().startswith("data:") and not url.startswith("#")]


def assert_code_free_offline_report(page: str, code: Iterable[str], min_images: int) -> None:
    """The HTML shows none of `code`, loads nothing from outside itself and embeds its charts."""
    for snippet in ("def ", "import ", "write_results(", *code):
        assert snippet not in page, snippet
    assert external_loads(page) == []
    charts = re.findall(r'<img [^>]*src="data:image/png;base64,', page)
    assert len(charts) >= min_images, f"{len(charts)} embedded charts, expected {min_images}+"
    assert "SANDBOX DATA" in page and "What to do next" in page
