"""Job 2's report text and tables: every sentence is computed from the run's data.

Functions return Markdown strings, HTML snippets, display-ready DataFrames or matplotlib Figures;
the notebook wraps them in `IPython.display`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cio_mavera.cache import pulled_at
from cio_mavera.connect import Connection
from cio_mavera.jobs.audiences.attribute_types import Schema
from cio_mavera.jobs.audiences.clustering import ClusterResult, KMeansSelection
from cio_mavera.jobs.audiences.data import CLUSTER_ATTRIBUTE, PERSONA_ATTRIBUTE
from cio_mavera.jobs.audiences.model_selection import Selection
from cio_mavera.jobs.audiences.profiles import ClusterProfiles, describe_effect
from cio_mavera.jobs.audiences.writeback import WriteBackReport
from cio_mavera.jobs.report_parts import age_text, figure_png, parameters_table  # noqa: F401 (the notebook uses them from here)


def mode_banner(conn: Connection, customers: pd.DataFrame, segment_id: int | None = None) -> str:
    """HTML: a loud SANDBOX DATA banner in sandbox mode (a quiet note live) with data freshness."""
    when = pulled_at(customers)
    fresh = (f"pulled {when:%Y-%m-%d %H:%M} UTC ({age_text(when)} ago)" if when is not None
             else "pull time unknown")
    source = "from the local cache" if customers.attrs.get("from_cache") else "just now"
    who = "everyone in the workspace" if segment_id is None else f"members of segment {segment_id}"
    facts = (f"Workspace <b>{html.escape(conn.workspace)}</b> · audience: {html.escape(who)} · "
             f"{len(customers):,} people · data {html.escape(fresh)}, read {source}")
    if conn.mode == "sandbox":
        return ("<div style='border:3px solid #c0392b;background:#fdecea;padding:.8em 1em;"
                "margin:.5em 0'><div style='font-size:1.4em;font-weight:bold;color:#c0392b;"
                "letter-spacing:.05em'>SANDBOX DATA</div><div>Synthetic customers and simulated "
                "Mavera personas from the local stand-in: no real people or research. Set the "
                "Customer.io and Mavera keys to run on live data.</div>"
                f"<div style='margin-top:.4em'>{facts}</div></div>")
    return (f"<div style='border-left:4px solid #2c3e50;padding:.4em .8em;margin:.5em 0'>"
            f"<b>Live data</b> · {facts}</div>")




# --- schema and PII --------------------------------------------------------------------------


def schema_table(schema: Schema) -> pd.DataFrame:
    """Attributes with their inferred kind, whether they are used, and why (PII shown separately)."""
    frame = schema.to_frame()
    frame = frame[frame["kind"] != "excluded"]
    frame = frame.assign(missing=(frame["missing_share"] * 100).round(1).astype(str) + "%")
    return (frame[["column", "kind", "kept", "output", "missing", "n_unique", "reason"]]
            .rename(columns={"column": "attribute", "kept": "used", "output": "feature",
                             "n_unique": "distinct values"})
            .set_index("attribute"))


def schema_sentence(schema: Schema) -> str:
    """How many attributes were used, by kind, and how many were dropped as unusable."""
    frame = schema.to_frame()
    typed = frame[frame["kind"] != "excluded"]
    used = typed[typed["kept"]]
    kinds = used["kind"].value_counts()
    parts = ", ".join(f"{n} {k}" for k, n in kinds.items())
    dropped = typed[~typed["kept"]]
    were = "was" if len(dropped) == 1 else "were"
    tail = (f" {len(dropped)} {were} left out as unusable for clustering "
            f"({', '.join(sorted(dropped['column']))})." if len(dropped) else "")
    return (f"Customer.io returns every attribute as text. Of {len(typed)} non-personal attributes, "
            f"**{len(used)} are used** ({parts}); timestamps and dates become ages in days as of "
            f"the pull.{tail}")


def pii_table(pii_dropped: Mapping[str, str]) -> pd.DataFrame:
    """The personal-data columns that were excluded and why."""
    return (pd.DataFrame({"attribute": list(pii_dropped), "why excluded": list(pii_dropped.values())})
            .set_index("attribute"))


def pii_sentence(pii_dropped: Mapping[str, str]) -> str:
    """What the PII guard removed and what that guarantees."""
    if not pii_dropped:
        return ("No attribute looked like personal data by name or by value. Every payload sent to "
                "Mavera is still scanned for emails and phone numbers before it leaves.")
    return (f"**{len(pii_dropped)} attributes were excluded as personal data** (by name or by "
            "the pattern of their values) before anything was clustered: they never reach the "
            "clusters, the profiles or Mavera. Every payload sent to Mavera is scanned again for "
            "emails and phone numbers before it leaves.")


# --- model selection -------------------------------------------------------------------------


_SELECTION_COLUMNS = {"bic": "BIC", "bic_gain": "BIC gain", "stability_ari": "stability (ARI)",
                      "distinct_attributes": "attributes that differ", "supported": "supported",
                      "distinct": "distinct", "stable": "stable", "chosen": "chosen"}


def selection_table(selection: Selection | KMeansSelection | None) -> pd.DataFrame:
    """Per candidate k: the evidence (BIC, distinctness, resampling stability) and the choice."""
    if selection is None:
        return pd.DataFrame()
    table = selection.table.copy()
    table["chosen"] = np.where(table["chosen"], "◀ chosen", "")
    if "silhouette" in table:  # k-means selection
        return table.round({"silhouette": 3, "silhouette_std": 3, "stability_ari": 3}).set_index("k")
    for check in ("supported", "distinct", "stable"):
        table[check] = np.where(table[check], "yes", "no")
    table.loc[table["stability_ari"].isna(), "stable"] = "not checked"
    table = table.round({"bic": 0, "bic_gain": 0, "stability_ari": 3})
    return table.rename(columns=_SELECTION_COLUMNS).set_index("k")


def plot_model_selection(selection: Selection | KMeansSelection) -> Figure:
    """BIC (left axis) and resampling stability (right axis) for every candidate k."""
    table = selection.table
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    if "silhouette" in table:
        ax.errorbar(table["k"], table["silhouette"], yerr=table["silhouette_std"], marker="o",
                    color="#4477AA", label="Mean silhouette (± SD over resamples)")
        ax.set_ylabel("Mean silhouette (−1 to 1, higher = better separated)")
    else:
        ax.plot(table["k"], table["bic"], marker="o", color="#4477AA", label="BIC (lower = better fit)")
        failed = table[~table["distinct"]]
        ax.scatter(failed["k"], failed["bic"], marker="x", s=80, color="#CCBB44", zorder=3,
                   label="Two clusters differ on too few attributes")
        ax.set_ylabel("BIC of the mixture model (lower = better)")
    label = (f"Chosen k = {selection.k}" if selection.k > 1 else
             "No clear structure: one audience")
    ax.axvline(selection.k, color="#228833", linestyle="--", label=label)
    ax.set_xlabel("Number of clusters k")
    ax.set_xticks(list(table["k"]))
    right = ax.twinx()
    right.plot(table["k"], table["stability_ari"], marker="s", color="#EE6677",
               label="Stability across resamples (ARI)")
    right.set_ylabel("Stability (adjusted Rand index, 0 to 1)")
    right.set_ylim(0, 1.05)
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="center right")
    ax.set_title("Choosing the number of audience clusters")
    return fig


def selection_sentence(result: ClusterResult, sample_size: int) -> str:
    """Why this k (or why no split at all), and how clear the structure is."""
    sel = result.selection
    if sel is None:
        return f"k = {result.k} was given, not chosen."
    if isinstance(sel, KMeansSelection):
        row = sel.table[sel.table["k"] == sel.k].iloc[0]
        trust = ("The clusters are well separated and reproducible." if row["silhouette"] >= 0.25
                 and sel.stable else "The structure is weak: treat the clusters as a rough split.")
        return (f"**k = {sel.k}** gives the best separation (mean silhouette {row['silhouette']:.2f}) "
                f"among the candidates whose clusters come out the same on resamples of up to "
                f"{sample_size:,} customers (stability ARI {row['stability_ari']:.2f}). {trust}")
    if sel.k == 1:
        return (f"**No clear structure.** {sel.reason} Personas built from this data describe the "
                "whole audience; more attributes, or a segment, may reveal groups this data does not.")
    verdict = {"clear": "**The structure is clear**: the clusters come out the same on resamples.",
               "moderate": "**The structure is moderate**: the clusters are supported and distinct, "
                           "but resamples move some customers between them; treat borders as soft."}
    return f"**k = {sel.k}.** {sel.reason} {verdict[sel.clarity]}"


def inputs_sentence(result: ClusterResult, typed: pd.DataFrame) -> str:
    """What the clustering used and left out, and how people with missing attributes were handled."""
    gaps = typed.isna().any(axis=1).mean()
    used = len(result.feature_names) if result.method == "mixture" else typed.shape[1]
    how = ("each person is assigned by the attributes they have (missing ones are left out of "
           "their likelihood, not filled in)" if result.method == "mixture" else
           "missing values are filled with the median and flagged")
    return (f"The model used **{used} attributes** (numbers as rank scores, so outliers and heavy "
            f"tails do not stretch the scale). **{gaps:.0%} of customers lack at least one "
            f"attribute**; none is dropped: {how}." + _left_out(result.dropped))


def _left_out(dropped: Mapping[str, str]) -> str:
    """The attributes clustering left out, grouped by why."""
    twins = [f"{_feature_label(c)} (of {why.split('near-duplicate of ')[1].split(' (')[0]})"
             for c, why in dropped.items() if "near-duplicate of " in why]
    gaps = [c.removeprefix("missing: ") for c, why in dropped.items()
            if c.startswith("missing: ") and "unrelated" in why]
    noise = [_feature_label(c) for c, why in dropped.items()
             if "unrelated" in why and not c.startswith("missing: ")]
    other = [f"{_feature_label(c)} ({why})" for c, why in dropped.items()
             if "unrelated" not in why and "near-duplicate of " not in why]
    parts = []
    if twins:
        parts.append("near-duplicates, used once: " + ", ".join(twins))
    if noise:
        parts.append("unrelated to every other attribute, so unable to tell audiences apart: "
                     + ", ".join(noise))
    if gaps:
        parts.append("whether these groups are missing says nothing about the rest (missing at "
                     "random), so it is not a trait: " + "; ".join(gaps))
    if other:
        parts.append(", ".join(other))
    return (" Left out: " + ". ".join(parts) + ".") if parts else ""


# --- clusters ------------------------------------------------------------------------------


def sizes_sentence(profiles: ClusterProfiles) -> str:
    """The largest and smallest clusters."""
    sizes = profiles.sizes.sort_values("size", ascending=False)
    if len(sizes) == 1:
        return f"One audience of {int(sizes.iloc[0]['size']):,} customers: the data backs no split."
    big, small = sizes.iloc[0], sizes.iloc[-1]
    return (f"{len(sizes)} clusters: the largest, cluster {int(big['cluster']) + 1}, holds "
            f"{int(big['size']):,} customers ({big['share']:.0%}); the smallest, cluster "
            f"{int(small['cluster']) + 1}, {int(small['size']):,} ({small['share']:.0%}).")


def projection_sentence(result: ClusterResult) -> str:
    """How to read the PCA projection."""
    return (f"Each dot is a customer placed by the two directions that vary most across the "
            f"{len(result.feature_names)} scaled features; well separated colours mean the "
            "clusters differ on many attributes at once, overlap means they differ on few.")


def _feature_label(column: str) -> str:
    suffix = "_days_ago"
    return f"days since {column[: -len(suffix)]}" if column.endswith(suffix) else column


def heatmap_sentence(profiles: ClusterProfiles) -> str:
    """The single strongest trait of each cluster."""
    if len(profiles.clusters) == 1:
        return ("With one audience there is nothing to set apart; its typical values are on the "
                "persona card below.")
    parts = []
    for p in profiles.clusters:
        if len(p.top):
            r = p.top.iloc[0]
            label = _feature_label(str(r["column"]))
            what = f"{label}={r['level']}" if r["kind"] == "category" else label
            parts.append(f"cluster {p.cluster + 1} by {what} ({r['smd']:+.1f} SD)")
    return ("Cells show how far each cluster sits from all customers, in standard deviations. "
            "Strongest trait per cluster: " + "; ".join(parts) + ".")


# --- personas ------------------------------------------------------------------------------


def cost_markdown(plan: pd.DataFrame, create: bool, max_credits: int) -> str:
    """The worst-case persona cost, shown before anything is created."""
    counts = plan["status"].value_counts()
    new, changed, same = (int(counts.get(s, 0)) for s in ("new", "changed", "unchanged"))
    total = int(plan["cost"].sum())
    action = ("will be created now" if create else
              "would be created (create_personas=False: this run only previews)")
    verdict = ("fits" if total <= max_credits else
               "does **not** fit; personas beyond the budget are skipped, not half-made")
    return (f"{new} persona(s) {action}, {changed} existing one(s) updated and {same} already "
            f"up to date. Creating costs 300 credits each: **{total} credits** worst case, which "
            f"{verdict} the budget of max_credits={max_credits}.")


def _traits(profile: Any) -> str:
    return "\n".join(f"  - {describe_effect(r)}" for r in profile.top.itertuples(index=False))


def persona_cards(profiles: ClusterProfiles, payloads: Sequence[Mapping[str, Any]],
                  personas: pd.DataFrame, answers: Mapping[str, str | None]) -> list[str]:
    """One Markdown card per cluster: name, size, traits, persona status, its engagement answer."""
    cards = []
    for profile, payload, row in zip(profiles.clusters, payloads,
                                     personas.itertuples(index=False), strict=True):
        name = str(payload["name"])
        answer = answers.get(name)
        if answer:
            quoted = "\n".join(f"> {line}" if line.strip() else ">" for line in answer.splitlines())
        elif row.status in ("would create", "would update", "exists"):
            quoted = "_Not asked: this run only previews personas (create_personas=False)._"
        elif row.status == "skipped":
            quoted = "_Not asked: the persona was skipped (credit budget)._"
        else:
            quoted = "_Not asked: the credit budget ran out before this question._"
        ident = f"`{row.persona_id}`" if row.persona_id else "not created"
        cards.append(
            f"### Cluster {profile.cluster + 1}: {html.escape(name)}\n\n"
            f"**{profile.size:,} customers ({profile.share:.1%})** · persona {ident} "
            f"({row.status}) · {payload['type']}\n\n"
            f"**What sets them apart** (vs all customers):\n\n{_traits(profile) or '  - nothing strong'}\n\n"
            f"**What would make me engage?**\n\n{quoted}\n")
    return cards


_STATUS_WORDS = {"unchanged": "reused unchanged", "would create": "previewed, not created",
                 "would update": "previewed, update pending", "exists": "already existing",
                 "skipped": "skipped by the budget"}


def credits_bought(personas: pd.DataFrame, answers: Mapping[str, str | None]) -> str:
    """What this run's credits went on, for the shared credits section."""
    counts = personas["status"].value_counts()
    return ("on " + ", ".join(f"{n} persona(s) {_STATUS_WORDS.get(k, k)}" for k, n in counts.items())
            + f" and {sum(1 for a in answers.values() if a)} engagement answer(s)")


def write_back_markdown(report: WriteBackReport | None) -> str:
    """What the Customer.io write-back did or would do."""
    if report is None:
        return ("Write-back is off (`write_back=False`). Set `write_back=True` to preview writing "
                f"`{CLUSTER_ATTRIBUTE}` and `{PERSONA_ATTRIBUTE}` on each person (a dry run by "
                "default), then `write_back_dry_run=False` to send it.")
    if report.dry_run:
        return (f"**Dry run, nothing sent.** A real run would set `{CLUSTER_ATTRIBUTE}` and "
                f"`{PERSONA_ATTRIBUTE}` on {report.people:,} people with {report.operations:,} "
                f"Track v2 identify operations in {report.requests} batch request(s). "
                "Set `write_back_dry_run=False` to send. Sample operation:\n\n"
                f"```json\n{_json(report.sample[:1])}\n```")
    head = (f"Wrote `{CLUSTER_ATTRIBUTE}` and `{PERSONA_ATTRIBUTE}` for **{report.accepted:,} of "
            f"{report.people:,} people** in {report.requests} request(s).")
    if not report.failed_first_attempt:
        return head + " Customer.io accepted every item."
    status = (f"{len(report.failures)} still failed after that retry (listed in results.json)"
              if report.failures else "all of them were accepted on the retry")
    return (f"{head} {report.failed_first_attempt} item(s) failed on the first attempt and were "
            f"retried once; {status}.")


def _json(value: Any) -> str:
    return json.dumps(value, indent=2)


def next_steps(profiles: ClusterProfiles, personas: pd.DataFrame, report: WriteBackReport | None,
               budget: Any) -> str:
    """What to do with these clusters and personas."""
    steps = ["- Read each persona card with the campaign team: do the clusters match audiences you "
             "already target? Clusters that do not are the interesting ones."]
    if (personas["status"] == "skipped").any():
        steps.append(f"- {int((personas['status'] == 'skipped').sum())} persona(s) were skipped by "
                     f"the budget: re-run with `max_credits` of at least "
                     f"{budget.max_credits + 300 * int((personas['status'] == 'skipped').sum())}.")
    if personas["status"].isin(["would create", "would update"]).any():
        steps.append("- This run only previewed the personas: re-run with `create_personas=True` "
                     "to create them (idempotent: existing ones are reused, not paid for twice).")
    if report is None or report.dry_run:
        steps.append(f"- To target the clusters in Customer.io, write them back "
                     f"(`write_back=True, write_back_dry_run=False`) and build segments on "
                     f"`{CLUSTER_ATTRIBUTE}`.")
    smallest = profiles.sizes["share"].min()
    if smallest < 0.05:
        steps.append(f"- One cluster holds only {smallest:.0%} of customers: check it is not an "
                     "artefact of a few unusual attributes before messaging it separately.")
    steps.append("- Score new campaign copy against these personas with the campaign-messaging job "
                 "(`personas` parameter) to see which audience each message speaks to.")
    return "\n".join(steps)
