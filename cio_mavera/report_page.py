"""The last pass over a rendered report: contents, readable tables, and the failed-run box.

nbconvert turns the executed notebook into HTML; this pass works on that page as a reader would see
it, so it covers every table however a notebook displayed it (a DataFrame, a Styler, Markdown):
text columns left, numbers right with thousands separators, a scroll box with a CSV link. Tables
built with `report_parts.table` already have all of that and are left as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
from bs4 import BeautifulSoup, Tag

from .jobs.report_parts import (
    NUMERIC_CELL_CLASS,
    csv_link,
    is_id_header,
    numeric_columns,
)

_PLAIN_NUMBER = re.compile(r"^([-+−]?)(\d{4,})(\.\d+)?$")
_WIDE_COLUMNS = 9


@dataclass(frozen=True)
class Failure:
    """What a failed run's report says instead of a traceback."""

    step: str  # the step (section or cell) that failed, as the reader knows it
    message: str  # the error's one line: "RuntimeError: planned failure"
    rerun: str | None = None  # the command that runs it again
    notebook: str | None = None  # where the executed notebook (with the traceback) is


def finish_page(page: str, failure: Failure | None = None) -> str:
    """`page` with tidy tables, a table of contents after the title, and the failure box if any."""
    soup = BeautifulSoup(page, "html.parser")
    main = soup.find("main") or soup.body or soup
    for table in list(main.find_all("table")):
        if not table.find_parent("figure", class_="cio-table"):
            _tidy_table(soup, table)
    after_title = _title_block(main)
    blocks = [b for b in (_failure_box(soup, failure) if failure else None, _contents(soup, main))
              if b is not None]
    for block in reversed(blocks):
        if after_title is None:
            main.insert(0, block)
        else:
            after_title.insert_after(block)
    if failure and soup.title and soup.title.string:
        soup.title.string = f"FAILED: {soup.title.string}"
    return str(soup)


def _title_block(main: Tag) -> Tag | None:
    """The cell holding the page's title (its first h1), which the contents follow."""
    title = main.find("h1")
    if title is None:
        return None
    cell = title.find_parent("div", class_="jp-Cell")
    return cell or title


# ---- contents ------------------------------------------------------------------------------------


def _contents(soup: BeautifulSoup, main: Tag) -> Tag | None:
    """A nested list of the h2/h3 headings, linked by their ids; None for fewer than two."""
    headings = [h for h in main.find_all(["h2", "h3"])
                if not h.find_parent(class_=["cio-failed", "cio-toc"])]
    if len(headings) < 2:
        return None
    used = {tag["id"] for tag in main.find_all(id=True)}
    top_level = sum(h.name == "h2" for h in headings)
    # Two columns only when the list is long enough to need them.
    classes = "cio-toc cio-toc-long" if top_level > 6 else "cio-toc"
    nav = soup.new_tag("nav", attrs={"class": classes, "aria-label": "Contents"})
    title = soup.new_tag("p", attrs={"class": "cio-toc-title"})
    title.string = "Contents"
    nav.append(title)
    top = soup.new_tag("ol")
    nav.append(top)
    current: Tag | None = None
    for heading in headings:
        if not heading.get("id"):
            heading["id"] = _unique_id(_heading_text(heading), used)
        item = soup.new_tag("li")
        link = soup.new_tag("a", href=f"#{heading['id']}")
        link.string = _heading_text(heading)
        item.append(link)
        if heading.name == "h3" and current is not None:
            sub = current.find("ol")
            if sub is None:
                sub = soup.new_tag("ol")
                current.append(sub)
            sub.append(item)
        else:
            top.append(item)
            current = item
    return nav


def _heading_text(heading: Tag) -> str:
    anchors = [a.get_text() for a in heading.find_all("a", class_="anchor-link")]
    text = heading.get_text(" ", strip=True)
    for anchor in anchors:
        text = text.removesuffix(anchor).strip()
    return " ".join(text.split())


def _unique_id(text: str, used: set[str]) -> str:
    base = re.sub(r"[^\w-]+", "-", text).strip("-") or "section"
    candidate, n = base, 1
    while candidate in used:
        n += 1
        candidate = f"{base}-{n}"
    used.add(candidate)
    return candidate


# ---- tables --------------------------------------------------------------------------------------


def _rows(table: Tag) -> Iterator[tuple[Tag, list[Tag], bool]]:
    """(row, its cells, whether it is a header row) for the table's own rows."""
    for row in table.find_all("tr"):
        if row.find_parent("table") is not table:
            continue
        cells = [c for c in row.find_all(["td", "th"], recursive=False)]
        header = row.find_parent("thead") is not None or not any(c.name == "td" for c in cells)
        yield row, cells, header


def _tidy_table(soup: BeautifulSoup, table: Tag) -> None:
    """Align, separate thousands, wrap in a scroll box with a CSV link beside the table (the CSV
    holds the cells as the notebook wrote them, without the separators added here)."""
    rows = list(_rows(table))
    head = [cells for _, cells, header in rows if header]
    body = [cells for _, cells, header in rows if not header]
    if not body:
        return
    texts = [[" ".join(c.get_text(" ", strip=True).split()) for c in cells] for cells in body]
    spans = any(c.get("colspan") or c.get("rowspan") for _, cells, _ in rows for c in cells)
    names = _column_names(head, max(len(r) for r in texts))
    if not spans:
        # Row labels (th) stay as they are; a column is numeric by its data cells.
        numeric = {p for p in numeric_columns(texts)
                   if any(p < len(cells) and cells[p].name == "td" for cells in body)}
        for cells in body:
            for position, cell in enumerate(cells):
                if position in numeric and cell.name == "td":
                    cell["class"] = [*cell.get("class", []), NUMERIC_CELL_CLASS]
                    _separate_thousands(cell, names[position] if position < len(names) else "")
        for cells in head[-1:]:
            for position, cell in enumerate(cells):
                if position in numeric:
                    cell["class"] = [*cell.get("class", []), NUMERIC_CELL_CLASS]
    figure = soup.new_tag("figure", attrs={"class": "cio-table"})
    if max(len(r) for r in texts) >= _WIDE_COLUMNS:
        figure["class"] = ["cio-table", "cio-wide"]
    caption = soup.new_tag("figcaption")
    caption.append(BeautifulSoup(str(csv_link(_as_frame(names, texts), "table.csv", index=False)),
                                 "html.parser"))
    scroll = soup.new_tag("div", attrs={"class": "cio-table-scroll"})
    table.wrap(scroll)
    scroll.wrap(figure)
    figure.insert(0, caption)


def _column_names(head: list[list[Tag]], width: int) -> list[str]:
    """One name per column from the header rows (pandas puts the index name on a row of its own)."""
    names = [""] * width
    for cells in head:
        position = 0
        for cell in cells:
            span = int(cell.get("colspan", 1) or 1)
            text = " ".join(cell.get_text(" ", strip=True).split())
            for offset in range(span):
                if position + offset < width and text and text not in names[position + offset]:
                    names[position + offset] = " / ".join(p for p in (names[position + offset], text) if p)
            position += span
    return names


def _separate_thousands(cell: Tag, header: str) -> None:
    """12345.6 -> 12,345.6 in a cell that holds only a plain number, unless the column is ids."""
    if is_id_header(header) or len(cell.contents) != 1 or not isinstance(cell.string, str):
        return
    match = _PLAIN_NUMBER.match(cell.string.strip())
    if match:
        sign, whole, fraction = match.groups()
        cell.string = f"{sign}{int(whole):,}{fraction or ''}"


def _as_frame(names: list[str], texts: list[list[str]]) -> pd.DataFrame:
    width = max(len(names), *(len(r) for r in texts))
    header = _unique_names([n or f"column {i + 1}" for i, n in
                            enumerate(names + [""] * (width - len(names)))])
    return pd.DataFrame([r + [""] * (width - len(r)) for r in texts], columns=header)


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


# ---- failure -------------------------------------------------------------------------------------


def _failure_box(soup: BeautifulSoup, failure: Failure) -> Tag:
    """A plain box: what failed (step and one-line error) and what to do about it."""
    box = soup.new_tag("section", attrs={"class": "cio-failed", "role": "alert"})
    title = soup.new_tag("h2")
    title.string = "This run did not finish"
    box.append(title)
    box.append(_paragraph(soup, ("What failed: ", "b"), f"the step “{failure.step}” stopped with ",
                          (failure.message, "code"), "."))
    todo: list[str | tuple[str, str]] = [("What to do: ", "b")]
    if failure.rerun:
        todo += ["run it again with ", (failure.rerun, "code"), " (a passing problem, such as a "
                 "service that was down, clears on its own). "]
    if failure.notebook:
        todo += ["If it fails again, the executed notebook keeps the full error for whoever "
                 "looks into it: ", (failure.notebook, "code"), "."]
    if len(todo) > 1:
        box.append(_paragraph(soup, *todo))
    box.append(_paragraph(soup, "The sections below are what ran before it stopped, so this "
                                "report is incomplete."))
    return box


def _paragraph(soup: BeautifulSoup, *parts: str | tuple[str, str]) -> Tag:
    """A <p> of text parts, each a string or (text, tag name); every part is text, never markup."""
    paragraph = soup.new_tag("p")
    for part in parts:
        if isinstance(part, tuple):
            inner = soup.new_tag(part[1])
            inner.string = part[0]
            paragraph.append(inner)
        else:
            paragraph.append(part)
    return paragraph
