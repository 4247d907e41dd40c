"""Type inference for string attributes: each kind, edge cases, rare grouping, drops."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cio_mavera.errors import InvalidParameter
from cio_mavera.jobs.audiences.attribute_types import (
    BOOLEAN,
    CATEGORICAL,
    CONSTANT,
    DATETIME,
    EMPTY,
    IDENTIFIER,
    NUMBER,
    OTHER,
    TEXT,
    TIMESTAMP,
    apply_schema,
    infer_schema,
)
from cio_mavera.jobs.audiences.attribute_values import (
    category_key,
    fold_spellings,
    number_unit,
    parse_number,
)

NOW = pd.Timestamp("2025-01-01T00:00:00Z")
N = 400


def _frame(**columns: list) -> pd.DataFrame:
    return pd.DataFrame({"cio_id": [f"{i:08x}" for i in range(N)], **columns})


def _kind(df: pd.DataFrame, col: str, **kw) -> str:
    return infer_schema(df, **kw)[col].kind


def test_booleans_in_every_spelling_become_0_1_with_missing_as_nan() -> None:
    values = (["true", "FALSE", " True ", "false", "", None, "1", "0"] * 50)[:N]
    df = _frame(opt_in=values)
    schema = infer_schema(df)
    assert schema["opt_in"].kind == BOOLEAN
    typed = apply_schema(df, schema, now=NOW)
    assert typed["opt_in"].iloc[:8].tolist()[:4] == [1.0, 0.0, 1.0, 0.0]
    assert typed["opt_in"].iloc[4:6].isna().all()
    assert typed["opt_in"].iloc[6:8].tolist() == [1.0, 0.0]


def test_yes_no_column_is_boolean() -> None:
    assert _kind(_frame(trial=["yes", "no"] * (N // 2)), "trial") == BOOLEAN


def test_mixed_integers_floats_and_junk_become_numbers_with_junk_missing() -> None:
    base = ["12", "3.5", "-7", "1e3", " 42 ", "0.25", "8", "100"]
    values = (base * 60)[: N - 8] + ["n/a", "unknown"] + [""] * 6
    df = _frame(score=values)
    schema = infer_schema(df)
    assert schema["score"].kind == NUMBER
    typed = apply_schema(df, schema, now=NOW)["score"]
    assert typed.dtype == np.float64
    assert typed.iloc[:6].tolist() == [12.0, 3.5, -7.0, 1000.0, 42.0, 0.25]
    assert typed.iloc[-8:].isna().all()


def test_mostly_non_numeric_column_is_not_a_number() -> None:
    values = (["12", "abc", "def", "ghi"] * 100)[:N]
    assert _kind(_frame(code=values), "code") == CATEGORICAL


def test_unix_seconds_become_age_in_days() -> None:
    ts = [str(int(NOW.timestamp()) - d * 86400) for d in range(N)]
    df = _frame(created_at=ts)
    schema = infer_schema(df)
    assert schema["created_at"].kind == TIMESTAMP and schema["created_at"].unit == "s"
    typed = apply_schema(df, schema, now=NOW)
    assert "created_at_days_ago" in typed.columns and "created_at" not in typed.columns
    assert typed["created_at_days_ago"].iloc[:3].tolist() == pytest.approx([0.0, 1.0, 2.0])


def test_unix_milliseconds_are_detected_and_scaled() -> None:
    ms = [str((int(NOW.timestamp()) - d * 86400) * 1000 + 123) for d in range(N)]
    df = _frame(last_seen=ms)
    schema = infer_schema(df)
    assert schema["last_seen"].kind == TIMESTAMP and schema["last_seen"].unit == "ms"
    typed = apply_schema(df, schema, now=NOW)
    assert typed["last_seen_days_ago"].iloc[10] == pytest.approx(10.0, abs=1e-3)


def test_small_integers_are_not_mistaken_for_timestamps() -> None:
    values = [str(v) for v in np.random.default_rng(0).integers(0, 50, N)]
    assert _kind(_frame(logins=values), "logins") == NUMBER


def test_iso_dates_and_datetimes_mixed_become_age_in_days() -> None:
    values = (["2024-12-31", "2024-12-30T00:00:00Z", "2024-12-29 12:00:00+00:00", ""] * 100)[:N]
    df = _frame(signup_date=values)
    schema = infer_schema(df)
    assert schema["signup_date"].kind == DATETIME
    ages = apply_schema(df, schema, now=NOW)["signup_date_days_ago"]
    assert ages.iloc[:4].tolist()[:3] == pytest.approx([1.0, 2.0, 2.5])
    assert np.isnan(ages.iloc[3])


def test_rare_values_are_grouped_as_other() -> None:
    common = ["pro", "free", "team"]
    values = [common[i % 3] for i in range(N - 3)] + ["legacy_a", "legacy_b", "legacy_c"]
    df = _frame(plan=values)
    schema = infer_schema(df, rare_share=0.01)
    assert schema["plan"].kind == CATEGORICAL
    assert set(schema["plan"].categories) == set(common)
    typed = apply_schema(df, schema, now=NOW)["plan"]
    assert typed.iloc[-3:].tolist() == [OTHER] * 3
    assert list(typed.cat.categories) == [*schema["plan"].categories, OTHER]


def test_category_cap_keeps_the_most_common_values() -> None:
    rng = np.random.default_rng(1)
    weights = 0.7 ** np.arange(30)
    values = rng.choice([f"v{i}" for i in range(30)], size=N, p=weights / weights.sum())
    schema = infer_schema(_frame(industry=list(values)), max_categories=5)
    assert schema["industry"].kind == CATEGORICAL
    assert len(schema["industry"].categories) == 5
    assert "v0" in schema["industry"].categories


def test_free_text_is_dropped() -> None:
    notes = [f"Called on day {i}, they asked about pricing and SSO options" for i in range(N)]
    canned = (["Prefers email over phone calls.", "Asked about the API for reporting."] * N)[:N]
    schema = infer_schema(_frame(notes=notes, comment=canned))
    assert schema["notes"].kind == TEXT and not schema["notes"].keep
    assert schema["comment"].kind == TEXT and not schema["comment"].keep


def test_identifier_like_columns_are_dropped() -> None:
    df = _frame(
        account_ref=[f"acct_{i:06d}" for i in range(N)],
        external_id=[str(i) for i in range(N)],
        zip_like=[f"0{1000 + i}" for i in range(N)],
        seq=[str(100 + i) for i in range(N)],
    )
    schema = infer_schema(df)
    for col in ("account_ref", "external_id", "zip_like", "seq"):
        assert schema[col].kind == IDENTIFIER, col
        assert not schema[col].keep
    assert "cio_id" not in [c.column for c in schema]


def test_empty_and_constant_columns_are_dropped() -> None:
    df = _frame(blank=[""] * (N // 2) + [None] * (N // 2), same=["x"] * N)
    schema = infer_schema(df)
    assert schema["blank"].kind == EMPTY and not schema["blank"].keep
    assert schema["same"].kind == CONSTANT and not schema["same"].keep


def test_null_like_tokens_count_as_missing() -> None:
    values = (["5", "null", "None", "NaN", "7"] * 80)[:N]
    schema = infer_schema(_frame(seats=values))
    assert schema["seats"].kind == NUMBER
    assert schema["seats"].missing_share == pytest.approx(0.6)


def test_key_becomes_the_index_and_excluded_columns_are_reported() -> None:
    df = _frame(plan=["a", "b"] * (N // 2), email=["x"] * N)
    schema = infer_schema(df, exclude={"email": "email address"})
    typed = apply_schema(df, schema, now=NOW)
    assert typed.index.name == "cio_id" and typed.index[1] == "00000001"
    assert list(typed.columns) == ["plan"]
    frame = schema.to_frame().set_index("column")
    assert frame.loc["email", "kind"] == "excluded" and not frame.loc["email", "kept"]
    assert frame.loc["email", "reason"] == "email address"


def test_schema_frame_lists_every_column_with_reason() -> None:
    df = _frame(a=["1"] * (N - 1) + ["2"], b=["x", "y"] * (N // 2))
    frame = infer_schema(df).to_frame()
    assert list(frame.columns) == ["column", "kind", "kept", "output", "missing_share", "n_unique",
                                   "reason"]
    assert frame["reason"].str.len().gt(0).all()


def test_typing_a_wide_frame_converts_whole_columns() -> None:
    rng = np.random.default_rng(2)
    n = 20_000
    df = pd.DataFrame({
        "cio_id": [str(i) for i in range(n)],
        **{f"num{i}": rng.normal(size=n).round(3).astype(str) for i in range(10)},
        **{f"cat{i}": rng.choice(["a", "b", "c"], n) for i in range(10)},
        **{f"ts{i}": (1_600_000_000 + rng.integers(0, 10**7, n)).astype(str) for i in range(10)},
    })
    schema = infer_schema(df, sample_size=1000)
    typed = apply_schema(df, schema, now=NOW)
    assert typed.shape == (n, 30)
    assert typed.notna().all().all()


def test_invalid_parameters_are_rejected() -> None:
    with pytest.raises(InvalidParameter):
        infer_schema(_frame(a=["1"] * N), max_categories=0)
    with pytest.raises(InvalidParameter):
        infer_schema(_frame(a=["1"] * N), rare_share=1.5)


# --- messy strings: spellings, units and separators, boolean words, sentinels -------------------


def test_spellings_of_one_category_are_read_as_one_value_labelled_by_the_usual_spelling() -> None:
    spellings = ["pro"] * 6 + ["Pro", "PRO", "pro ", " Pro"] + ["free"] * 5 + ["FREE"]
    values = (spellings * 40)[:N]
    schema = infer_schema(_frame(plan=values))
    assert schema["plan"].kind == CATEGORICAL
    assert set(schema["plan"].categories) == {"pro", "free"}
    assert "other spellings" in schema["plan"].reason
    typed = apply_schema(_frame(plan=values), schema, now=NOW)["plan"]
    assert typed.iloc[:16].tolist() == ["pro"] * 10 + ["free"] * 6


def test_underscores_hyphens_and_spaces_fold_together() -> None:
    assert category_key(" Trial_Expired ") == category_key("trial expired") == category_key("TRIAL-EXPIRED")
    folded, merged = fold_spellings(pd.Series({"trial_expired": 30, "Trial Expired": 5, "active": 9}))
    assert folded.to_dict() == {"trial_expired": 35, "active": 9} and merged == 1


@pytest.mark.parametrize("text, number, unit", [
    ("1,200", 1200.0, None), ("$99.00", 99.0, "$"), ("$1,234,567.50", 1234567.5, "$"),
    ("15 seats", 15.0, "seats"), ("99.5 USD", 99.5, "USD"), ("12%", 12.0, "%"), (" 42 ", 42.0, None),
    ("-1", -1.0, None), ("1-10", np.nan, None), ("v2", np.nan, None), ("seats: 15", np.nan, None),
])
def test_numbers_are_read_through_units_currencies_and_thousands_separators(text, number, unit) -> None:
    assert parse_number(text) == pytest.approx(number, nan_ok=True)
    if not np.isnan(number):
        assert number_unit(text) == unit


def test_a_column_of_numbers_with_units_and_separators_is_a_number() -> None:
    written = ["1,200", "15 seats", "$99.00", "7", "2,500 seats", "40"]
    df = _frame(seats=(written * 70)[:N])
    schema = infer_schema(df)
    assert schema["seats"].kind == NUMBER and schema["seats"].keep
    assert "units or separators" in schema["seats"].reason
    typed = apply_schema(df, schema, now=NOW)["seats"]
    assert typed.iloc[:6].tolist() == [1200.0, 15.0, 99.0, 7.0, 2500.0, 40.0]


def test_booleans_in_several_vocabularies_are_one_boolean() -> None:
    words = ["yes", "no", "1", "0", "true", "false", "Y", "N", "True", "False"]
    df = _frame(trial=(words * 40)[:N])
    schema = infer_schema(df)
    assert schema["trial"].kind == BOOLEAN and "written 10 ways" in schema["trial"].reason
    typed = apply_schema(df, schema, now=NOW)["trial"]
    assert typed.iloc[:10].tolist() == [1.0, 0.0] * 5


def test_a_lone_negative_code_in_counts_is_read_as_missing() -> None:
    values = [str(v) for v in np.random.default_rng(3).integers(0, 40, N)]
    values[::50] = ["-1"] * len(values[::50])
    df = _frame(logins=values)
    schema = infer_schema(df)
    assert schema["logins"].kind == NUMBER and schema["logins"].sentinel == -1.0
    typed = apply_schema(df, schema, now=NOW)["logins"]
    assert typed.iloc[::50].isna().all() and typed.min() >= 0


def test_real_negative_numbers_are_not_mistaken_for_a_sentinel() -> None:
    values = [f"{v:.2f}" for v in np.random.default_rng(4).normal(0, 5, N)]
    schema = infer_schema(_frame(balance=values))
    assert schema["balance"].kind == NUMBER and schema["balance"].sentinel is None
