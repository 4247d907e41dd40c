"""Many runs from one file: a list or grid of (job, parameters, environment), run with bounded
parallelism under one credit budget, failures isolated, done runs skipped on a rerun.

A batch file:

```yaml
max_credits: 5000          # optional: one budget for the whole batch
runs:
  - job: campaign-messaging
    parameters: {channel: email, days: 30}
  - job: attribute-personas
    parameters: {max_credits: 1200}
    matrix: {segment_id: [21, 22, 23]}     # a grid: one run per combination
    environment: {CIO_MAVERA_SANDBOX_SEED: "11"}   # non-secret settings only
```

Each run is its own `cio-mavera run` process (a papermill execution in its own kernel), so a crash or
a stuck kernel cannot take the others down, and the App API and Mavera rate limits are shared
through their machine-wide limiters. Runs reserve their `max_credits` from the batch budget before
they start and give back what they did not spend. `batch-state.json` in the reports directory
remembers which inputs are done, so running the same file again skips them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .connect import live_workspace, sandbox_workspace
from .errors import InvalidParameter
from .files import atomic_write
from .parameters import plain_data
from .reports import JOBS, NOTEBOOKS_DIR, check_parameters, get_job, new_run_id, usable_reports_dir
from .settings import PROJECT_ROOT, load_settings

STATE_FILE = "batch-state.json"
# Environment a batch file may set per run: settings, never keys (those come from .env / the shell).
ALLOWED_ENVIRONMENT = frozenset({
    "CIO_REGION", "CIO_MAVERA_MODE", "CIO_APP_URL", "CIO_TRACK_URL", "MAVERA_BASE_URL", "MAVERA_RPM",
    "CIO_MAVERA_DATA_DIR", "CIO_MAVERA_REDIS_URL", "CIO_MAVERA_SANDBOX_SEED",
    "CIO_MAVERA_SANDBOX_CUSTOMERS", "CIO_MAVERA_SANDBOX_END", "CIO_MAVERA_SANDBOX_WORLD",
})


@dataclass(frozen=True)
class PlannedRun:
    """One run of a batch: job, checked parameters, environment overrides and its inputs key."""

    job: str
    parameters: dict[str, Any]
    environment: dict[str, str]
    key: str

    def label(self) -> str:
        shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in self.parameters.items()) or "defaults"
        return f"{self.job} ({shown})"


@dataclass
class Outcome:
    """How one planned run ended: succeeded, failed, or skipped (done before with the same inputs)."""

    run: PlannedRun
    status: str
    run_id: str | None = None
    seconds: float = 0.0
    credits: int = 0
    error: str | None = None


@dataclass
class BatchResult:
    """Every outcome, in the file's order, and the budget's figures."""

    outcomes: list[Outcome]
    max_credits: int | None
    credits_spent: int = 0
    reports_dir: Path = field(default_factory=Path)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def load_batch(path: Path) -> tuple[list[PlannedRun], int | None]:
    """The runs a batch file describes (grids expanded), each checked before anything runs."""
    try:
        document = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidParameter(f"cannot read batch file {path}: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("runs"), list):
        raise InvalidParameter(f"{path}: a batch file needs a 'runs:' list of {{job, parameters}}")
    budget = document.get("max_credits")
    if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool) or budget < 0):
        raise InvalidParameter(f"{path}: max_credits must be a whole number >= 0, got {budget!r}")
    planned = []
    for number, entry in enumerate(document["runs"], start=1):
        planned += _expand(entry, f"{path} run {number}")
    keys = [p.key for p in planned]
    duplicates = {k for k in keys if keys.count(k) > 1}
    if duplicates:
        raise InvalidParameter(f"{path}: {len(duplicates)} run(s) are listed twice with the same inputs")
    return planned, budget


def _expand(entry: Any, where: str) -> list[PlannedRun]:
    if not isinstance(entry, dict) or not isinstance(entry.get("job"), str):
        raise InvalidParameter(f"{where}: each run needs a 'job' name")
    unknown = sorted(set(entry) - {"job", "parameters", "matrix", "environment"})
    if unknown:
        raise InvalidParameter(f"{where}: unknown key(s) {', '.join(unknown)}")
    job = get_job(entry["job"])
    base = plain_data("parameters", entry.get("parameters") or {})
    matrix = plain_data("matrix", entry.get("matrix") or {})
    environment = _environment(entry.get("environment") or {}, where)
    if not isinstance(base, dict) or not isinstance(matrix, dict):
        raise InvalidParameter(f"{where}: parameters and matrix must be mappings")
    if any(not isinstance(values, list) or not values for values in matrix.values()):
        raise InvalidParameter(f"{where}: each matrix entry must be a non-empty list of values")
    runs = []
    for combination in itertools.product(*matrix.values()):
        values = {**base, **dict(zip(matrix, combination, strict=True))}
        try:
            checked = check_parameters(job, values)
        except InvalidParameter as exc:
            raise InvalidParameter(f"{where}: {exc}") from None
        runs.append(PlannedRun(job.name, checked, environment, inputs_key(job.name, checked, environment)))
    return runs


def _environment(values: Any, where: str) -> dict[str, str]:
    if not isinstance(values, dict):
        raise InvalidParameter(f"{where}: environment must be a mapping")
    refused = sorted(set(values) - ALLOWED_ENVIRONMENT)
    if refused:
        raise InvalidParameter(f"{where}: environment may set only {', '.join(sorted(ALLOWED_ENVIRONMENT))}"
                               f"; not {', '.join(refused)} (keys come from .env or the shell)")
    return {str(k): str(v) for k, v in values.items()}


def inputs_key(job: str, parameters: Mapping[str, Any], environment: Mapping[str, str]) -> str:
    """What makes two runs "the same": job, notebook, parameters with defaults, and the workspace."""
    spec = get_job(job).spec()
    settings = load_settings({**os.environ, **environment})
    mode = settings.resolve_mode(*JOBS[job].needs)
    workspace = live_workspace(settings) if mode == "live" else sandbox_workspace(settings)
    notebook = hashlib.sha256((NOTEBOOKS_DIR / JOBS[job].notebook).read_bytes()).hexdigest()
    described = {"job": job, "notebook": notebook, "parameters": {**spec.defaults, **parameters},
                 "mode": mode, "workspace": workspace}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:20]


class CreditPool:
    """The batch's one budget: each run reserves its max_credits up front and returns the rest."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.spent = 0
        self._reserved = 0
        self._lock = threading.Lock()

    def reserve(self, wanted: int) -> int:
        """Credits granted to a run that asks for `wanted` (all of it, or what is left)."""
        with self._lock:
            if self.total is None:
                return wanted
            granted = max(0, min(wanted, self.total - self.spent - self._reserved))
            self._reserved += granted
            return granted

    def settle(self, granted: int, spent: int) -> None:
        with self._lock:
            if self.total is not None:
                self._reserved -= granted
            self.spent += spent


Executor = Callable[[PlannedRun, int, Path, Callable[[str], None]], "Outcome"]


def run_batch(planned: list[PlannedRun], *, max_credits: int | None = None,
              out_dir: Path | None = None, parallel: int = 2, rerun: bool = False,
              say: Callable[[str], None] = print, execute: Executor | None = None) -> BatchResult:
    """Run every planned run (at most `parallel` at once); return how each ended.

    `execute` runs one planned run with the credits granted to it; the default is a
    `cio-mavera run` process (tests pass an in-process stand-in).
    """
    execute = execute or run_in_process_of_its_own
    if parallel < 1:
        raise InvalidParameter(f"--parallel must be at least 1, got {parallel}")
    reports_dir = usable_reports_dir(out_dir)
    state = _State(reports_dir / STATE_FILE)
    pool = CreditPool(max_credits)
    outcomes: list[Outcome | None] = [None] * len(planned)
    counter = itertools.count(1)
    total = len(planned)

    def one(index: int, run: PlannedRun) -> None:
        done = state.done(run.key, reports_dir)
        if done and not rerun:
            outcomes[index] = Outcome(run, "skipped", done, error="done before with the same inputs")
            say(f"[{next(counter)}/{total}] skipped {run.label()}: done before ({done})")
            return
        wanted = int(run.parameters.get("max_credits", get_job(run.job).spec().defaults.get("max_credits", 0)))
        granted = pool.reserve(wanted)
        outcome = execute(run, granted, reports_dir, say)
        pool.settle(granted, outcome.credits)
        outcomes[index] = outcome
        if outcome.status == "succeeded":
            state.record(run.key, outcome.run_id)
        verdict = (f"done in {outcome.seconds:.0f} s, {outcome.credits} credits"
                   if outcome.status == "succeeded" else f"FAILED: {outcome.error}")
        say(f"[{next(counter)}/{total}] {run.label()}: {verdict}")

    say(f"batch: {total} run(s), at most {parallel} at once"
        + (f", {max_credits} credits in all" if max_credits is not None else ""))
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="cio-mavera-batch") as executor:
        for future in [executor.submit(one, i, run) for i, run in enumerate(planned)]:
            future.result()
    return BatchResult([o for o in outcomes if o is not None], max_credits, pool.spent, reports_dir)


def run_in_process_of_its_own(run: PlannedRun, granted: int, reports_dir: Path,
                              say: Callable[[str], None]) -> Outcome:
    """One `cio-mavera run` process for `run`, with the credits granted from the batch budget."""
    run_id = new_run_id()
    parameters = {**run.parameters}
    if "max_credits" in get_job(run.job).spec().defaults:
        parameters["max_credits"] = granted
    command = [sys.executable, "-m", "cio_mavera.cli", "run", run.job, "--out", str(reports_dir),
               "--run-id", run_id]
    for name, value in parameters.items():
        command += ["-p", name, json.dumps(value)]
    say(f"  started {run.label()} as {run_id}" + (f" ({granted} credits)" if granted else ""))
    started = time.monotonic()
    finished = subprocess.run(command, cwd=PROJECT_ROOT, env={**os.environ, **run.environment},
                              capture_output=True, text=True)
    seconds = time.monotonic() - started
    results = reports_dir / run.job / run_id / "results.json"
    credits = _credits_spent(results)
    if finished.returncode != 0:
        lines = [line for line in (finished.stderr + finished.stdout).splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if "FAILED" in line or "error" in line.lower()),
                      lines[-1] if lines else f"exit code {finished.returncode}")
        return Outcome(run, "failed", run_id, seconds, credits, reason.strip())
    return Outcome(run, "succeeded", run_id, seconds, credits)


def _credits_spent(results: Path) -> int:
    try:
        return int(json.loads(results.read_text()).get("credits_spent") or 0)
    except (OSError, ValueError, TypeError):
        return 0


class _State:
    """batch-state.json: inputs key -> the run id that completed them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}  # missing or unreadable: nothing is known to be done
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def done(self, key: str, reports_dir: Path) -> str | None:
        """The run id that completed `key`, if its results are still there."""
        run_id = self._load().get(key)
        if run_id and list(reports_dir.glob(f"*/{run_id}/results.json")):
            return run_id
        return None

    def record(self, key: str, run_id: str) -> None:
        with self._lock:
            data = self._load()
            data[key] = run_id
            atomic_write(self.path, json.dumps(data, indent=2, sort_keys=True))


def summary_lines(result: BatchResult) -> list[str]:
    """The closing table: one line per run with its status, and the totals."""
    lines = []
    for o in result.outcomes:
        where = f"{o.run.job}/{o.run_id}" if o.run_id else ""
        lines.append(f"  {o.status:<9} {o.run.label():<60} {where}")
    counts = {s: sum(1 for o in result.outcomes if o.status == s) for s in ("succeeded", "skipped", "failed")}
    lines.append(f"batch: {counts['succeeded']} succeeded, {counts['skipped']} skipped, {counts['failed']} "
                 f"failed; {result.credits_spent} credits spent"
                 + (f" of {result.max_credits}" if result.max_credits is not None else ""))
    return lines


def outcomes_json(result: BatchResult) -> list[dict[str, Any]]:
    """Every outcome as JSON-able data (for batch.json)."""
    return [{**asdict(o.run), **{k: v for k, v in asdict(o).items() if k != "run"}}
            for o in result.outcomes]
