"""The planted_pii knob: personal data in innocently named attributes, drawn from its own stream."""

from __future__ import annotations

import pandas as pd
from conftest import END

from cio_mavera.sandbox.workspace import World, generate_workspace
from cio_mavera.sandbox.workspace.planted_pii import NOTE_FORMS


def _customers(world: World, seed: int = 5, n: int = 3000) -> pd.DataFrame:
    return generate_workspace(seed, n, end=END, world=world).customers


def test_the_realistic_world_plants_and_the_clean_world_does_not() -> None:
    assert World().customers.planted_pii and not World.clean().customers.planted_pii
    assert "assistant_name" not in _customers(World.clean(), n=500)


def test_assistants_are_other_customers_full_names_following_the_clusters() -> None:
    ws = generate_workspace(5, 3000, end=END)
    people = ws.customers
    full = set(people["first_name"].astype(str) + " " + people["last_name"].astype(str))
    assistants = people["assistant_name"].dropna().astype(str)
    assert set(assistants) <= full and 6 <= assistants.nunique() <= 12
    labels = pd.Series([ws.truth["clusters"]["assignments"][c] for c in people["cio_id"]])
    has = people["assistant_name"].notna().groupby(labels.to_numpy()).mean()
    assert has.max() > 3 * has.min()  # enterprise accounts have assistants, dormant trials rarely


def test_notes_name_other_customers_in_every_form_and_only_where_notes_exist() -> None:
    on = _customers(World())
    off = _customers(World().with_knobs({"customers.planted_pii": False}))
    prefixes = tuple(form.split("{")[0] for form in NOTE_FORMS)
    notes = on["notes"].astype(object)
    planted = notes.dropna().astype(str).str.startswith(prefixes)
    assert 0.03 < planted.mean() < 0.1
    assert {f for f in NOTE_FORMS if notes.dropna().astype(str).str.startswith(f.split("{")[0]).any()} \
        == set(NOTE_FORMS)
    assert (notes.isna() == off["notes"].isna()).all()  # the CRM group stays missing together
    same = [c for c in off.columns if c != "notes"]
    pd.testing.assert_frame_equal(on[same], off[same])  # nothing else the world draws changes
