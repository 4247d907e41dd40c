"""Personal data where integrations leave it in real workspaces: in attributes with innocent names.

With `CustomerWorld.planted_pii` the workspace holds the forms issue 14 found the PII guard
missing, built from its own people:

- `assistant_name`: another customer's full name, for most enterprise accounts and some others,
  the assistant mostly one of three per audience cluster. A categorical attribute that follows the
  clusters, so a guard that misses it lets a real person's name become a cluster's defining trait
  (and a persona's name).
- `notes`: for a share of the people who have notes, one naming another customer: an email
  obfuscated (`(at)`, ` at `) or URL-encoded (`%40`), a phone written digit-only, spaced, in
  French pairs, in thousands groups or encoded (`%2B`), a street address, a cio_id with or
  without its label, a customer id, or a full name.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ASSISTANTS_PER_CLUSTER = 3
# P(an account has an assistant) by cluster (enterprise_power_users, small_self_serve,
# dormant_trials, mid_market_growth), and P(the assistant is one of its own cluster's).
_ASSISTANT_P = np.array([0.6, 0.1, 0.05, 0.3])
_OWN_CLUSTER_P = 0.85
NOTE_SHARE = 0.06  # of the people with notes, this share have one naming another customer
NOTE_FORMS = (
    "Cc their colleague {local} (at) {domain}",
    "Forwarded from {local} at {domain}",
    "Signed up again as {local}%40{domain}",
    "Call back on {national}",
    "Mobile {national3} {national7}",
    "Tel. {french}",
    "Phone: {grouped}",
    "WhatsApp %2B{international}",
    "Ship the swag to {street}",
    "Duplicate of cio_id {cio_id}",
    "Merged into {cio_id} last week",
    "Same person as {id}",
    "Referred by {first} {last}",
)


def plant_personal_data(rng: np.random.Generator, people: pd.DataFrame,
                        labels: np.ndarray) -> pd.DataFrame:
    """`people` with `assistant_name` added and some `notes` naming other customers."""
    out = people.copy()
    out["assistant_name"] = _assistants(rng, people, labels)
    out["notes"] = _notes(rng, people)
    return out


def _full_names(people: pd.DataFrame, rows: np.ndarray) -> list[str]:
    first = people["first_name"].astype(str).to_numpy()[rows]
    last = people["last_name"].astype(str).to_numpy()[rows]
    return [f"{f} {ln}" for f, ln in zip(first, last, strict=True)]


def _assistants(rng: np.random.Generator, people: pd.DataFrame, labels: np.ndarray) -> pd.Categorical:
    n, k = len(people), len(_ASSISTANT_P)
    pool = _full_names(people, rng.choice(n, size=k * ASSISTANTS_PER_CLUSTER,
                                              replace=n < k * ASSISTANTS_PER_CLUSTER))
    own = labels * ASSISTANTS_PER_CLUSTER + rng.integers(ASSISTANTS_PER_CLUSTER, size=n)
    anyone = rng.integers(len(pool), size=n)
    code = np.where(rng.random(n) < _OWN_CLUSTER_P, own, anyone)
    code = np.where(rng.random(n) < _ASSISTANT_P[labels], code, -1)
    categories = list(dict.fromkeys(pool))  # two pool members may share a name
    return pd.Categorical.from_codes([categories.index(pool[c]) if c >= 0 else -1 for c in code],
                                     categories=categories)


def _notes(rng: np.random.Generator, people: pd.DataFrame) -> pd.Categorical:
    notes = people["notes"]
    present = np.flatnonzero(notes.notna().to_numpy())
    chosen = present[rng.random(len(present)) < NOTE_SHARE]
    others = rng.integers(len(people), size=len(chosen))
    forms = rng.permutation(np.arange(len(chosen)) % len(NOTE_FORMS))  # every form, as evenly as can be
    written = [NOTE_FORMS[f].format(**_identifiers(people, int(o))) for f, o in zip(forms, others, strict=True)]
    values = notes.astype(object).to_numpy(copy=True)
    values[chosen] = written
    return pd.Categorical(values)


def _identifiers(people: pd.DataFrame, row: int) -> dict[str, str]:
    """One customer's identifiers in the pieces the note forms use."""
    person = people.iloc[row]
    local, _, domain = str(person["email"]).partition("@")
    phone = str(person["phone"]) if pd.notna(person["phone"]) else "+15550100000"
    national = phone[-10:]
    last9 = national[-9:]
    return {"local": local, "domain": domain, "national": national,
            "national3": national[:3], "national7": national[3:],
            "french": "0" + " ".join([last9[0]] + [last9[i:i + 2] for i in range(1, 9, 2)]),
            "grouped": f"{int(national):,}", "international": phone.lstrip("+"),
            "street": str(person["street_address"]), "cio_id": str(person["cio_id"]),
            "id": str(person["id"]) if pd.notna(person["id"]) else str(person["cio_id"]),
            "first": str(person["first_name"]), "last": str(person["last_name"])}
