"""Pieces every job's report uses: figures, tables, numbers, the banner, the top block, a glossary.

What the narratives call (each returns text or a `ReportHtml` that `display()` shows as HTML; every
text argument is escaped, so names and copy from Customer.io or Mavera stay text):

- numbers: `format_count(12345)` "12,345"; `format_number(0.5, 2)` "0.50"; `format_percent(0.076)`
  "7.6%"; `format_percent_interval(0.076, 0.069, 0.084)` "7.6% (6.9–8.4%)";
  `format_p(0.0)` "p < 1e-300", `format_p(0.0123, "adjusted p")` "adjusted p = 0.012".
- tables: `table(frame_or_styler, flagged=mask, caption=..., csv_name=...)`: text left, numbers
  right with thousands separators, flagged rows highlighted (`FLAGGED_ROW_CLASS`), a scroll box on
  screen that wraps in print, and a "Download CSV" link (a data: URI, nothing fetched).
  `csv_link(frame, name)` is the link alone.
- blocks: `mode_banner("sandbox" | "live", details)`, `summary_block([KeyNumber(...), ...],
  decisions)` for the 3-5 numbers that matter with their uncertainty, `notice(text)` for a
  warning the reader must see, `glossary("Wilson interval", "adjusted p", ...)` (terms in
  `GLOSSARY`).
- `figure_png(figure)`, `age_text(when)` as before; `parameters_table(values, spec)`: the
  parameters every report ends with, as plain values (`plain_value`) with what each one means.

Tables displayed as plain DataFrames get the same alignment, scroll box and CSV link when the report
is rendered (`cio_mavera.report_page`); `table()` adds what rendering cannot guess: flagged rows,
number formats and the exact data in the CSV.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from pandas.io.formats.style import Styler

from cio_mavera.markup import html_text
from cio_mavera.parameters import ParameterSpec

FLAGGED_ROW_CLASS = "cio-flagged"
NUMERIC_CELL_CLASS = "cio-num"
BLANK = "–"
# Below this a float64 p-value is no longer a probability anyone can read (and 0.0 is underflow).
P_FLOOR = 1e-300

_NUMBER = r"[-+−]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:e[-+]?\d+)?"
_NUMERIC_TEXT = re.compile(
    rf"^(?:[<>≤≥~≈]\s*)?{_NUMBER}\s*(?:%|pp|pts?|x|×|/10)?"
    rf"(?:\s*[–/-]\s*{_NUMBER}\s*%?)?(?:\s*\([^()]*\))?$", re.I)
_BLANK_TEXT = {"", BLANK, "-", "—", "n/a", "na", "nan", "none", "null"}
# Columns whose numbers are names (ids, years, codes): no thousands separators there. A column
# named after a thing ("Campaign", "Action") holds that thing's id.
_ID_HEADER = re.compile(r"(^|[\s_(])(id|ids|no\.?|year|code|zip|postal|phone|seed)($|[\s_)])|#", re.I)
_ID_NOUNS = frozenset({"action", "broadcast", "campaign", "cluster", "message", "newsletter", "run",
                       "segment", "template", "workspace"})


class ReportHtml(str):
    """An HTML snippet: a plain str that `IPython.display.display` shows as HTML."""

    def _repr_html_(self) -> str:
        return str(self)


# ---- numbers -------------------------------------------------------------------------------------


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def format_count(value: Any) -> str:
    """A whole number with thousands separators ("12,345"); a dash when missing."""
    number = _finite(value)
    return BLANK if number is None else f"{round(number):,}"


def format_number(value: Any, digits: int = 2) -> str:
    """A number with thousands separators and `digits` decimals ("12,345.68"); a dash when missing."""
    number = _finite(value)
    return BLANK if number is None else f"{number:,.{digits}f}"


def format_percent(rate: Any, digits: int = 1) -> str:
    """A proportion as a percentage ("7.6%" for 0.076); a dash when missing."""
    number = _finite(rate)
    return BLANK if number is None else f"{100 * number:,.{digits}f}%"


def format_percent_interval(rate: Any, low: Any, high: Any, digits: int = 1) -> str:
    """A proportion with its interval: "7.6% (6.9–8.4%)"; the interval left out when missing."""
    low_number, high_number = _finite(low), _finite(high)
    if low_number is None or high_number is None:
        return format_percent(rate, digits)
    return (f"{format_percent(rate, digits)} "
            f"({100 * low_number:,.{digits}f}–{100 * high_number:,.{digits}f}%)")


def format_p(p: Any, label: str | None = "p") -> str:
    """A p-value readable at any size: "p = 0.012", "p = 3.2e-05", "p < 1e-300" (never 0 or
    0.0e+00, which only mean the value underflowed). `label=None` gives the value alone."""
    number = _finite(p)
    if number is None or number < 0:
        value, relation = "n/a", "="
    elif number < P_FLOOR:
        value, relation = f"{P_FLOOR:.0e}", "<"
    else:
        value, relation = _two_significant(min(number, 1.0)), "="
    if label is None:
        return value if relation == "=" else f"< {value}"
    return f"{label} {relation} {value}"


def _two_significant(p: float) -> str:
    if p >= 0.001:
        return f"{p:.2g}" if p < 0.995 else "1"
    return f"{p:.1e}".replace("e-0", "e-")


def looks_numeric(text: str) -> bool:
    """True when a table cell's text is a number (with %, a range or an interval in brackets)."""
    return bool(_NUMERIC_TEXT.match(text.strip()))


def is_blank(text: str) -> bool:
    """True when a table cell says nothing (empty, a dash, n/a)."""
    return text.strip().lower() in _BLANK_TEXT


def numeric_columns(rows: Sequence[Sequence[str]]) -> set[int]:
    """Positions of the columns whose every non-blank cell is a number."""
    found = set()
    for column in range(max((len(row) for row in rows), default=0)):
        cells = [row[column] for row in rows if column < len(row) and not is_blank(row[column])]
        if cells and all(looks_numeric(cell) for cell in cells):
            found.add(column)
    return found


def is_id_header(header: str) -> bool:
    """True for a column named like an id, year or code, whose numbers get no separators."""
    return bool(_ID_HEADER.search(header.strip())) or header.strip().lower() in _ID_NOUNS


# ---- tables --------------------------------------------------------------------------------------


def csv_data_uri(frame: pd.DataFrame, index: bool = True) -> str:
    """`frame` as a CSV data: URI (UTF-8 with a byte-order mark, so spreadsheets read accents)."""
    text = "\ufeff" + frame.to_csv(index=index)
    return "data:text/csv;charset=utf-8;base64," + base64.b64encode(text.encode()).decode()


def csv_link(frame: pd.DataFrame, name: str = "table.csv", index: bool = True,
             label: str = "Download CSV") -> ReportHtml:
    """A link that saves `frame` as `name` from inside the report (no network)."""
    name = name if name.lower().endswith(".csv") else f"{name}.csv"
    return ReportHtml(f"<a class='cio-csv' download='{html_text(name)}' "
                      f"href='{csv_data_uri(frame, index)}'>{html_text(label)}</a>")


def table(data: pd.DataFrame | Styler, *, flagged: Any = None, caption: str | None = None,
          csv_name: str = "table.csv", index: bool | None = None, digits: int | Mapping[str, int] = 2,
          ids: Iterable[str] | None = None) -> ReportHtml:
    """A table for reading and printing, with its CSV link.

    `flagged` marks rows to highlight: a boolean mask, a list of index labels, or a function of a
    row. `index` shows the index (default: unless it is 0..n-1). Numbers get thousands separators
    and `digits` decimals (per column with a mapping); columns named like ids (or in `ids`) keep
    their digits plain. A Styler keeps its number formats (text columns and labels are shown
    escaped); the CSV holds the unformatted data.
    """
    frame = data.data if isinstance(data, Styler) else data
    show_index = _meaningful_index(frame) if index is None else index
    rows_flagged = _flag_mask(frame, flagged)
    if isinstance(data, Styler):
        body = _styler_html(data, rows_flagged, show_index)
    else:
        body = _frame_html(frame, rows_flagged, show_index, digits, set(ids or ()))
    wide = " cio-wide" if len(frame.columns) + show_index >= 9 else ""
    top = f"<span class='cio-table-caption'>{html_text(caption)}</span> " if caption else ""
    return ReportHtml(
        f"<figure class='cio-table{wide}'><figcaption>{top}"
        f"{csv_link(frame, csv_name, index=show_index)}</figcaption>"
        f"<div class='cio-table-scroll'>{body}</div></figure>")


def _meaningful_index(frame: pd.DataFrame) -> bool:
    plain = isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0 and frame.index.step == 1
    return not plain or any(name is not None for name in frame.index.names)


def _flag_mask(frame: pd.DataFrame, flagged: Any) -> list[bool]:
    """One bool per row from a mask, a list of index labels or a function of a row."""
    if flagged is None:
        return [False] * len(frame)
    if callable(flagged):
        return [bool(flagged(row)) for _, row in frame.iterrows()]
    values = pd.Series(list(flagged), dtype=object)
    if len(values) == len(frame) and len(values) and values.map(lambda v: isinstance(v, bool | np.bool_)).all():
        return [bool(v) for v in values]
    wanted = set(values)
    return [label in wanted for label in frame.index]


def _column_name(column: Any) -> str:
    return " / ".join(str(part) for part in column) if isinstance(column, tuple) else str(column)


def _frame_html(frame: pd.DataFrame, flagged: list[bool], show_index: bool,
                digits: int | Mapping[str, int], ids: set[str]) -> str:
    names = [_column_name(c) for c in frame.columns]
    formatters = [_formatter(frame[c], name, digits, name in ids or is_id_header(name))
                  for c, name in zip(frame.columns, names, strict=True)]
    cells = [[fmt(v) for fmt, v in zip(formatters, row, strict=True)]
             for row in frame.itertuples(index=False, name=None)]
    numeric = {i for i, c in enumerate(frame.columns)
               if _numeric_dtype(frame[c])} | numeric_columns(cells)
    index_names = [_column_name(n) if n is not None else "" for n in frame.index.names]
    head = "".join(f"<th scope='col'>{html_text(n)}</th>" for n in index_names) if show_index else ""
    head += "".join(f"<th scope='col'{_num(i in numeric)}>{html_text(n)}</th>"
                    for i, n in enumerate(names))
    rows = []
    for label, row, flag in zip(frame.index, cells, flagged, strict=True):
        labels = label if isinstance(label, tuple) else (label,)
        line = "".join(f"<th scope='row'>{html_text(_label_text(v))}</th>" for v in labels) \
            if show_index else ""
        line += "".join(f"<td{_num(i in numeric)}>{html_text(text)}</td>" for i, text in enumerate(row))
        rows.append(f"<tr class='{FLAGGED_ROW_CLASS}'>{line}</tr>" if flag else f"<tr>{line}</tr>")
    return (f"<table class='cio-data'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _num(numeric: bool) -> str:
    return f" class='{NUMERIC_CELL_CLASS}'" if numeric else ""


def _label_text(value: Any) -> str:
    return BLANK if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _numeric_dtype(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _formatter(column: pd.Series, name: str, digits: int | Mapping[str, int],
               plain: bool) -> Callable[[Any], str]:
    places = digits.get(name, 2) if isinstance(digits, Mapping) else digits
    whole = pd.api.types.is_integer_dtype(column) and not pd.api.types.is_bool_dtype(column)

    def show(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
            return BLANK
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, numbers.Integral) or (whole and isinstance(value, numbers.Number)):
            return str(int(value)) if plain else f"{int(value):,}"
        if isinstance(value, numbers.Real):
            if not math.isfinite(float(value)):
                return BLANK
            return f"{float(value):.{places}f}" if plain else f"{float(value):,.{places}f}"
        if isinstance(value, pd.Timestamp | dt.datetime):
            return value.isoformat(sep=" ", timespec="minutes") if value.time() != dt.time() \
                else value.date().isoformat()
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        return str(value)

    return show


def _styler_html(styler: Styler, flagged: list[bool], show_index: bool) -> str:
    frame = styler.data
    classes = pd.DataFrame("", index=frame.index, columns=frame.columns)
    cells = [["" if v is None else str(v) for v in row] for row in frame.itertuples(index=False)]
    numeric = numeric_columns(cells) | {i for i, c in enumerate(frame.columns)
                                        if _numeric_dtype(frame[c])}
    for i, column in enumerate(frame.columns):
        if i in numeric:
            classes[column] = NUMERIC_CELL_CLASS
    for position, flag in enumerate(flagged):
        if flag:
            classes.iloc[position] = (classes.iloc[position] + f" {FLAGGED_ROW_CLASS}").str.strip()
    text = [c for i, c in enumerate(frame.columns) if i not in numeric]
    # A Styler does not escape by default: labels and text columns are shown as escaped text.
    styled = (styler.set_td_classes(classes).set_table_attributes("class='cio-data'")
              .format_index(escape="html", axis=0).format_index(escape="html", axis=1)
              .format(escape="html", subset=text, na_rep=BLANK))
    if not show_index:
        styled = styled.hide(axis="index")
    return styled.to_html()


# ---- blocks --------------------------------------------------------------------------------------


def mode_banner(mode: str, details: Mapping[str, Any] | Sequence[Any] = (),
                note: str | None = None) -> ReportHtml:
    """The banner above the summary: loud "SANDBOX DATA" in sandbox mode, a quiet line for live
    data. `details` are facts shown beside it (workspace, window, data age)."""
    facts = [f"{k}: {v}" for k, v in details.items()] if isinstance(details, Mapping) else list(details)
    line = " · ".join(html_text(f) for f in facts)
    if mode == "sandbox":
        note = note or ("Synthetic workspace and simulated Mavera answers from the local stand-in: "
                        "no real customers, campaigns or research. Set the Customer.io and Mavera "
                        "keys to run on live data.")
        return ReportHtml(
            "<div class='cio-banner cio-banner-sandbox' role='note'>"
            "<p class='cio-banner-title'>SANDBOX DATA</p>"
            f"<p>{html_text(note)}</p>" + (f"<p class='cio-banner-facts'>{line}</p>" if line else "")
            + "</div>")
    if mode != "live":
        raise ValueError(f"mode must be 'sandbox' or 'live', not {mode!r}")
    extra = f" · {html_text(note)}" if note else ""
    return ReportHtml("<div class='cio-banner cio-banner-live' role='note'>"
                      f"<strong>Live data</strong>{' · ' + line if line else ''}{extra}</div>")


def notice(text: str, kind: str = "warning", title: str | None = None) -> ReportHtml:
    """A boxed note in the flow of the report: "warning" (the reader should know before trusting
    what follows, e.g. a window longer than the history that exists) or "info"."""
    if kind not in {"warning", "info"}:
        raise ValueError(f"kind must be 'warning' or 'info', not {kind!r}")
    heading = title or ("Warning" if kind == "warning" else "Note")
    return ReportHtml(f"<div class='cio-notice cio-notice-{kind}' role='note'>"
                      f"<strong>{html_text(heading)}:</strong> {html_text(text)}</div>")


@dataclass(frozen=True)
class KeyNumber:
    """One number the reader should leave with: "Click rate, worst message" "1.3%" "95% CI 1.1–1.5%"."""

    label: str
    value: str
    uncertainty: str = ""  # its interval or error rate; say so when there is none
    note: str = ""  # what to compare it with ("typical SMS message 6.6%")


def summary_block(key_numbers: Sequence[KeyNumber], decisions: Sequence[str] = (),
                  decisions_title: str = "What to do next") -> ReportHtml:
    """The top block: 1-5 key numbers with their uncertainty, then the decisions they support."""
    if not 1 <= len(key_numbers) <= 5:
        raise ValueError(f"a summary shows 1 to 5 key numbers, not {len(key_numbers)}: the rest "
                         "belongs in the sections below")
    cards = "".join(
        "<div class='cio-key'>"
        f"<p class='cio-key-label'>{html_text(n.label)}</p>"
        f"<p class='cio-key-value'>{html_text(n.value)}</p>"
        + (f"<p class='cio-key-uncertainty'>{html_text(n.uncertainty)}</p>" if n.uncertainty else "")
        + (f"<p class='cio-key-note'>{html_text(n.note)}</p>" if n.note else "")
        + "</div>" for n in key_numbers)
    todo = ""
    if decisions:
        items = "".join(f"<li>{html_text(d)}</li>" for d in decisions)
        todo = (f"<div class='cio-decisions'><p class='cio-decisions-title'>"
                f"{html_text(decisions_title)}</p><ol>{items}</ol></div>")
    return ReportHtml(f"<div class='cio-summary'><div class='cio-keys'>{cards}</div>{todo}</div>")


GLOSSARY: dict[str, str] = {
    "Click-to-open rate": "Of the people who opened a message, the share who clicked a link in it "
                          "(clicks ÷ opens). It judges the content once opened, apart from the "
                          "subject line that earned the open.",
    "Wilson interval": "The range a rate's true value plausibly lies in (95% here), given how many "
                       "sends it is measured on. Unlike the textbook ± formula it stays sensible "
                       "for small counts and rates near 0% or 100%.",
    "Adjusted p": "A p-value corrected for testing many messages at once (Benjamini-Hochberg). "
                  "Flagging every adjusted p below 5% keeps the expected share of false flags "
                  "among the flagged at 5% or less. Very small values are shown as < 1e-300.",
    "False discovery rate": "The expected share of flagged items that are false alarms. A 5% "
                            "rate means about one flag in twenty may be chance.",
    "Silhouette": "How well each customer fits their own cluster compared with the nearest other "
                  "one, from -1 (wrong cluster) through 0 (on the border) to 1 (clearly placed); "
                  "the average judges a choice of the number of clusters.",
    "ARI": "Adjusted Rand index: how much two ways of grouping the same customers agree, 1 for "
           "identical groupings and about 0 for agreement no better than chance. Used to check "
           "that clusters come back when the data is resampled.",
}
_ALIASES = {"click-to-open": "Click-to-open rate", "ctor": "Click-to-open rate",
            "adjusted p-value": "Adjusted p", "fdr": "False discovery rate",
            "silhouette score": "Silhouette", "adjusted rand index": "ARI"}


def glossary(*terms: str, extra: Mapping[str, str] | None = None) -> ReportHtml:
    """A short glossary of `terms` (from `GLOSSARY`, any case) plus `extra` {term: definition}."""
    known = {name.lower(): name for name in GLOSSARY} | _ALIASES
    entries = []
    for term in terms:
        name = known.get(term.strip().lower())
        if name is None:
            raise KeyError(f"no glossary entry for {term!r}; known: {', '.join(GLOSSARY)} "
                           "(or pass extra={term: definition})")
        entries.append((name, GLOSSARY[name]))
    entries += list((extra or {}).items())
    items = "".join(f"<dt>{html_text(term)}</dt><dd>{html_text(text)}</dd>" for term, text in entries)
    return ReportHtml(f"<dl class='cio-glossary'>{items}</dl>")


# ---- figures, parameters, freshness --------------------------------------------------------------


def figure_png(figure: Figure, dpi: int = 110) -> bytes:
    """A figure as PNG bytes: displays the same under Agg, inline and in the static HTML report."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def age_text(when: pd.Timestamp) -> str:
    """How long ago `when` was, in the largest sensible unit ("45 s", "12 min", "3.5 h", "4 days")."""
    seconds = max(0.0, (pd.Timestamp(dt.datetime.now(dt.UTC)) - when).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def plain_value(value: Any) -> str:
    """A parameter value as a reader writes it: text unquoted, lists joined, yes/no, "not set"."""
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        # Items are ids or names: no thousands separators.
        return ", ".join(str(v) for v in value) if value else "none"
    if isinstance(value, int | float):
        return format_count(value) if float(value).is_integer() else f"{value:,}"
    return str(value)


def parameters_frame(values: Mapping[str, Any], spec: ParameterSpec) -> pd.DataFrame:
    """A run's parameters: plain values and what each one means."""
    meaning = {p.name: p.help for p in spec.parameters}
    return pd.DataFrame({"Parameter": list(values),
                         "Value": [plain_value(v) for v in values.values()],
                         "What it means": [meaning.get(n, "") for n in values]})


def parameters_table(values: Mapping[str, Any], spec: ParameterSpec) -> ReportHtml:
    """The parameters table every report ends with."""
    return table(parameters_frame(values, spec), csv_name="parameters")
