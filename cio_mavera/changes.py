"""What is new since the previous run of the same job, parameters and workspace.

The previous run is found among the finished runs in the reports directory (its results.json); the
comparison is made on the two results, so it works for any past run of the kit. Each job says
what matters for it: messages newly flagged or recovered (job 1), clusters that grew, shrank,
appeared or went (job 2), triggers that fired or cleared (job 3), and credits for all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .markup import md

# Parameters that change what a run spends or refreshes, not what it finds: runs that differ only
# in these are still "the same job and parameters".
_NOT_FINDING_PARAMETERS = frozenset({"max_credits", "refresh"})
# A cluster whose share moved by less than this is "about the same size".
_SIZE_NOISE = 0.02


def _same_inputs(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    def key(results: Mapping[str, Any]) -> tuple:
        params = {k: v for k, v in (results.get("parameters") or {}).items()
                  if k not in _NOT_FINDING_PARAMETERS}
        return json.dumps(params, sort_keys=True), results.get("workspace"), results.get("mode")
    return key(a) == key(b)


def previous_results(reports_dir: Path, current: Mapping[str, Any]) -> dict[str, Any] | None:
    """The newest earlier finished run's results with the same job, parameters and workspace."""
    job, run_id = current.get("job"), current.get("run_id") or "~"
    candidates = []
    for path in (Path(reports_dir) / str(job)).glob("*/results.json"):
        if path.parent.name >= run_id:
            continue  # run ids sort by start time; only earlier runs count
        try:
            results = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a torn or foreign file is not a previous run
        if isinstance(results, dict) and _same_inputs(results, current):
            candidates.append((path.parent.name, results))
    return max(candidates, key=lambda item: item[0])[1] if candidates else None


def compare(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> dict[str, Any]:
    """The changes from `previous` to `current` (both results.json), for results.json and the report."""
    if previous is None:
        return {"previous_run_id": None, "first_run": True}
    job = current.get("job")
    specific = {"campaign-messaging": _flags, "attribute-personas": _clusters,
                "retention-research": _triggers}.get(str(job), lambda p, c: {})(previous, current)
    return {"previous_run_id": previous.get("run_id"), "first_run": False, **specific,
            "credits": {"before": int(previous.get("credits_spent") or 0),
                        "now": int(current.get("credits_spent") or 0)}}


def _flags(previous: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    def flagged(results: Mapping[str, Any]) -> dict[tuple[int, str], dict[str, Any]]:
        return {(int(f["action_id"]), str(f["metric"])): f
                for f in results.get("flagged_underperformers") or []}
    before, now = flagged(previous), flagged(current)
    return {"newly_flagged": [_flag(k, now[k]) for k in sorted(set(now) - set(before))],
            "recovered": [_flag(k, before[k]) for k in sorted(set(before) - set(now))],
            "still_flagged": len(set(now) & set(before))}


def _flag(key: tuple[int, str], flag: Mapping[str, Any]) -> dict[str, Any]:
    return {"action_id": key[0], "metric": key[1], "name": flag.get("name"),
            "campaign_id": flag.get("campaign_id")}


def _clusters(previous: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    def shares(results: Mapping[str, Any]) -> dict[str, float]:
        clusters = results.get("clusters") or []
        total = sum(int(c.get("size") or 0) for c in clusters) or 1
        return {str(c.get("name") or c.get("persona_name") or c.get("number")): int(c.get("size") or 0) / total
                for c in clusters}
    before, now = shares(previous), shares(current)
    moved = {name: round(now[name] - before[name], 4) for name in set(now) & set(before)}
    return {"k": {"before": previous.get("k"), "now": current.get("k")},
            "new_clusters": sorted(set(now) - set(before)),
            "gone_clusters": sorted(set(before) - set(now)),
            "grew": {n: d for n, d in sorted(moved.items()) if d >= _SIZE_NOISE},
            "shrank": {n: d for n, d in sorted(moved.items()) if d <= -_SIZE_NOISE}}


def _triggers(previous: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    def keys(results: Mapping[str, Any]) -> set[str]:
        return {str(t.get("key")) for t in results.get("triggers") or []}
    before, now = keys(previous), keys(current)
    return {"fired": sorted(now - before), "cleared": sorted(before - now),
            "still_firing": sorted(now & before)}


def changes_markdown(changes: Mapping[str, Any]) -> str:
    """The report's "what changed since the last run" paragraph."""
    if changes.get("first_run", True):
        return ("This is the first run of this job with these parameters on this workspace, so there "
                "is nothing to compare with yet.")
    lines = [f"Compared with the previous run (`{changes['previous_run_id']}`) of the same job and "
             "parameters on this workspace:", ""]
    if "newly_flagged" in changes:
        lines += [f"- **{len(changes['newly_flagged'])} newly flagged**: "
                  + (", ".join(f"{_name(f)} ({f['metric'].replace('_', ' ')})"
                               for f in changes["newly_flagged"]) or "none"),
                  f"- **{len(changes['recovered'])} recovered**: "
                  + (", ".join(f"{_name(f)} ({f['metric'].replace('_', ' ')})"
                               for f in changes["recovered"]) or "none"),
                  f"- {changes['still_flagged']} flag(s) unchanged"]
    if "k" in changes:
        k = changes["k"]
        lines.append(f"- clusters: {k['before']} before, {k['now']} now"
                     + (f"; new: {', '.join(map(md, changes['new_clusters']))}"
                        if changes["new_clusters"] else "")
                     + (f"; gone: {', '.join(map(md, changes['gone_clusters']))}"
                        if changes["gone_clusters"] else ""))
        for word in ("grew", "shrank"):
            for name, delta in changes[word].items():
                lines.append(f"- {md(name)} {word} by {abs(delta):.1%} of the audience")
    if "fired" in changes:
        lines += [f"- **{len(changes['fired'])} trigger(s) fired**: "
                  + (", ".join(md(k) for k in changes["fired"]) or "none"),
                  f"- **{len(changes['cleared'])} cleared**: "
                  + (", ".join(md(k) for k in changes["cleared"]) or "none"),
                  f"- {len(changes['still_firing'])} still firing"]
    credits = changes["credits"]
    lines.append(f"- credits: {credits['now']:,} this run, {credits['before']:,} the previous one")
    return "\n".join(lines)


def _name(flag: Mapping[str, Any]) -> str:
    return f"{md(flag.get('name') or 'message')} (#{flag.get('action_id')})"
