"""Run a job's notebook with papermill and publish it: executed notebook, report.html, results.json.

Layout of one run: `reports/<job>/<run-id>/{notebook.ipynb, report.html, results.json, run.json}`,
and `reports/index.html` lists every run. The HTML has no code, no injected-parameters cell and
nothing fetched from the network. Secrets never become papermill parameters: the kernel reads
keys from the environment itself. The kernel's side (which run it is, results.json) is `run_results`.
"""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import json
import logging
import os
import re
import secrets as _random
import shlex
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import nbformat
import papermill
from jupyter_client.manager import AsyncKernelManager
from nbconvert import HTMLExporter
from traitlets import default

from .errors import CioMaveraError, InvalidParameter
from .files import atomic_write
from .jobs.audiences.parameters import PARAMETERS as AUDIENCE_PARAMETERS
from .jobs.campaigns.parameters import PARAMETERS as CAMPAIGN_PARAMETERS
from .jobs.retention.parameters import PARAMETERS as RETENTION_PARAMETERS
from .parameters import (
    ParameterSpec,
    contains_secret,
    parse_cli_value,
    plain_data,
    spec_from_defaults,
)
from .report_index import index_page, read_runs
from .report_page import Failure, finish_page
from .run_results import JOB_ENV, RUN_DIR_ENV, RUN_ID_ENV, json_default
from .settings import PROJECT_ROOT, load_settings

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
REPORTS_DIR = PROJECT_ROOT / "reports"
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

_SECRETISH = ("key", "secret", "token", "password", "credential", "auth")
_RUN_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{4}")
_HIDDEN_TAGS = {"injected-parameters", "parameters", "remove_cell", "remove-cell",
                "papermill-error-cell-tag"}  # papermill's own error banner and anchor


@dataclass(frozen=True)
class Job:
    """A job the kit can run: its CLI name, notebook, what it needs to run live, its parameters."""

    name: str
    notebook: str
    needs: tuple[str, ...]
    summary: str
    parameters: ParameterSpec | None = None  # None: typed loosely from the notebook's defaults

    def spec(self) -> ParameterSpec:
        """The declared parameters, or ones typed from the notebook's parameters cell."""
        return self.parameters or spec_from_defaults(notebook_parameters(NOTEBOOKS_DIR / self.notebook))


JOBS: dict[str, Job] = {
    job.name: job for job in (
        Job("campaign-messaging", "01_campaign_messaging.ipynb", ("customerio", "mavera"),
            "campaign metrics -> underperformers -> strategy -> persona-validated variations",
            CAMPAIGN_PARAMETERS),
        Job("attribute-personas", "02_attribute_personas.ipynb", ("customerio", "mavera"),
            "customer attributes -> audience clusters -> Mavera custom personas",
            AUDIENCE_PARAMETERS),
        Job("retention-research", "03_retention_research.ipynb", ("customerio", "mavera"),
            "signed reporting webhooks -> event log -> Mave retention research",
            RETENTION_PARAMETERS),
    )
}


class RunFailed(CioMaveraError):
    """A notebook run failed; its executed notebook is kept in `run_dir` for debugging."""

    def __init__(self, message: str, run_dir: Path) -> None:
        super().__init__(message)
        self.run_dir = run_dir


@dataclass
class RunResult:
    """Where a run's outputs are and how it ended."""

    job: str
    run_id: str
    run_dir: Path
    status: str
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def report(self) -> Path:
        return self.run_dir / "report.html"

    @property
    def notebook(self) -> Path:
        return self.run_dir / "notebook.ipynb"

    @property
    def results(self) -> Path:
        return self.run_dir / "results.json"


def get_job(name: str) -> Job:
    """The job called `name`, or an error listing the jobs that exist."""
    if name not in JOBS:
        raise InvalidParameter(f"unknown job {name!r}; choose one of {', '.join(JOBS)}")
    return JOBS[name]


def available_jobs() -> list[Job]:
    """Jobs whose notebook is present in notebooks/."""
    return [job for job in JOBS.values() if (NOTEBOOKS_DIR / job.notebook).is_file()]


def notebook_parameters(notebook: Path) -> dict[str, Any]:
    """The names and default values in a notebook's `parameters` cell."""
    nb = nbformat.read(notebook, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise CioMaveraError(f"{notebook.name} must have exactly one cell tagged 'parameters'")
    found: dict[str, Any] = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and node.value is not None:
                    found[target.id] = ast.literal_eval(node.value)
    return found


def check_parameters(job: Job, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Validate parameters before anything runs: known names, plain data, declared types and
    values, never a secret. Returns the checked values."""
    for name in parameters:
        if any(word in str(name).lower() for word in _SECRETISH):
            raise InvalidParameter(f"parameter {name!r} looks like a secret; keys come from the "
                                   "environment or .env, never from parameters")
    plain = {name: plain_data(name, value) for name, value in parameters.items()}
    known_secrets = load_settings().secrets()
    for name, value in plain.items():
        if contains_secret(value, known_secrets):
            raise InvalidParameter(f"parameter {name!r} contains a configured key; keys come from "
                                   "the environment, never from parameters")
    try:
        return job.spec().check(plain)
    except InvalidParameter as exc:
        raise InvalidParameter(f"{job.name}: {exc}") from None


def usable_reports_dir(out_dir: Path | None) -> Path:
    """The reports directory, created and proven writable before anything runs."""
    reports_dir = Path(out_dir) if out_dir else REPORTS_DIR
    try:
        reports_dir.mkdir(parents=True, exist_ok=True)
        probe = reports_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InvalidParameter(f"cannot write reports to {reports_dir} ({exc.strerror or exc}); "
                               "pass a writable --out DIR") from None
    return reports_dir


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a short random suffix."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + _random.token_hex(2)


@contextlib.contextmanager
def _kernel_environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables the kernel inherits, restoring the previous values after."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class IpcKernelManager(AsyncKernelManager):
    """Talk to the report kernel over local IPC sockets rather than TCP on loopback.

    Nothing about a run's code or outputs crosses a network socket, and ipykernel stops
    warning about unencrypted TCP on every run.
    """

    @default("transport")
    def _default_transport(self) -> str:
        return "ipc"

    @default("ip")
    def _default_ip(self) -> str:
        # jupyter_client would use "kernel-ipc" in the working directory (the project root), so
        # two runs at once (a batch) raced for the same socket files and one kernel's messages
        # reached the other ("Invalid Signature"). Each kernel gets its own path; its socket
        # files are removed when it shuts down.
        return os.path.join(tempfile.gettempdir(), f"cio-mavera-kernel-{uuid.uuid4().hex}")


def run_job(name: str, parameters: Mapping[str, Any] | None = None, *, out_dir: Path | None = None,
            cell_timeout_s: int = 900, environment: Mapping[str, str] | None = None,
            run_id: str | None = None, progress: Callable[[str], None] | None = None) -> RunResult:
    """Execute job `name` into a new run directory and render it; raise RunFailed on failure.

    `progress` is told as each step (code cell, named by its section heading) starts and ends.
    """
    job = get_job(name)
    params = check_parameters(job, parameters or {})
    reports_dir = usable_reports_dir(out_dir)
    # Missing keys are found here, not half way through the notebook (auto mode falls back to the
    # sandbox; CIO_MAVERA_MODE=live without them is an error naming the variables).
    load_settings({**os.environ, **(environment or {})}).resolve_mode(*job.needs)
    if run_id is not None and not _RUN_ID.fullmatch(run_id):
        raise InvalidParameter(f"run id {run_id!r} must look like {new_run_id()}")
    run = RunResult(job.name, run_id or new_run_id(), Path(), "running", params)
    run.run_dir = reports_dir / job.name / run.run_id
    run.run_dir.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    _write_run_record(run, started)

    kernel_env = {RUN_DIR_ENV: str(run.run_dir), RUN_ID_ENV: run.run_id, JOB_ENV: job.name,
                  "TQDM_DISABLE": "1", "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore",
                  **(environment or {})}
    error: str | None = None
    message = ""
    try:
        with _kernel_environment(kernel_env):
            papermill.execute_notebook(
                str(NOTEBOOKS_DIR / job.notebook), str(run.notebook), parameters=params,
                kernel_name="python3", cwd=str(PROJECT_ROOT), execution_timeout=cell_timeout_s,
                progress_bar=False, log_output=False, report_mode=False,
                kernel_manager_class="cio_mavera.reports.IpcKernelManager",
                **_step_hooks(NOTEBOOKS_DIR / job.notebook, progress))
    except papermill.PapermillExecutionError as exc:
        error = f"cell {exc.exec_count or exc.cell_index} raised {exc.ename}: {exc.evalue}"
        message = f"{exc.ename}: {exc.evalue}"
    except Exception as exc:  # kernel died, timeout: the notebook on disk still shows how far it got
        error = message = f"{type(exc).__name__}: {exc}"
    if error is None and not run.results.is_file():
        error = message = "the notebook finished without writing results.json"
    if run.notebook.is_file():
        failure = None if error is None else Failure(
            step="", message=_one_line(message), notebook=str(run.notebook),
            rerun=rerun_command(job.name, params, reports_dir if out_dir else None))
        render_html(run.notebook, run.report, failure)
    run.status = "failed" if error else "succeeded"
    _write_run_record(run, started, error)
    build_index(reports_dir)
    if error:
        raise RunFailed(f"{job.name} run {run.run_id} failed: {error}; executed notebook kept at "
                        f"{run.notebook}", run.run_dir)
    _stamp_results(run)
    return run


def _step_names(cells: list[Any]) -> dict[int, str]:
    """Each code cell's step name, by position: its leading comment ("# Pull campaign metrics") or
    else the section heading above it. The parameters cells (the template's and papermill's
    injected one) are not steps."""
    heading, steps = "Setup", {}
    for position, cell in enumerate(cells):
        if cell.cell_type == "markdown":
            # Section headings (##, ###) name steps; the title above them does not.
            titles = [line.lstrip("#").strip() for line in cell.source.splitlines()
                      if line.startswith("##")]
            heading = titles[0] if titles else heading
        elif cell.cell_type == "code" and not {"parameters", "injected-parameters"} & set(
                cell.get("metadata", {}).get("tags", [])):
            first = cell.source.lstrip().splitlines()[0] if cell.source.strip() else ""
            steps[position] = first.lstrip("# ").strip() if first.startswith("# ") else heading
    return steps


def _step_hooks(notebook: Path, progress: Callable[[str], None] | None) -> dict[str, Any]:
    """nbclient hooks that report each code cell as a step named by its section heading."""
    if progress is None:
        return {}
    cells = nbformat.read(notebook, as_version=4).cells
    steps = {cells[position].get("id"): name for position, name in _step_names(cells).items()}
    numbers = {cell_id: n for n, cell_id in enumerate(steps, start=1)}
    started: dict[str, float] = {}

    def on_start(cell: Any, **_: Any) -> None:
        if cell.get("id") in steps:
            started[cell.get("id")] = time.monotonic()
            progress(f"  [{numbers[cell.get('id')]}/{len(steps)}] {steps[cell.get('id')]} ...")

    def on_executed(cell: Any, **_: Any) -> None:
        if cell.get("id") in started:
            seconds = time.monotonic() - started[cell.get("id")]
            progress(f"  [{numbers[cell.get('id')]}/{len(steps)}] {steps[cell.get('id')]}: "
                     f"{seconds:.1f} s")

    return {"on_cell_start": on_start, "on_cell_executed": on_executed}


def rerun_command(job: str, parameters: Mapping[str, Any], out_dir: Path | None = None) -> str:
    """The shell command that runs `job` again with the same parameters (and --out)."""
    words = ["cio-mavera", "run", job]
    for name, value in parameters.items():
        text = value if isinstance(value, str) and parse_cli_value(value) == value \
            else json.dumps(value, default=str)
        words += ["-p", str(name), text]
    if out_dir is not None:
        words += ["--out", str(out_dir)]
    return shlex.join(words)


def _one_line(text: str, limit: int = 300) -> str:
    """The first line of an error message, trimmed to `limit` characters."""
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _write_run_record(run: RunResult, started: dt.datetime, error: str | None = None) -> None:
    record = {"job": run.job, "run_id": run.run_id, "status": run.status,
              "parameters": run.parameters, "started_at": started.isoformat(timespec="seconds"),
              "finished_at": None if run.status == "running"
              else dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "error": error}
    atomic_write(run.run_dir / "run.json", json.dumps(record, indent=2, default=str))


def _stamp_results(run: RunResult) -> None:
    """Make sure results.json names its job, run and parameters."""
    results = json.loads(run.results.read_text())
    results.setdefault("job", run.job)
    results.setdefault("run_id", run.run_id)
    results.setdefault("parameters", run.parameters)
    atomic_write(run.results, json.dumps(results, indent=2, default=json_default))


# ---- rendering -------------------------------------------------------------------------------

def render_html(notebook_path: Path, html_path: Path, failure: Failure | None = None) -> Path:
    """Render an executed notebook as a code-free, self-contained HTML report.

    A failed run (`failure`, or a cell with an error output) becomes a box saying which step failed
    and what to do, above what ran before it; tracebacks stay in the executed notebook.
    """
    nb = nbformat.read(notebook_path, as_version=4)
    failed_at = _failed_cell(nb.cells)
    if failed_at is not None:
        failure = replace(failure or Failure(step="", message="", notebook=str(notebook_path)),
                          step=(failure.step if failure and failure.step else
                                _failed_step(nb.cells, failed_at)),
                          message=(failure.message if failure and failure.message else
                                   _error_line(nb.cells[failed_at])))
        nb.cells = nb.cells[: failed_at + 1]  # what comes after never ran
    elif failure is not None and not failure.step:
        failure = replace(failure, step="after the last cell")
    nb.cells = [c for c in nb.cells if not _HIDDEN_TAGS & set(c.get("metadata", {}).get("tags", []))]
    headings = [line.lstrip("# ").strip() for c in nb.cells if c.cell_type == "markdown"
                for line in c.source.splitlines() if line.startswith("# ")]
    if headings:  # the page title, instead of the file name
        nb.metadata["title"] = headings[0]
    for cell in nb.cells:
        if cell.cell_type == "code":
            # Warnings and progress chatter on stderr are for the analyst, not the reader, and
            # tracebacks for whoever opens the executed notebook.
            cell.outputs = [o for o in cell.get("outputs", []) if o.get("output_type") != "error"
                            and not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    exporter = HTMLExporter(template_name="report", extra_template_basedirs=[str(TEMPLATES_DIR)],
                            exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    exporter.log.setLevel(logging.ERROR)  # its missing-alt-text notice would print on every run
    body, _ = exporter.from_notebook_node(nb)
    return atomic_write(html_path, finish_page(body, failure))


def _failed_cell(cells: list[Any]) -> int | None:
    """The position of the cell a run stopped at: an error output, or papermill's failed mark."""
    for position, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        mark = cell.get("metadata", {}).get("papermill", {})
        if mark.get("exception") or mark.get("status") == "failed" or any(
                o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return position
    return None


def _failed_step(cells: list[Any], position: int) -> str:
    name = _step_names(cells).get(position, "Setup")
    number = cells[position].get("execution_count")
    return f"{name}" + (f" (cell {number})" if number else "")


def _error_line(cell: Any) -> str:
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    if not errors:
        return "the cell did not finish (timed out or the kernel stopped)"
    return _one_line(f"{errors[0].get('ename', 'Error')}: {errors[0].get('evalue', '')}")


def build_index(reports_dir: Path | None = None) -> Path:
    """Write reports/index.html: each job's runs as a timeline, newest first, with status,
    parameters, headline finding, what changed and a link to the report."""
    reports_dir = Path(reports_dir or REPORTS_DIR)
    reports_dir.mkdir(parents=True, exist_ok=True)
    page = index_page(read_runs(reports_dir), job_order=JOBS,
                      summaries={name: job.summary for name, job in JOBS.items()})
    return atomic_write(reports_dir / "index.html", page)
