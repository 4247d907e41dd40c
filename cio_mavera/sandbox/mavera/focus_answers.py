"""Focus groups of the Mavera sandbox: request parsing, per-persona answers and aggregate results.

Focus-group wire shapes are NOT FOUND in the docs (mavera-api.md §7); field names follow the
reference's emulator suggestion and are constants here so they can change in one place.
"""

from __future__ import annotations

import statistics
from typing import Any

from .base_personas import Persona
from .errors import invalid, missing
from .prose import chat_reply
from .scoring import affinity, reason, scale_score
from .text import SANDBOX_MARK

# Focus-group wire shapes are NOT FOUND in the docs (§7); these names follow the reference's
# emulator suggestion. Status casing: lowercase, advancing one step per GET.
FOCUS_GROUP_STATUSES = ("pending", "processing", "completed")
QUESTION_TYPES = ("rating", "nps", "likert", "yes_no", "multiple_choice", "open_ended")
DEFAULT_FOCUS_QUESTION = {"type": "rating",
                          "text": "How likely would you be to engage with this message?"}
MAX_FOCUS_PERSONAS = 10
MAX_FOCUS_QUESTIONS = 20
MAX_FOCUS_STIMULI = 20


def parse_stimuli(body: dict[str, Any]) -> list[dict[str, str]]:
    """`stimuli` (or a single `stimulus`) as [{id, text}]; strings and {id?, text|content} accepted."""
    raw = body.get("stimuli")
    if raw is None and body.get("stimulus") is not None:
        raw = [body["stimulus"]]
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_FOCUS_STIMULI:
        raise invalid("stimuli", f"must be a list of at most {MAX_FOCUS_STIMULI} texts")
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            text, ident = item, None
        elif isinstance(item, dict):
            text = item.get("text", item.get("content"))
            ident = item.get("id")
        else:
            text, ident = None, None
        if not isinstance(text, str) or not text.strip():
            raise invalid(f"stimuli[{i}]", "each stimulus needs non-empty text")
        out.append({"id": str(ident) if ident else f"stim_{i + 1}", "text": text})
    if len({s["id"] for s in out}) != len(out):
        raise invalid("stimuli", "stimulus ids must be unique")
    return out


def parse_questions(body: dict[str, Any], has_stimuli: bool) -> list[dict[str, Any]]:
    """`questions` as [{id, type, text, scale?, options?}]; a default rating question when only stimuli are given."""
    raw = body.get("questions")
    if raw is None:
        if not has_stimuli:
            raise missing("questions")
        raw = [DEFAULT_FOCUS_QUESTION]
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_FOCUS_QUESTIONS:
        raise invalid("questions", f"must be a list of 1 to {MAX_FOCUS_QUESTIONS} questions")
    out = []
    for i, item in enumerate(raw):
        question = {"type": "rating", "text": item} if isinstance(item, str) else item
        if not isinstance(question, dict) or not isinstance(question.get("text"), str):
            raise invalid(f"questions[{i}]", "each question needs a text")
        kind = str(question.get("type", "rating")).lower()
        if kind not in QUESTION_TYPES:
            raise invalid(f"questions[{i}].type", f"must be one of {list(QUESTION_TYPES)}")
        entry: dict[str, Any] = {"id": str(question.get("id") or f"q_{i + 1}"), "type": kind,
                                 "text": question["text"]}
        if kind == "multiple_choice":
            options = question.get("options")
            if not isinstance(options, list) or len(options) < 2:
                raise missing(f"questions[{i}].options")
            entry["options"] = options
        scale = question.get("scale") or {}
        if kind == "rating":
            entry["scale"] = {"min": scale.get("min", 1), "max": scale.get("max", 10)}
        elif kind == "nps":
            entry["scale"] = {"min": 0, "max": 10}
        elif kind == "likert":
            entry["scale"] = {"min": 1, "max": scale.get("max", question.get("points", 5))}
        if "scale" in entry and entry["scale"]["min"] >= entry["scale"]["max"]:
            raise invalid(f"questions[{i}].scale", "min must be below max")
        out.append(entry)
    return out


def focus_cost(personas: int, stimuli: int, questions: int) -> int:
    """Credits for a focus group: 50 plus 5 per persona x stimulus x question, at most 200."""
    return min(200, 50 + 5 * personas * max(1, stimuli) * questions)


def _answer(question: dict[str, Any], stimulus: dict[str, str] | None,
            persona: Persona) -> dict[str, Any]:
    text = stimulus["text"] if stimulus else question["text"]
    liking = affinity(text, persona, f"focus:{question['text']}")
    score: Any = None
    kind = question["type"]
    why = reason(text, persona, liking)
    if "scale" in question:
        score = scale_score(liking, question["scale"]["min"], question["scale"]["max"])
        answer = f"{score}"
    elif kind == "yes_no":
        answer = "yes" if liking >= 0.5 else "no"
        score = 1 if answer == "yes" else 0
    elif kind == "multiple_choice":
        options = question["options"]
        answer = str(options[min(len(options) - 1, int(liking * len(options)))])
    else:
        answer = chat_reply(f"{question['text']} {text}", persona, salt="focus")
    return {"persona_id": persona.id, "persona_name": persona.name,
            "stimulus_id": stimulus["id"] if stimulus else None,
            "score": score, "answer": answer, "reasoning": why}


def _aggregate(question: dict[str, Any], responses: list[dict[str, Any]]) -> dict[str, Any]:
    scores = [r["score"] for r in responses if isinstance(r["score"], int | float)]
    distribution: dict[str, int] = {}
    if question["type"] != "open_ended":
        for r in responses:
            distribution[str(r["answer"])] = distribution.get(str(r["answer"]), 0) + 1
    out: dict[str, Any] = {"responses": len(responses), "distribution": distribution}
    if scores and "scale" in question:
        out.update(mean=round(statistics.fmean(scores), 2), median=statistics.median(scores),
                   std_dev=round(statistics.pstdev(scores), 2))
    if question["type"] == "nps" and scores:
        promoters = sum(s >= 9 for s in scores) / len(scores)
        detractors = sum(s <= 6 for s in scores) / len(scores)
        out["nps_score"] = round(100 * (promoters - detractors), 1)
    return out


def focus_results(personas: list[Persona], questions: list[dict[str, Any]],
                   stimuli: list[dict[str, str]]) -> dict[str, Any]:
    """Every persona's answer to every question about every stimulus, with aggregates and a ranking."""
    per_question = []
    targets: list[dict[str, str] | None] = list(stimuli) or [None]
    for question in questions:
        responses = [_answer(question, s, p) for s in targets for p in personas]
        per_question.append({"question_id": question["id"], "question": question["text"],
                             "type": question["type"], "scale": question.get("scale"),
                             "aggregate": _aggregate(question, responses),
                             "responses": responses})
    scored = next((q for q in per_question if q["scale"]), None)
    stimulus_rows = []
    for s in stimuli:
        rows = [r for r in (scored["responses"] if scored else []) if r["stimulus_id"] == s["id"]]
        scores = {r["persona_id"]: r["score"] for r in rows}
        mean = round(statistics.fmean(scores.values()), 2) if scores else None
        stimulus_rows.append({"stimulus_id": s["id"], "text": s["text"], "mean_score": mean,
                              "scores": scores})
    ranked = sorted(stimulus_rows, key=lambda r: -(r["mean_score"] or 0))
    for rank, row in enumerate(ranked, 1):
        row["rank"] = rank
    best = ranked[0]["stimulus_id"] if ranked and ranked[0]["mean_score"] is not None else None
    summary = (f"{SANDBOX_MARK}{len(personas)} personas answered {len(questions)} question(s)"
               + (f" about {len(stimuli)} stimuli; highest mean score: {best}." if stimuli else "."))
    return {"questions": per_question, "stimuli": stimulus_rows, "summary": summary}
