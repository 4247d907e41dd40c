"""reports/index.html: each job's runs as a timeline, newest first, with what each run found.

Everything on the page comes from the run directories (run.json, results.json) and is escaped:
parameters, errors and headlines can carry text from outside.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .headlines import headline
from .markup import html_text


@dataclass
class IndexedRun:
    """One run as the index shows it."""

    job: str
    run_id: str
    status: str
    started_at: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    link: str | None = None  # report.html relative to the index, when it exists
    headline: str = ""
    changes: str = ""
    source: str = ""  # "sandbox · seed7-n5000"


def read_runs(reports_dir: Path) -> list[IndexedRun]:
    """Every run under `reports_dir` (<job>/<run-id>/run.json), with its results when present."""
    runs = []
    for path in sorted(Path(reports_dir).glob("*/*/run.json")):
        record = _json(path)
        if record is None:
            continue
        results = _json(path.parent / "results.json") or {}
        job = str(record.get("job") or path.parent.parent.name)
        report = path.parent / "report.html"
        runs.append(IndexedRun(
            job=job, run_id=str(record.get("run_id") or path.parent.name),
            status=str(record.get("status") or "unknown"),
            started_at=str(record.get("started_at") or ""),
            parameters=dict(record.get("parameters") or {}),
            error=str(record.get("error") or ""),
            link=quote(report.relative_to(reports_dir).as_posix()) if report.is_file() else None,
            headline=_headline(job, results) if record.get("status") == "succeeded" and results else "",
            changes=changes_line(results.get("changes")) if results else "",
            source=" · ".join(str(results[k]) for k in ("mode", "workspace") if results.get(k))))
    return runs


def _json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # a torn or foreign file is not a run
    return value if isinstance(value, dict) else None


def _headline(job: str, results: Mapping[str, Any]) -> str:
    try:
        return headline(job, results)
    except (TypeError, ValueError, AttributeError, KeyError):
        return ""  # results from an older kit version: the link still works


def changes_line(changes: Any) -> str:
    """What changed since the previous comparable run, in one line ("" when not recorded)."""
    if not isinstance(changes, Mapping):
        return ""
    if changes.get("first_run"):
        return "first run with these parameters on this workspace"
    parts = []
    if "newly_flagged" in changes:
        parts.append(f"{len(changes.get('newly_flagged') or [])} newly flagged, "
                     f"{len(changes.get('recovered') or [])} recovered")
    if isinstance(changes.get("k"), Mapping):
        k = changes["k"]
        parts.append(f"clusters {k.get('before')} → {k.get('now')}"
                     f" ({len(changes.get('new_clusters') or [])} new, "
                     f"{len(changes.get('gone_clusters') or [])} gone)")
    if "fired" in changes:
        parts.append(f"{len(changes.get('fired') or [])} trigger(s) fired, "
                     f"{len(changes.get('cleared') or [])} cleared")
    credits = changes.get("credits")
    if isinstance(credits, Mapping):
        parts.append(f"credits {int(credits.get('before') or 0):,} → {int(credits.get('now') or 0):,}")
    since = changes.get("previous_run_id")
    return (f"since {since}: " if since else "") + "; ".join(parts)


def _parameter_text(parameters: Mapping[str, Any]) -> str:
    if not parameters:
        return "default parameters"
    return _short(", ".join(f"{name}={value if isinstance(value, str) else json.dumps(value, default=str)}"
                            for name, value in parameters.items()))


def _short(text: str, limit: int = 300) -> str:
    """`text` cut to `limit` characters (the run's own files keep all of it)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _when(started_at: str) -> str:
    # run.json holds ISO UTC ("2026-12-02T13:01:35+00:00"); show it as "2026-12-02 13:01 UTC".
    return f"{started_at[:10]} {started_at[11:16]} UTC" if len(started_at) >= 16 else started_at


def index_page(runs: Iterable[IndexedRun], job_order: Iterable[str] = (),
               summaries: Mapping[str, str] | None = None) -> str:
    """The index: a section per job (in `job_order`, then any others), its runs newest first."""
    by_job: dict[str, list[IndexedRun]] = {}
    for run in runs:
        by_job.setdefault(run.job, []).append(run)
    order = [j for j in job_order if j in by_job] + sorted(set(by_job) - set(job_order))
    sections, jumps = [], []
    for job in order:
        job_runs = sorted(by_job[job], key=lambda r: (r.started_at, r.run_id), reverse=True)
        anchor = "job-" + quote(job, safe="")
        failed = sum(r.status == "failed" for r in job_runs)
        jumps.append(f"<li><a href='#{html_text(anchor)}'>{html_text(job)}</a> "
                     f"<span class='count'>{len(job_runs)} run(s)"
                     + (f", {failed} failed" if failed else "") + "</span></li>")
        about = (summaries or {}).get(job)
        sections.append(
            f"<section id='{html_text(anchor)}'><h2>{html_text(job)}</h2>"
            + (f"<p class='about'>{html_text(about)}</p>" if about else "")
            + "<ol class='timeline'>" + "".join(_run_item(r) for r in job_runs) + "</ol></section>")
    body = ("".join(sections) if sections else
            "<p>No runs yet: <code>cio-mavera run JOB</code> or <code>cio-mavera demo</code> "
            "writes the first one.</p>")
    nav = f"<nav><ul class='jobs'>{''.join(jumps)}</ul></nav>" if len(jumps) > 1 else ""
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>cio-mavera reports</title><style>{_CSS}</style></head><body><main>"
            "<h1>cio-mavera reports</h1><p class='about'>Each job's runs, newest first: what it "
            "found, what changed since the previous run with the same parameters, and its report."
            f"</p>{nav}{body}</main></body></html>")


def _run_item(run: IndexedRun) -> str:
    status = run.status if run.status in {"succeeded", "failed", "running"} else "unknown"
    link = (f"<a class='open' href='{html_text(run.link)}'>"
            f"{'report' if status != 'failed' else 'what failed'}</a>") if run.link else ""
    lines = [f"<p class='top'><span class='status {status}'>{html_text(run.status)}</span> "
             f"<time datetime='{html_text(run.started_at)}'>{html_text(_when(run.started_at))}</time>"
             f" {link} <span class='run-id'>{html_text(run.run_id)}</span>"
             + (f" <span class='source'>{html_text(run.source)}</span>" if run.source else "") + "</p>"]
    if run.headline:
        lines.append(f"<p class='headline'>{html_text(run.headline)}</p>")
    if run.changes:
        lines.append(f"<p class='changes'>{html_text(run.changes)}</p>")
    if run.error:
        lines.append(f"<p class='error'>{html_text(_short(run.error))}</p>")
    lines.append(f"<p class='params'>{html_text(_parameter_text(run.parameters))}</p>")
    return f"<li class='run {status}'>{''.join(lines)}</li>"


_CSS = """
body{margin:0;color:#1f2328;background:#fff;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,"Noto Sans","DejaVu Sans",sans-serif}
main{max-width:1000px;margin:0 auto;padding:2rem}
h1{font-size:1.8rem;margin:.3rem 0}
h2{font-size:1.3rem;margin:2rem 0 .3rem;padding-top:.6rem;border-top:1px solid #d8dee4}
a{color:#0b5cad}
.about{color:#57606a;margin:.2rem 0 .8rem}
ul.jobs{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.5rem 1.5rem}
.count{color:#57606a;font-size:.85rem}
ol.timeline{list-style:none;margin:0;padding:0 0 0 1.4rem;border-left:2px solid #d8dee4}
li.run{position:relative;margin:0 0 1rem;padding:.1rem 0 0 .4rem}
li.run::before{content:"";position:absolute;left:-1.95rem;top:.45rem;width:.8rem;height:.8rem;
border-radius:50%;background:#8c959f;border:2px solid #fff}
li.run.succeeded::before{background:#1a7f37}li.run.failed::before{background:#b42318}
li.run.running::before{background:#bf8700}
li.run p{margin:.1rem 0;overflow-wrap:anywhere}
.status{display:inline-block;font-size:.75rem;font-weight:600;text-transform:uppercase;
letter-spacing:.04em;padding:0 .4rem;border-radius:3px;background:#eaeef2}
.status.succeeded{background:#dafbe1;color:#116329}.status.failed{background:#ffebe9;color:#a40e26}
.status.running{background:#fff8c5;color:#7d4e00}
.run-id,.source,.params{color:#57606a;font-size:.85rem}
.headline{font-weight:600}.changes{font-size:.9rem}
.error{color:#a40e26;font-size:.9rem}
a.open{font-weight:600}
@media print{a{color:inherit}li.run{break-inside:avoid}}
"""
