"""Sandbox customers: ~30 attributes with K latent clusters planted on a subset of them.

Vectorised numpy + pyarrow compute, so a million people take a few seconds. Cluster-driven columns:
plan, industry, lifecycle_stage, favorite_feature, trial_user, company_size, seats, mrr, logins_30d,
projects_created, messages_sent_30d, integrations_enabled, support_tickets_90d, last_seen_at. Everything else is noise
(independent of the cluster), except that created_at precedes last_seen_at.

How far the clusters overlap and how messily the attributes are written is the `CustomerWorld`:
the clean world draws exactly the tidy, nearly disjoint clusters; the realistic one (the default)
widens and correlates the numbers, mixes categories across clusters, then lets `attribute_mess`
write them the way integrations do (missing groups, spellings, units, boolean vocabularies, junk).
With `planted_pii` (on in the realistic world) `planted_pii.py` adds personal data where a PII guard
must find it by value: other customers' names in `assistant_name`, their emails, phones, addresses
and ids in `notes`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .attribute_mess import write_attributes
from .planted_pii import plant_personal_data
from .world import CustomerWorld

K = 4
CLUSTER_NAMES = ("enterprise_power_users", "small_self_serve", "dormant_trials", "mid_market_growth")
_CLUSTER_SHARES = np.array([0.2, 0.3, 0.27, 0.23])
_DAY = 86400

PLANS = ("free", "starter", "pro", "business", "enterprise")
INDUSTRIES = ("technology", "finance", "retail", "ecommerce", "healthcare", "education", "media",
              "agency", "nonprofit", "manufacturing")
LIFECYCLE = ("trial", "trial_expired", "onboarding", "active", "expanding", "at_risk")

# Per cluster: probabilities over PLANS / INDUSTRIES / LIFECYCLE, P(trial), and log-normal
# (median, sigma) for the numeric columns; Poisson means are themselves log-normal.
_PLAN_P = np.array([
    [0, 0, 0, 0.1, 0.9], [0.2, 0.8, 0, 0, 0], [0.85, 0.15, 0, 0, 0], [0, 0, 0.85, 0.15, 0]])
_INDUSTRY_P = np.array([
    [0.50, 0.50, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0.30, 0.30, 0, 0.10, 0, 0.20, 0.10, 0],
    [0.1] * 10,
    [0, 0, 0, 0, 0.35, 0.15, 0.35, 0, 0, 0.15]])
_LIFECYCLE_P = np.array([
    [0, 0, 0, 0.9, 0, 0.1], [0, 0, 0.6, 0, 0, 0.4], [0.3, 0.7, 0, 0, 0, 0], [0, 0, 0, 0.1, 0.9, 0]])
_TRIAL_P = np.array([0.0, 0.1, 0.95, 0.03])
_FEATURE_P = np.array([  # automations, templates, reporting, integrations, calendar_view, api, mobile_app
    [0, 0, 0.55, 0, 0, 0.45, 0], [0, 0.5, 0, 0, 0.2, 0, 0.3], [1 / 7] * 7, [0.55, 0, 0, 0.45, 0, 0, 0]])
# Profiles are deliberately not one "size" axis (small self-serve log in most, mid-market sends the
# most messages and connects the most tools), so no coarser grouping explains the data better.
_LOGNORMAL = {  # column: ([median per cluster], [sigma per cluster])
    "company_size": ([5000, 8, 30, 150], [0.4, 0.5, 0.6, 0.4]),
    "seats": ([400, 2, 1, 15], [0.4, 0.4, 0.2, 0.4]),
    "mrr": ([9000, 45, 0, 400], [0.4, 0.35, 0, 0.35]),
    "logins_30d": ([12, 90, 0.3, 10], [0.3, 0.3, 0.5, 0.3]),
    "projects_created": ([30, 200, 0.4, 10], [0.35, 0.35, 0.5, 0.35]),
    "messages_sent_30d": ([800, 300, 4, 60000], [0.4, 0.5, 0.8, 0.4]),
    "integrations_enabled": ([0.8, 1, 0.1, 14], [0.25, 0.4, 0.3, 0.25]),
    "support_tickets_90d": ([8, 0.3, 0.1, 2], [0.3, 0.3, 0.3, 0.3]),
}
_TAIL_CAP = 6.0  # heavy-tailed noise is cut at this many spreads
_POISSON_COLUMNS = ("logins_30d", "projects_created", "integrations_enabled", "support_tickets_90d")
# Numbers that move together inside a cluster (a bigger account has more seats and pays more).
_SHARED_FACTORS = {"company_size": "size", "seats": "size", "mrr": "size", "logins_30d": "engagement",
                   "projects_created": "engagement", "messages_sent_30d": "engagement",
                   "integrations_enabled": "engagement"}
_LAST_SEEN_DAYS = ([1.0, 5.0, 0.0, 2.0])  # exponential mean; dormant trials use uniform(60, 240)

# country: (share, calling code, cities, timezone, language)
_COUNTRIES = {
    "US": (0.44, "1", ("New York", "Austin", "Chicago", "Seattle", "Denver"), "America/New_York", "en"),
    "GB": (0.12, "44", ("London", "Manchester", "Leeds"), "Europe/London", "en"),
    "DE": (0.08, "49", ("Berlin", "Munich", "Hamburg"), "Europe/Berlin", "de"),
    "CA": (0.07, "1", ("Toronto", "Vancouver", "Montreal"), "America/Toronto", "en"),
    "FR": (0.06, "33", ("Paris", "Lyon", "Nantes"), "Europe/Paris", "fr"),
    "AU": (0.05, "61", ("Sydney", "Melbourne"), "Australia/Sydney", "en"),
    "NL": (0.04, "31", ("Amsterdam", "Utrecht"), "Europe/Amsterdam", "nl"),
    "IN": (0.04, "91", ("Bengaluru", "Mumbai", "Pune"), "Asia/Kolkata", "en"),
    "BR": (0.03, "55", ("Sao Paulo", "Rio de Janeiro"), "America/Sao_Paulo", "pt"),
    "ES": (0.025, "34", ("Madrid", "Barcelona"), "Europe/Madrid", "es"),
    "SE": (0.015, "46", ("Stockholm", "Gothenburg"), "Europe/Stockholm", "sv"),
    "JP": (0.01, "81", ("Tokyo", "Osaka"), "Asia/Tokyo", "ja"),
    "MX": (0.01, "52", ("Mexico City", "Guadalajara"), "America/Mexico_City", "es"),
    "NZ": (0.003, "64", ("Auckland",), "Pacific/Auckland", "en"),
    "SG": (0.003, "65", ("Singapore",), "Asia/Singapore", "en"),
    "ZA": (0.002, "27", ("Cape Town",), "Africa/Johannesburg", "en"),
    "IS": (0.001, "354", ("Reykjavik",), "Atlantic/Reykjavik", "is"),
    "EE": (0.001, "372", ("Tallinn",), "Europe/Tallinn", "et"),
    "LU": (0.0005, "352", ("Luxembourg",), "Europe/Luxembourg", "fr"),
    "MT": (0.0005, "356", ("Valletta",), "Europe/Malta", "en"),
}
_CITY_TZ = {"Austin": "America/Chicago", "Chicago": "America/Chicago", "Denver": "America/Denver",
            "Seattle": "America/Los_Angeles", "Vancouver": "America/Vancouver", "Melbourne": "Australia/Melbourne"}
_COUNTRY_TZ = {c: v[3] for v in _COUNTRIES.values() for c in v[2]}  # city -> its country's zone
_FIRST = ("Ava", "Liam", "Noah", "Emma", "Olivia", "Mateo", "Sofia", "Lucas", "Mia", "Ethan", "Amara",
          "Yuki", "Priya", "Arjun", "Chloe", "Leon", "Hannah", "Jonas", "Lea", "Omar", "Fatima", "Diego",
          "Camila", "Isabel", "Kai", "Nora", "Elias", "Zoe", "Felix", "Maya", "Ravi", "Ines", "Tomas",
          "Lena", "Hugo", "Alice", "Samuel", "Grace", "Daniel", "Aisha", "Wei", "Mei", "Kenji", "Sara",
          "Marco", "Giulia", "Pedro", "Ana", "Erik", "Freya")
_LAST = ("Smith", "Johnson", "Garcia", "Muller", "Martin", "Rossi", "Silva", "Kim", "Nguyen", "Patel",
         "Schmidt", "Dubois", "Tanaka", "Kowalski", "Jansen", "Lopez", "Brown", "Wilson", "Andersson",
         "Novak", "Costa", "Fischer", "Moreau", "Sato", "Singh", "Khan", "Murphy", "Walker", "Evans",
         "Hughes", "Ortiz", "Reyes", "Weber", "Becker", "Lambert", "Bianchi", "Santos", "Ito", "Chen",
         "Park")
_DOMAINS = ("example.com", "example.org", "example.net", "mail.example", "corp.example", "inbox.example")
_STREETS = ("Maple", "Oak", "Harbor", "Mill", "Station", "Park", "Cedar", "Lake", "Church", "Market",
            "River", "Hill", "King", "Queen", "Elm", "Bridge")
_SUFFIXES = ("Street", "Avenue", "Road", "Lane", "Way", "Drive")
_JOB_TITLES = ("Marketing Manager", "marketing manager", "Sr. Marketing Mgr", "Head of Growth",
               "Growth Lead", "Product Manager", "Senior Product Manager", "PM", "Data Analyst",
               "analyst", "Founder", "Co-founder & CEO", "CTO", "Operations Manager", "Ops",
               "Customer Success Manager", "CSM", "Engineering Manager", "Software Engineer",
               "Designer", "Project Manager", "Office Manager", "VP Marketing", "Director of Ops",
               "Freelancer", "Consultant", "Teacher", "Student", "Other")
_NOTES = ("Asked about SSO during the onboarding call.", "Prefers email over phone.",
          "Migrated from spreadsheets last quarter.", "Interested in the API for reporting.",
          "Requested an invoice in EUR.", "Met us at a trade show.", "Evaluating two competitors.",
          "Champion left the company; new admin unknown.", "Wants a calendar integration.",
          "Complained about notification volume.", "Happy with templates, uses them weekly.",
          "Asked for a nonprofit discount.", "Needs data residency in the EU.",
          "Renewal conversation planned for next month.", "Reported a bug with CSV import.")
_FEATURES = ("automations", "templates", "reporting", "integrations", "calendar_view", "api",
             "mobile_app")
_REFERRALS = ("organic_search", "paid_search", "referral", "partner", "social", "event", "direct",
              "content")

STRING_COLUMNS = ("cio_id", "id", "email", "phone", "street_address")
TIMESTAMP_COLUMNS = ("created_at", "last_seen_at")


def generate_customers(rng: np.random.Generator, n: int, end_ts: int, seed: int,
                       world: CustomerWorld | None = None) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """(customers frame, cluster label per row, segment facts) for n people; timestamps before end_ts.

    The facts are the true plan, mrr, trial_user and last_seen_at (NaN / missing where the person
    has no such attribute), which segments are defined on, whatever the frame's spelling.
    """
    world = world or CustomerWorld()
    # Everything the realistic world adds comes from its own stream, so the clean world draws
    # exactly what it always drew.
    extra = np.random.default_rng(np.random.SeedSequence([seed, n, 0xC0571]))
    labels = rng.choice(K, size=n, p=_CLUSTER_SHARES).astype(np.int8)
    cols: dict[str, object] = {}
    rows = np.arange(n, dtype=np.int64)
    cols["cio_id"] = _strings(pc.binary_join_element_wise(
        f"{(seed * 2654435761) % 0xFFFF:04x}", _zero_pad_hex(rows + 1, 6), ""))
    id_numbers = pc.cast(pa.array(rows + 1), pa.string())
    user_id = pc.binary_join_element_wise("u_", pc.utf8_lpad(id_numbers, 6, "0"), "")
    # ~5% are email-only people (no `id`), as in workspaces fed by forms before sign-up.
    cols["id"] = _strings(pc.if_else(pa.array(rng.random(n) < 0.05), pa.nulls(n, pa.string()), user_id))

    first = rng.integers(len(_FIRST), size=n)
    last = rng.integers(len(_LAST), size=n)
    first_names = pa.array(_FIRST).take(pa.array(first))
    last_names = pa.array(_LAST).take(pa.array(last))
    cols["email"] = _strings(pc.utf8_lower(pc.binary_join_element_wise(
        first_names, ".", last_names, id_numbers, "@",
        pa.array(_DOMAINS).take(pa.array(rng.integers(len(_DOMAINS), size=n))), "")))
    cols["first_name"] = pd.Categorical.from_codes(first, categories=list(_FIRST))
    cols["last_name"] = pd.Categorical.from_codes(last, categories=list(_LAST))

    codes = list(_COUNTRIES)
    shares = np.array([v[0] for v in _COUNTRIES.values()])
    country = rng.choice(len(codes), size=n, p=shares / shares.sum())
    cols["country"] = pd.Categorical.from_codes(country, categories=codes)
    city_names = sorted({c for v in _COUNTRIES.values() for c in v[2]})
    city_of = [np.array([city_names.index(c) for c in v[2]]) for v in _COUNTRIES.values()]
    pick = rng.random(n)
    city = np.empty(n, dtype=np.int64)
    for i, options in enumerate(city_of):
        mask = country == i
        city[mask] = options[(pick[mask] * len(options)).astype(np.int64)]
    cols["city"] = pd.Categorical.from_codes(city, categories=city_names)
    cols["street_address"] = _strings(pc.binary_join_element_wise(
        pc.cast(pa.array(rng.integers(1, 2000, size=n)), pa.string()),
        pa.array(_STREETS).take(pa.array(rng.integers(len(_STREETS), size=n))),
        pa.array(_SUFFIXES).take(pa.array(rng.integers(len(_SUFFIXES), size=n))), " "))
    calling = pa.array([v[1] for v in _COUNTRIES.values()]).take(pa.array(country))
    national = pc.cast(pa.array(rng.integers(2_000_000_000, 10_000_000_000, size=n)), pa.string())
    phone = pc.binary_join_element_wise("+", calling, national, "")
    cols["phone"] = _strings(pc.if_else(pa.array(rng.random(n) < 0.12), pa.nulls(n, pa.string()), phone))
    cols["timezone"] = _categorical_by(city, [_CITY_TZ.get(c, _COUNTRY_TZ[c]) for c in city_names])
    cols["language"] = _categorical_by(country, [v[4] for v in _COUNTRIES.values()])

    overlap = world.category_overlap
    cols["plan"] = _categorical_draw(rng, labels, _mixed(_PLAN_P, overlap), PLANS)
    cols["industry"] = _categorical_draw(rng, labels, _mixed(_INDUSTRY_P, overlap), INDUSTRIES)
    cols["lifecycle_stage"] = _categorical_draw(rng, labels, _mixed(_LIFECYCLE_P, overlap), LIFECYCLE)
    trial_p = _mixed(np.column_stack([_TRIAL_P, 1 - _TRIAL_P]), overlap)[:, 0]
    cols["trial_user"] = rng.random(n) < trial_p[labels]
    noise = {name: rng.standard_normal(n) for name in _LOGNORMAL}  # the tidy world's draws
    noise = _realistic_noise(extra, noise, world)
    numbers = {name: _lognormal(labels, *spec, noise[name], world.spread)
               for name, spec in _LOGNORMAL.items()}
    cols["company_size"] = np.maximum(1, np.rint(numbers["company_size"])).astype(np.int64)
    cols["seats"] = np.maximum(1, np.rint(numbers["seats"])).astype(np.int64)
    mrr = np.round(numbers["mrr"], 2)
    mrr[np.asarray(cols["plan"].codes) == PLANS.index("free")] = 0.0  # free plans pay nothing
    cols["mrr"] = mrr
    for name in _POISSON_COLUMNS:
        cols[name] = rng.poisson(numbers[name]).astype(np.int64)
    cols["messages_sent_30d"] = np.rint(numbers["messages_sent_30d"]).astype(np.int64)

    seen_days = rng.exponential(np.array(_LAST_SEEN_DAYS)[labels])
    dormant = labels == CLUSTER_NAMES.index("dormant_trials")
    seen_days[dormant] = rng.uniform(60, 240, size=int(dormant.sum()))
    last_seen = end_ts - (seen_days * _DAY).astype(np.int64) - rng.integers(0, 3600, size=n)
    tenure_days = np.where(dormant, rng.uniform(1, 21, size=n), rng.uniform(20, 1100, size=n))
    created = np.minimum(last_seen - 600, last_seen - (tenure_days * _DAY).astype(np.int64))
    cols["created_at"] = created
    cols["last_seen_at"] = last_seen
    cols["signup_date"] = (created - created % _DAY).astype("datetime64[s]")

    nps = rng.integers(0, 11, size=n).astype(np.int8)
    cols["nps_score"] = pd.arrays.IntegerArray(nps, rng.random(n) < 0.35)  # ~35% never answered
    cols["marketing_opt_in"] = rng.random(n) < 0.62
    cols["referral_source"] = pd.Categorical.from_codes(rng.integers(len(_REFERRALS), size=n), categories=list(_REFERRALS))
    cols["favorite_feature"] = _categorical_draw(rng, labels, _mixed(_FEATURE_P, overlap), _FEATURES)
    cols["job_title"] = pd.Categorical.from_codes(rng.integers(len(_JOB_TITLES), size=n), categories=list(_JOB_TITLES))
    note = rng.integers(len(_NOTES), size=n)
    cols["notes"] = pd.Categorical.from_codes(np.where(rng.random(n) < 0.55, -1, note), categories=list(_NOTES))
    people = pd.DataFrame(cols, columns=_COLUMN_ORDER)
    if world.hostile_values:
        people = hostile_levels(people)
    facts = people[["plan", "mrr", "trial_user", "last_seen_at"]].copy()
    if dataclasses.replace(world, hostile_values=False, planted_pii=False) != CustomerWorld.clean():
        people, facts = write_attributes(extra, people, world)
    if world.planted_pii:  # its own stream, so nothing else the world draws changes
        planted = np.random.default_rng(np.random.SeedSequence([seed, n, 0x9117]))
        people = plant_personal_data(planted, people, labels)
    return people, labels, facts


# Levels rewritten by `hostile_values`: each keeps its word (so it stays readable and clusters the
# same) and adds markup a report must show as text, never run or render.
HOSTILE_LEVELS: dict[str, dict[str, str]] = {
    "plan": {"enterprise": "enterprise <img src=x onerror=alert(1)>",
             "starter": "starter <script>alert('plan')</script> **bold**",
             "free": "free **bold** $x^2$", "pro": "[pro](javascript:alert(1)) $x^2$"},
    "industry": {"finance": "finance <b>bold</b>", "healthcare": "health`care` _em_ $y$"},
    "favorite_feature": {"api": "api <script>alert('feature')</script>",
                         "templates": "templates [x](javascript:alert(2))"},
    "lifecycle_stage": {"trial_expired": "trial_expired <img src=y onerror=alert(3)>",
                        "expanding": "expanding $\\frac{1}{2}$ # heading"},
}


def hostile_levels(people: pd.DataFrame) -> pd.DataFrame:
    """`people` with some category levels written as markup (codes, clusters and segments unchanged)."""
    out = people.copy()
    for column, renames in HOSTILE_LEVELS.items():
        levels = out[column].cat.categories
        out[column] = out[column].cat.rename_categories([renames.get(v, v) for v in levels])
    return out


_COLUMN_ORDER = (
    "cio_id", "id", "email", "first_name", "last_name", "phone", "city", "street_address", "country",
    "timezone", "language", "plan", "industry", "company_size", "seats", "lifecycle_stage", "created_at",
    "last_seen_at", "signup_date", "logins_30d", "projects_created", "messages_sent_30d", "mrr",
    "nps_score", "marketing_opt_in", "trial_user", "referral_source", "job_title", "notes",
    "favorite_feature", "integrations_enabled", "support_tickets_90d",
)


def _strings(array: pa.Array) -> pd.arrays.ArrowStringArray:
    return pd.arrays.ArrowStringArray(pc.cast(array, pa.large_string()))


def _zero_pad_hex(values: np.ndarray, width: int) -> pa.Array:
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64) * 4
    chars = digits[(values[:, None] >> shifts[None, :]) & 0xF]
    return _fixed_width_ascii(chars)


def _fixed_width_ascii(chars: np.ndarray) -> pa.Array:
    n, width = chars.shape
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * width)
    return pa.StringArray.from_buffers(n, offsets.buffers()[1], pa.py_buffer(np.ascontiguousarray(chars)))


def _categorical_by(codes: np.ndarray, values: list[str]) -> pd.Categorical:
    categories = sorted(set(values))
    mapping = np.array([categories.index(v) for v in values])
    return pd.Categorical.from_codes(mapping[codes], categories=categories)


def _categorical_draw(rng: np.random.Generator, labels: np.ndarray, probs: np.ndarray,
                      categories: tuple[str, ...]) -> pd.Categorical:
    cumulative = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    u = rng.random(len(labels))
    codes = np.empty(len(labels), dtype=np.int64)
    for k in range(len(probs)):
        mask = labels == k
        codes[mask] = np.searchsorted(cumulative[k], u[mask], side="right")
    return pd.Categorical.from_codes(np.minimum(codes, len(categories) - 1), categories=list(categories))


def _lognormal(labels: np.ndarray, medians: list[float], sigmas: list[float], noise: np.ndarray,
               spread: float) -> np.ndarray:
    median = np.array(medians, dtype=float)[labels]
    sigma = np.array(sigmas, dtype=float)[labels]
    if spread != 1.0:
        sigma = sigma * spread
    return median * np.exp(sigma * noise)


def _mixed(probs: np.ndarray, overlap: float) -> np.ndarray:
    """Each cluster's category probabilities, a share `overlap` of them taken from everyone's mix."""
    if overlap == 0:
        return probs
    rows = probs / probs.sum(axis=1, keepdims=True)
    everyone = _CLUSTER_SHARES @ rows
    return (1 - overlap) * rows + overlap * everyone[None, :]


def _realistic_noise(extra: np.random.Generator, noise: dict[str, np.ndarray],
                     world: CustomerWorld) -> dict[str, np.ndarray]:
    """Heavy-tailed (Student t) noise, partly shared by numbers that move together in a cluster."""
    if world.heavy_tail_df > 0:
        df = world.heavy_tail_df
        # Capped at 6 (a whale 100x the median, not 10^20 logins that no count can hold).
        noise = {name: np.clip(z * np.sqrt(df / extra.chisquare(df, size=len(z))), -_TAIL_CAP, _TAIL_CAP)
                 for name, z in noise.items()}
    rho = world.within_cluster_correlation
    if rho > 0:
        n = len(next(iter(noise.values())))
        factors = {f: extra.standard_normal(n) for f in sorted(set(_SHARED_FACTORS.values()))}
        noise = {name: (np.sqrt(1 - rho) * z + np.sqrt(rho) * factors[_SHARED_FACTORS[name]]
                        if name in _SHARED_FACTORS else z) for name, z in noise.items()}
    return noise
