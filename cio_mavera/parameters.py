"""Job parameters are data: declared with types and allowed values, checked before anything runs.

Each job declares its parameters (`Parameter`) beside its notebook; a value from the command line,
a batch file or Python is accepted only as plain JSON data (str, int, float, bool, None, lists and
string-keyed dicts of those), is checked against its declaration, and is refused with one clear line
naming the parameter, what it got and what it takes. Nothing is ever evaluated as code.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InvalidParameter

_MAX_DEPTH = 8  # parameters are flat settings; anything deeper is not a parameter
_TYPE_WORDS = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}
_PLURAL_WORDS = {int: "whole numbers", float: "numbers", bool: "true/false values", str: "texts"}


def parse_cli_value(text: str) -> Any:
    """A `-p NAME VALUE` value: JSON when it parses (30, 0.5, true, null, [1, 2], "x"), else the text.

    Python spellings of the constants (True, False, None) are accepted too; nothing else is evaluated.
    """
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return json.loads(stripped, parse_constant=_refuse_constant)
    except ValueError:
        return text


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a parameter value")


def plain_data(name: str, value: Any, depth: int = 0) -> Any:
    """`value` if it is plain JSON data, else InvalidParameter (tuples, sets, objects, NaN...)."""
    if depth > _MAX_DEPTH:
        raise InvalidParameter(f"parameter {name!r} is nested too deeply")
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidParameter(f"parameter {name!r} must be a finite number, got {value!r}")
        return value
    if type(value) is list:
        return [plain_data(name, item, depth + 1) for item in value]
    if type(value) is dict and all(isinstance(k, str) for k in value):
        return {k: plain_data(name, v, depth + 1) for k, v in value.items()}
    raise InvalidParameter(f"parameter {name!r} must be plain data (text, numbers, true/false, null, "
                           f"lists), got a {type(value).__name__}")


def contains_secret(value: Any, secrets: Iterable[str]) -> bool:
    """Whether any configured secret appears anywhere in `value` (inside lists and dicts too)."""
    wanted = [s for s in secrets if s]
    if not wanted:
        return False
    text = json.dumps(value, default=str)
    return any(s in text or json.dumps(s)[1:-1] in text for s in wanted)


@dataclass(frozen=True)
class Parameter:
    """One notebook parameter: its type, default, allowed values or range, and what it means."""

    name: str
    kind: type  # int, float, bool, str or list
    default: Any
    help: str
    nullable: bool = False
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    item: type | None = None  # the type of a list's items
    date: bool = False  # text that must be a YYYY-MM-DD date

    def check(self, value: Any) -> Any:
        """`value` as this parameter's type, or InvalidParameter with one clear line."""
        if value is None:
            if self.nullable:
                return None
            raise InvalidParameter(f"{self.name} cannot be empty; it takes {self.describe()}")
        if self.kind is list:
            if not isinstance(value, list):
                example = "[45, 49]" if self.item is int else '["a", "b"]'
                raise InvalidParameter(f"{self.name} must be a list, e.g. {example}; got {value!r}")
            return [self._scalar(v, self.item or str, f"each item of {self.name}") for v in value]
        return self._scalar(value, self.kind, self.name)

    def _scalar(self, value: Any, kind: type, label: str) -> Any:
        wrong_choice = InvalidParameter(f"{label} must be one of "
                                        f"{', '.join(map(str, self.choices))}; got {value!r}")
        try:
            checked = _as_type(value, kind, label)
        except InvalidParameter:
            if self.choices:
                raise wrong_choice from None
            raise
        if self.choices and checked not in self.choices:
            raise wrong_choice
        if kind in (int, float) and not _within(checked, self.minimum, self.maximum):
            raise InvalidParameter(f"{label} must be {self._range()}; got {value!r}")
        if self.date:
            try:
                dt.date.fromisoformat(checked)
            except ValueError:
                raise InvalidParameter(f"{label} must be a date like 2026-03-01; got {value!r}") from None
        return checked

    def _range(self) -> str:
        low, high = _number(self.minimum), _number(self.maximum)
        if self.minimum is not None and self.maximum is not None:
            return f"between {low} and {high}"
        return f"at least {low}" if self.minimum is not None else f"at most {high}"

    def describe(self) -> str:
        """What the parameter takes, in words ("a whole number between 1 and 3650", "one of ...")."""
        if self.choices:
            text = "one of " + ", ".join(map(str, self.choices))
        elif self.kind is list:
            text = f"a list of {_PLURAL_WORDS.get(self.item or str, 'values')}"
        elif self.date:
            text = "a date (YYYY-MM-DD)"
        else:
            text = _TYPE_WORDS.get(self.kind, self.kind.__name__)
            if self.kind in (int, float) and (self.minimum is not None or self.maximum is not None):
                text += " " + self._range()
        return text + (", or null" if self.nullable else "")


def _as_type(value: Any, kind: type, label: str) -> Any:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind is bool and isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    if kind is float and is_number:
        return float(value)
    if kind is int and is_number and (isinstance(value, int) or value.is_integer()):
        return int(value)  # the declared range then keeps it within what pandas and parquet hold
    raise InvalidParameter(f"{label} must be {_TYPE_WORDS.get(kind, kind.__name__)}; got {value!r}")


def _number(value: float | None) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}" if value is not None else ""


def _within(value: float, low: float | None, high: float | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


CrossCheck = Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True)
class ParameterSpec:
    """A job's parameters, in notebook order, and the checks that involve several of them."""

    parameters: tuple[Parameter, ...]
    cross_checks: tuple[CrossCheck, ...] = ()

    @property
    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.parameters}

    def check(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The checked values (only those given); unknown names and bad values are refused."""
        by_name = {p.name: p for p in self.parameters}
        unknown = sorted(set(values) - set(by_name))
        if unknown:
            raise InvalidParameter(f"no parameter(s) {', '.join(unknown)}; it takes: "
                                   f"{', '.join(by_name)}")
        checked = {name: by_name[name].check(value) for name, value in values.items()}
        merged = {**self.defaults, **checked}
        for cross in self.cross_checks:
            cross(merged)
        return checked

    def values_in(self, namespace: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters as they stand in `namespace` (a notebook's `globals()`), checked.

        Read again before results are written, so a parameter changed and re-run in JupyterLab is
        the one results.json and the report show.
        """
        values = {p.name: namespace[p.name] for p in self.parameters if p.name in namespace}
        self.check(values)
        return values

    def help_text(self) -> str:
        """One line per parameter: name, default, what it takes and what it means."""
        return "\n".join(f"  {p.name} = {json.dumps(p.default)}  ({p.describe()}) — {p.help}"
                         for p in self.parameters)


def spec_from_defaults(defaults: Mapping[str, Any]) -> ParameterSpec:
    """A loose spec for a notebook without a declared one: each value keeps its default's type."""
    params = []
    for name, default in defaults.items():
        kind = list if isinstance(default, list) else type(default) if default is not None else str
        params.append(Parameter(name, kind, default, "", nullable=default is None))
    return ParameterSpec(tuple(params))


def require_order(low: str, high: str) -> CrossCheck:
    """A cross check: parameter `low` must not exceed `high`."""
    def check(values: Mapping[str, Any]) -> None:
        if values.get(low) is not None and values.get(high) is not None and values[low] > values[high]:
            raise InvalidParameter(f"{low} ({values[low]}) must not be greater than {high} "
                                   f"({values[high]})")
    return check
