"""Checks the notebook tests share: nbval execution, the code-free offline report, and a real
headless browser (Debian's chromium over the DevTools protocol) to look at reports as readers do."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

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


def kernel_execute(client: Any, code: str, timeout: float = 600) -> list[dict]:
    """Run `code` in a kept kernel as Shift+Enter on a cell would; its outputs (fails on an error)."""
    outputs: list[dict] = []

    def keep(message: dict) -> None:
        if message["msg_type"] in ("stream", "display_data", "execute_result", "error"):
            outputs.append({"type": message["msg_type"], **message["content"]})

    reply = client.execute_interactive(code, timeout=timeout, output_hook=keep, allow_stdin=False)
    errors = [f"{o['ename']}: {o['evalue']}" for o in outputs if o["type"] == "error"]
    assert reply["content"]["status"] == "ok", f"{code.splitlines()[0]!r} failed: {errors}"
    return outputs


def kernel_value(client: Any, expression: str) -> Any:
    """The JSON value of `expression` in the kernel."""
    out = kernel_execute(client, f"import json as _j; print(_j.dumps({expression}))")
    return json.loads("".join(o["text"] for o in out if o["type"] == "stream" and o["name"] == "stdout"))


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


# ---- a real browser ------------------------------------------------------------------------------

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--mute-audio", "--remote-debugging-port=0")
# A4 (210 mm) less the report's 12 mm print margins each side, in CSS pixels (96 per inch).
A4_PRINT_WIDTH_PX = round((210 - 2 * 12) / 25.4 * 96)

# Runs in the page: how wide the layout is, which images did not decode, what sticks out.
LAYOUT_CHECK = """(async () => {
  const images = Array.from(document.images);
  await Promise.all(images.map(img => img.decode().catch(() => null)));
  const width = window.innerWidth;
  const clipped = el => { for (let p = el.parentElement; p; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll' || o === 'hidden') return true; }
    return false; };
  const sticking = Array.from(document.querySelectorAll('body *'))
    .filter(el => el.getBoundingClientRect().right > width + 0.5 && !clipped(el))
    .slice(0, 8).map(el => el.tagName.toLowerCase() + '.' + String(el.className).slice(0, 40));
  const tables = Array.from(document.querySelectorAll('table')).map(t => {
    const box = t.parentElement.getBoundingClientRect(), own = t.getBoundingClientRect();
    return {right: own.right, container_right: box.right}; });
  const charts = images.map(img => { const r = img.getBoundingClientRect();
    return {width: r.width, height: r.height, right: r.right}; });
  return {scroll_width: document.scrollingElement.scrollWidth, viewport_width: width,
          viewport_height: window.innerHeight, charts: charts,
          height: document.scrollingElement.scrollHeight, images: images.length,
          undecoded: images.filter(img => !(img.complete && img.naturalWidth > 0))
                           .map(img => img.src.slice(0, 60)),
          sticking_out: sticking, tables: tables};
})()"""


def chromium_binary() -> str | None:
    """Debian's chromium, if installed (`make services` installs it as root)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class HeadlessChromium:
    """One headless Chromium page driven over the DevTools protocol, every wait bounded.

    Started with a fresh profile in `profile_dir`; closed (its whole process group) on exit.
    """

    def __init__(self, binary: str, profile_dir: Path, timeout_s: float = 60) -> None:
        self.binary, self.profile_dir, self.timeout_s = binary, Path(profile_dir), timeout_s
        self.requests: list[str] = []  # every URL the page asked for (data: URLs cut short)
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> HeadlessChromium:
        self._deadline = time.monotonic() + self.timeout_s
        self.process = subprocess.Popen(
            [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile_dir}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, start_new_session=True)
        found = threading.Event()
        self._log: list[str] = []
        endpoint: list[str] = []

        def read_stderr() -> None:  # also keeps the pipe drained for the browser's lifetime
            for line in self.process.stderr:
                self._log.append(line)
                match = re.search(r"DevTools listening on (ws://\S+)", line)
                if match and not endpoint:
                    endpoint.append(match.group(1))
                    found.set()

        threading.Thread(target=read_stderr, daemon=True).start()
        try:
            if not found.wait(self._left()):
                raise TimeoutError("chromium did not start its DevTools endpoint:\n"
                                   + "".join(self._log[-20:]))
            self._closing = contextlib.ExitStack()
            self.socket = self._closing.enter_context(
                connect(endpoint[0], max_size=None, proxy=None, open_timeout=self._left()))
            target = self.send("Target.createTarget", url="about:blank", session=False)
            self.session = self.send("Target.attachToTarget", targetId=target["targetId"],
                                     flatten=True, session=False)["sessionId"]
            self.send("Page.enable")
            self.send("Network.enable")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        if hasattr(self, "_closing"):
            self._closing.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # chromium's own process group only
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def _left(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the browser check took over {self.timeout_s:.0f} s")
        return left

    def _receive(self) -> dict[str, Any]:
        message = json.loads(self.socket.recv(timeout=self._left()))
        if message.get("method") == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            self.requests.append(url[:100] if url.startswith("data:") else url)
        return message

    def send(self, method: str, session: bool = True, **params: Any) -> dict[str, Any]:
        """Call a DevTools method on the page (or the browser) and return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self.socket.send(json.dumps(message))
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def wait_for(self, event: str) -> dict[str, Any]:
        """The next `event` the page sends (one already received counts)."""
        for index, seen in enumerate(self._events):
            if seen.get("method") == event:
                return self._events.pop(index).get("params", {})
        while True:
            message = self._receive()
            if message.get("method") == event:
                return message.get("params", {})

    def open(self, url: str, width: int = 1280, height: int = 900, media: str = "screen") -> None:
        """Load `url` in a `width` x `height` viewport with `media` ("screen" or "print") CSS."""
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)
        self.send("Emulation.setEmulatedMedia", media=media)
        self._events.clear()
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send("Runtime.evaluate", expression=expression, awaitPromise=True,
                           returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def layout(self) -> dict[str, Any]:
        """LAYOUT_CHECK's findings for the page as loaded."""
        return self.evaluate(LAYOUT_CHECK)

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        """A PNG of the viewport (or the whole page) written to `path`."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.evaluate("[document.scrollingElement.scrollWidth,"
                                 " document.scrollingElement.scrollHeight]")
            params |= {"captureBeyondViewport": True,
                       "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}}
        Path(path).write_bytes(base64.b64decode(self.send("Page.captureScreenshot", **params)["data"]))
        return Path(path)

    def pdf(self, path: Path) -> Path:
        """The page printed to PDF (A4, the report's own @page margins) at `path`."""
        data = self.send("Page.printToPDF", preferCSSPageSize=True, printBackground=True)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's header."""
    header = Path(path).read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")
