"""Job 1 Mavera step: a persona panel scores every variation and the live copy; the ranking."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pandas as pd

from cio_mavera.errors import InvalidParameter
from cio_mavera.jobs.campaigns.data import JobInputError
from cio_mavera.jobs.campaigns.variations import CURRENT, Variation
from cio_mavera.jobs.context import RunContext
from cio_mavera.jobs.credits import SKIPPABLE, skip_reason
from cio_mavera.pii import assert_no_pii
from cio_mavera.progress import Progress

ValidationMode = Literal["responses", "focus_group"]


# Personas who read marketing messages as customers or judge them as experts.
_AUDIENCE_HINT = re.compile(r"email|lifecycle|marketing|customer|subscriber|business|owner", re.I)
_WORD = re.compile(r"[a-z]{4,}")
_STOP = frozenset({"your", "with", "this", "that", "from", "have", "what", "about", "more", "than",
                   "into", "just", "their", "there", "they", "them", "will", "when", "then", "each"})


def choose_personas(personas: Sequence[Mapping[str, Any]], summary: Mapping[str, Any],
                    wanted: Sequence[str] = (), k: int = 3) -> list[dict[str, Any]]:
    """The personas to score with: those named or id'd in `wanted`, else `k` suitable base personas.

    Suitability: words shared between the persona and the underperformers' copy, plus a bonus for
    personas who read marketing messages as customers or experts; ties broken by name, one
    persona per category first so the panel disagrees usefully.
    """
    if wanted:
        chosen = []
        for item in wanted:
            match = next((p for p in personas if p.get("id") == item), None) or next(
                (p for p in personas if str(p.get("name", "")).casefold() == str(item).casefold()), None)
            if match is None:
                raise InvalidParameter(f"persona {item!r} not found; list them with "
                                       "client.personas.list()")
            chosen.append(dict(match))
        return chosen
    pool = [p for p in personas if not p.get("is_custom")] or list(personas)
    copy_words = set()
    for message in summary.get("underperformers", []):
        text = " ".join(str(message.get(k) or "") for k in ("message_name", "subject", "preheader",
                                                             "body_excerpt"))
        copy_words |= {w for w in _WORD.findall(text.lower()) if w not in _STOP}

    def relevance(p: Mapping[str, Any]) -> float:
        text = f"{p.get('name', '')} {p.get('description', '')}".lower()
        return len(copy_words & set(_WORD.findall(text))) + 2.0 * bool(_AUDIENCE_HINT.search(text))

    ranked = sorted(pool, key=lambda p: (-relevance(p), str(p.get("name", ""))))
    chosen, categories = [], set()
    for p in ranked:
        if len(chosen) < k and p.get("category") not in categories:
            chosen.append(dict(p))
            categories.add(p.get("category"))
    for p in ranked:
        if len(chosen) < k and dict(p) not in chosen:
            chosen.append(dict(p))
    return chosen


SCORE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "score": {"type": "integer", "minimum": 1, "maximum": 10,
                  "description": "How well this message works for you, 1 (not at all) to 10"},
        "would_open": {"type": "number", "minimum": 0, "maximum": 1,
                       "description": "Probability you would open it"},
        "would_click": {"type": "number", "minimum": 0, "maximum": 1,
                        "description": "Probability you would click through"},
        "reason": {"type": "string", "maxLength": 300,
                   "description": "One or two sentences on why"},
    },
    "required": ["score", "would_open", "would_click", "reason"],
    "additionalProperties": False,
}

_SCORE_INSTRUCTIONS = ("Judge the message below as yourself, as if it arrived from a product you use. "
                       "Answer only with the JSON object the schema asks for.")
_SCORE_COLUMNS = ["action_id", "variation_id", "channel", "persona_id", "persona_name", "score",
                  "would_open", "would_click", "reason", "method"]


def score_prompt(variation: Variation) -> str:
    """What a persona is shown for one variation."""
    kind = {"twilio": "SMS", "push": "push notification"}.get(variation.channel, variation.channel)
    return f"A {kind} you just received:\n\n{variation.as_text()}"


def score_variations(run: RunContext, variations: Sequence[Variation],
                     personas: Sequence[Mapping[str, Any]],
                     mode: ValidationMode = "responses", *, timeout_s: float = 120.0,
                     poll_s: float = 2.0, progress: Progress | None = None) -> pd.DataFrame:
    """One row per (variation, persona): score 1-10, open/click probability and a reason.

    `responses`: one structured Responses call per pair (JSON schema). `focus_group`: one focus
    group per message, asking each persona to rate every variation and say whether they would
    open and click (yes/no, so the probabilities are 0 or 1 per persona). `progress(done, total)`
    is told after each variation (or focus group).
    """
    if len(personas) < 3:
        raise JobInputError(f"scoring needs at least three personas, got {len(personas)}")
    if mode not in ("responses", "focus_group"):
        raise JobInputError(f"validation must be 'responses' or 'focus_group', not {mode!r}")
    rows: list[dict[str, Any]] = []
    if mode == "responses":
        for done, variation in enumerate(variations, 1):
            rows.extend(_score_with_panel(run, variation, personas))
            if progress:
                progress(done, len(variations))
    else:
        by_message: dict[int, list[Variation]] = {}
        for variation in variations:
            by_message.setdefault(variation.action_id, []).append(variation)
        for done, (action_id, group) in enumerate(by_message.items(), 1):
            rows.extend(_score_with_focus_group(run, action_id, group, personas, timeout_s, poll_s))
            if progress:
                progress(done, len(by_message))
    return pd.DataFrame(rows, columns=_SCORE_COLUMNS)


def _score_with_panel(run: RunContext, variation: Variation, personas: Sequence[Mapping[str, Any]]
                      ) -> list[dict[str, Any]]:
    """Every persona's structured answer for one variation, or none if any call was refused, so
    every ranked variation is judged by the same panel."""
    prompt = score_prompt(variation)
    assert_no_pii(prompt, what="the scoring request")
    rows, refused = [], []
    for persona in personas:
        try:
            answer = run.mavera.responses.create(
                prompt, persona_id=str(persona["id"]), schema=SCORE_SCHEMA,
                schema_name="message_score", instructions=_SCORE_INSTRUCTIONS)
        except SKIPPABLE as exc:
            refused.append(exc)
            continue
        parsed = answer.parsed or {}
        rows.append(_score_row(variation, persona, parsed.get("score"), parsed.get("would_open"),
                               parsed.get("would_click"), parsed.get("reason"), "responses"))
    if not refused:
        return rows
    label = "current copy" if variation.variation_id == CURRENT else f"variation {variation.variation_id}"
    note = (f"; its {len(rows)} other score(s) were dropped so all variations face the same panel"
            if rows else "")
    run.skip("score", f"message {variation.action_id} {label}",
          f"{len(refused)} of {len(personas)} persona calls refused ({skip_reason(refused[0])}){note}")
    return []


def _score_row(variation: Variation, persona: Mapping[str, Any], score: Any, would_open: Any,
               would_click: Any, reason: Any, method: str) -> dict[str, Any]:
    return {"action_id": variation.action_id, "variation_id": variation.variation_id,
            "channel": variation.channel, "persona_id": str(persona.get("id")),
            "persona_name": str(persona.get("name", "")),
            "score": _clip(score, 1, 10), "would_open": _clip(would_open, 0, 1),
            "would_click": _clip(would_click, 0, 1), "reason": str(reason or "").strip(),
            "method": method}


def _clip(value: Any, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return float(min(high, max(low, number))) if math.isfinite(number) else float("nan")


def _score_with_focus_group(run: RunContext, action_id: int, variations: Sequence[Variation],
                            personas: Sequence[Mapping[str, Any]], timeout_s: float, poll_s: float,
                            ) -> list[dict[str, Any]]:
    questions: list[dict[str, Any]] = []
    for v in variations:
        copy = score_prompt(v)
        questions += [
            {"id": f"{v.variation_id}:score", "type": "rating", "scale": {"min": 1, "max": 10},
             "text": f"Rate this message from 1 to 10 for how well it works for you.\n\n{copy}"},
            {"id": f"{v.variation_id}:open", "type": "yes_no", "text": f"Would you open this?\n\n{copy}"},
            {"id": f"{v.variation_id}:click", "type": "yes_no",
             "text": f"Would you click through?\n\n{copy}"},
        ]
    assert_no_pii(questions, what="the focus-group questions")
    try:
        result = run.mavera.focus_groups.run([str(p["id"]) for p in personas], questions,
                                             name=f"cio-mavera message {action_id} variations",
                                             timeout_s=timeout_s, poll_s=poll_s)
    except SKIPPABLE as exc:
        run.skip("score", f"focus group for message {action_id}", exc)
        return []
    by_text = {q["text"]: q["id"] for q in questions}
    ids_in_order = [q["id"] for q in questions]
    answers: dict[tuple[str, str], dict[str, Any]] = {}
    for i, question in enumerate(result.questions):
        qid = question.get("question_id") or question.get("id")
        if qid not in ids_in_order:
            qid = by_text.get(question.get("question") or question.get("text"),
                              ids_in_order[i] if i < len(ids_in_order) else None)
        for response in question.get("responses") or []:
            answers[(str(qid), str(response.get("persona_id")))] = response
    names = {str(p["id"]): p for p in personas}
    rows = []
    for v in variations:
        for pid, persona in names.items():
            score = answers.get((f"{v.variation_id}:score", pid))
            if score is None:
                continue
            opened = answers.get((f"{v.variation_id}:open", pid), {})
            clicked = answers.get((f"{v.variation_id}:click", pid), {})
            rows.append(_score_row(v, persona, score.get("score"), _yes(opened), _yes(clicked),
                                   score.get("reasoning") or score.get("answer"), "focus_group"))
    return rows


def _yes(response: Mapping[str, Any]) -> float:
    answer = str(response.get("answer", "")).strip().lower()
    if answer in ("yes", "true", "1"):
        return 1.0
    if answer in ("no", "false", "0"):
        return 0.0
    return float("nan")


def rank_variations(scores: pd.DataFrame, variations: Sequence[Variation] = ()) -> pd.DataFrame:
    """One row per new variation, ranked within its message by mean persona score, then click probability.

    `lift_vs_current` is the variation's mean score minus the live copy's (NaN if it was not scored).
    """
    columns = ["action_id", "rank", "variation_id", "subject", "preheader", "body_outline",
               "mean_score", "min_score", "max_score", "would_open", "would_click", "personas",
               "current_score", "lift_vs_current", "best_reason", "worst_reason"]
    if scores.empty:
        return pd.DataFrame(columns=columns)
    stats = (scores.groupby(["action_id", "variation_id"], sort=False)
             .agg(mean_score=("score", "mean"), min_score=("score", "min"), max_score=("score", "max"),
                  would_open=("would_open", "mean"), would_click=("would_click", "mean"),
                  personas=("persona_id", "nunique"))
             .reset_index())
    reasons = scores.sort_values(["score", "persona_name"], kind="stable")
    worst = reasons.groupby(["action_id", "variation_id"]).first()["reason"].rename("worst_reason")
    best = reasons.groupby(["action_id", "variation_id"]).last()["reason"].rename("best_reason")
    stats = stats.join(best, on=["action_id", "variation_id"]).join(worst, on=["action_id", "variation_id"])
    current = stats[stats["variation_id"] == CURRENT].set_index("action_id")["mean_score"]
    ranked = stats[stats["variation_id"] != CURRENT].copy()
    ranked["current_score"] = ranked["action_id"].map(current).astype(float)
    ranked["lift_vs_current"] = ranked["mean_score"] - ranked["current_score"]
    # Messages keep the order they were scored in (strongest evidence first).
    order = {a: i for i, a in enumerate(dict.fromkeys(scores["action_id"]))}
    ranked["_message"] = ranked["action_id"].map(order)
    ranked = ranked.sort_values(["_message", "mean_score", "would_click", "variation_id"],
                                ascending=[True, False, False, True], kind="stable")
    ranked["rank"] = ranked.groupby("action_id").cumcount() + 1
    copy = {(v.action_id, v.variation_id): v for v in variations}
    ranked["subject"] = [getattr(copy.get(k), "subject", "") for k in zip(ranked["action_id"], ranked["variation_id"], strict=True)]
    ranked["preheader"] = [getattr(copy.get(k), "preheader", "") for k in zip(ranked["action_id"], ranked["variation_id"], strict=True)]
    ranked["body_outline"] = [list(getattr(copy.get(k), "body_outline", [])) for k in zip(ranked["action_id"], ranked["variation_id"], strict=True)]
    for column in ("mean_score", "would_open", "would_click", "current_score", "lift_vs_current"):
        ranked[column] = ranked[column].astype(float).round(2)
    return ranked[columns].reset_index(drop=True)


