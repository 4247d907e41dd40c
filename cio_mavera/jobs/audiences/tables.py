"""Job 2's report tables, each through `report_parts.table` (escaped text, aligned numbers, a CSV).

Attribute names, category levels, cluster and persona names come from Customer.io and Mavera:
the tables hold them as plain values, and `report_parts.table` shows them as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from cio_mavera.jobs import report_parts as rp
from cio_mavera.jobs.audiences.attribute_types import DAYS_AGO_SUFFIX, Schema
from cio_mavera.jobs.audiences.clustering import KMeansSelection
from cio_mavera.jobs.audiences.model_selection import Selection
from cio_mavera.jobs.audiences.parameters import PARAMETERS

# A cluster this small may be an artefact of a few unusual attributes: flagged for a check.
SMALL_CLUSTER_SHARE = 0.05


def attribute_label(column: str) -> str:
    """An attribute as the reader knows it ("days since last_seen_at" for an age in days)."""
    column = str(column)
    if column.endswith(DAYS_AGO_SUFFIX):
        return f"days since {column[: -len(DAYS_AGO_SUFFIX)]}"
    return column


def trait_label(trait: Mapping[str, Any]) -> str:
    """What a trait measures: "plan = pro", "trial_user (share yes)", "median seats"."""
    label = attribute_label(trait["column"])
    if trait["kind"] == "category":
        return f"{label} = {trait['level']}"
    if trait["kind"] == "boolean":
        return f"{label} (share yes)"
    return f"median {label}"


def trait_value(trait: Mapping[str, Any], where: str) -> str:
    """`where` ("cluster" or "overall") of a trait with its 95% interval: "92.0% (90.9–93.0%)" for
    a share, "400 (380–420)" for a median."""
    value, low, high = (trait[f"{where}_{part}"] for part in ("value", "low", "high"))
    if trait["kind"] in ("category", "boolean"):
        return rp.format_percent_interval(value, low, high)
    shown, interval = trait_parts(trait, where)
    return f"{shown} ({interval})" if interval else shown


def trait_parts(trait: Mapping[str, Any], where: str) -> tuple[str, str | None]:
    """A trait's value and its 95% interval apart: ("92.0%", "90.9–93.0%"), ("400", "380–420");
    None when there is no interval (too few customers)."""
    value, low, high = (trait[f"{where}_{part}"] for part in ("value", "low", "high"))
    missing = low is None or high is None or pd.isna(low) or pd.isna(high)
    if trait["kind"] in ("category", "boolean"):
        return rp.format_percent(value), None if missing else \
            f"{100 * low:,.1f}–{100 * high:,.1f}%"
    return _number(value), None if missing else f"{_number(low)}–{_number(high)}"


def _number(value: Any) -> str:
    if value is None or pd.isna(value):
        return rp.BLANK
    value = float(value)
    return rp.format_number(value, 0 if abs(value) >= 100 or value.is_integer() else 1)


def clusters(results: Mapping[str, Any]) -> rp.ReportHtml:
    """One row per cluster: number, name, size, share with its interval, how surely its members
    are placed, its persona and what happened to it; small clusters flagged."""
    rows = []
    for c in results["clusters"]:
        low, high = c["share_interval"]
        sure = c.get("placed_confidently")
        rows.append({
            "Cluster": c["number"], "Name": c["name"], "Customers": c["size"],
            "Share of customers (95% CI)": rp.format_percent_interval(c["share"], low, high),
            "Placed with ≥ 90% probability": (rp.format_percent_interval(sure["share"], *sure["interval"])
                                              if sure else rp.BLANK),
            "Persona": c["persona_name"], "Persona status": c["persona_status"]})
    frame = pd.DataFrame(rows)
    small = [c["share"] < SMALL_CLUSTER_SHARE for c in results["clusters"]]
    return rp.table(frame, flagged=small, csv_name="audience-clusters",
                    caption="Highlighted: clusters under 5% of customers (check before messaging "
                            "them apart)" if any(small) else None)


def traits(results: Mapping[str, Any]) -> rp.ReportHtml:
    """Each cluster's defining traits with 95% intervals, against all customers."""
    rows = []
    for c in results["clusters"]:
        for trait in c["traits"]:
            rows.append({"Cluster": c["number"], "Name": c["name"], "Trait": trait_label(trait),
                         "In the cluster (95% CI)": trait_value(trait, "cluster"),
                         "All customers (95% CI)": trait_value(trait, "overall"),
                         "Difference (SD)": f"{trait['smd']:+.1f}"})
    columns = ["Cluster", "Name", "Trait", "In the cluster (95% CI)", "All customers (95% CI)",
               "Difference (SD)"]
    return rp.table(pd.DataFrame(rows, columns=columns), csv_name="cluster-traits")


def schema(schema: Schema) -> rp.ReportHtml:
    """Attributes with their inferred kind, whether they are used, and why (PII shown separately)."""
    frame = schema.to_frame()
    frame = frame[frame["kind"] != "excluded"]
    shown = pd.DataFrame({
        "Attribute": frame["column"].astype(str), "Read as": frame["kind"],
        "Used": frame["kept"].map({True: "yes", False: "no"}),
        "Feature": frame["output"].map(lambda c: attribute_label(c) if isinstance(c, str) else rp.BLANK),
        "Missing": frame["missing_share"].map(rp.format_percent),
        "Distinct values": frame["n_unique"], "Why": frame["reason"]})
    return rp.table(shown.reset_index(drop=True), csv_name="attribute-types",
                    flagged=(shown["Used"] == "no").tolist(),
                    caption="Highlighted: attributes left out of the clustering")


def personal_data(pii_dropped: Mapping[str, str]) -> rp.ReportHtml:
    """The personal-data attributes that were excluded and why."""
    frame = pd.DataFrame({"Attribute": list(pii_dropped), "Why excluded": list(pii_dropped.values())})
    return rp.table(frame, csv_name="personal-data-excluded")


_SELECTION_COLUMNS = {"k": "k", "bic": "BIC", "bic_gain": "BIC gain",
                      "distinct_attributes": "Attributes that differ", "stability_ari": "Stability (ARI)",
                      "supported": "Supported", "distinct": "Distinct", "stable": "Stable"}


def selection(selection: Selection | KMeansSelection | None) -> rp.ReportHtml | None:
    """Per candidate k: the evidence (BIC, distinctness, resampling stability); the chosen k flagged."""
    if selection is None:
        return None
    table = selection.table.copy()
    chosen = table["chosen"].astype(bool).tolist()
    if "silhouette" in table:  # k-means selection
        shown = table[["k", "silhouette", "silhouette_std", "stability_ari"]].rename(columns={
            "silhouette": "Mean silhouette", "silhouette_std": "SD over resamples",
            "stability_ari": "Stability (ARI)"})
        return rp.table(shown, flagged=chosen, digits=3, csv_name="choosing-k",
                        caption="Highlighted: the chosen k")
    for check in ("supported", "distinct", "stable"):
        table[check] = np.where(table[check], "yes", "no")
    table.loc[table["stability_ari"].isna(), "stable"] = "not checked"
    shown = table[list(_SELECTION_COLUMNS)].rename(columns=_SELECTION_COLUMNS)
    return rp.table(shown, flagged=chosen, digits={"BIC": 0, "BIC gain": 0, "Stability (ARI)": 3},
                    csv_name="choosing-k", caption="Highlighted: the chosen k")


def persona_plan(plan: pd.DataFrame) -> rp.ReportHtml:
    """Each persona this run would sync: exists or not, and its worst-case cost."""
    words = {"new": "new: will be created", "changed": "exists, profile changed: will be updated",
             "unchanged": "exists, unchanged: reused for free"}
    frame = pd.DataFrame({"Persona": plan["name"], "Status": plan["status"].map(words).fillna(plan["status"]),
                          "Worst-case credits": plan["cost"].astype(int)})
    return rp.table(frame, csv_name="persona-cost")


def parameters(values: Mapping[str, Any]) -> rp.ReportHtml:
    """The run's parameters as plain values with what each one means."""
    return rp.parameters_table(values, PARAMETERS)
