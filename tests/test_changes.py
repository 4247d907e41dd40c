"""What changed since the previous run of the same job, parameters and workspace."""

from __future__ import annotations

import json

from cio_mavera.changes import changes_markdown, compare, previous_results


def _store(reports, job, run_id, **results):
    folder = reports / job / run_id
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"job": job, "run_id": run_id, **results}))


def test_the_previous_run_is_the_newest_earlier_one_with_the_same_inputs(tmp_path):
    same = {"parameters": {"days": 30, "max_credits": 100}, "workspace": "w", "mode": "live"}
    _store(tmp_path, "campaign-messaging", "20260101T000000Z-0001", **same, credits_spent=1)
    _store(tmp_path, "campaign-messaging", "20260102T000000Z-0002", **same, credits_spent=2)
    _store(tmp_path, "campaign-messaging", "20260103T000000Z-0003",
           **{**same, "parameters": {"days": 7}}, credits_spent=3)  # other parameters
    _store(tmp_path, "campaign-messaging", "20260104T000000Z-0004", **{**same, "workspace": "v"})
    _store(tmp_path, "campaign-messaging", "20260109T000000Z-0009", **same)  # later than current
    current = {"job": "campaign-messaging", "run_id": "20260105T000000Z-0005",
               "parameters": {"days": 30, "max_credits": 900}, "workspace": "w", "mode": "live"}
    assert previous_results(tmp_path, current)["credits_spent"] == 2  # max_credits does not matter


def test_job_1_reports_newly_flagged_and_recovered_messages():
    before = {"job": "campaign-messaging", "run_id": "r1", "credits_spent": 120,
              "flagged_underperformers": [{"action_id": 1, "metric": "conversion_rate", "name": "Old"},
                                          {"action_id": 2, "metric": "human_click_rate", "name": "Kept"}]}
    now = {"job": "campaign-messaging", "credits_spent": 0,
           "flagged_underperformers": [{"action_id": 2, "metric": "human_click_rate", "name": "Kept"},
                                       {"action_id": 3, "metric": "human_click_rate",
                                        "name": "<script>alert(1)</script>"}]}
    changes = compare(before, now)
    assert [f["action_id"] for f in changes["newly_flagged"]] == [3]
    assert [f["action_id"] for f in changes["recovered"]] == [1]
    assert changes["still_flagged"] == 1 and changes["credits"] == {"before": 120, "now": 0}
    text = changes_markdown(changes)
    assert "**1 newly flagged**" in text and "**1 recovered**" in text
    assert "<script>" not in text  # a name from the workspace is text, not markup


def test_job_2_reports_clusters_that_grew_shrank_appeared_or_went():
    before = {"job": "attribute-personas", "run_id": "r1", "k": 3, "clusters": [
        {"persona_name": "A", "size": 50}, {"persona_name": "B", "size": 30}, {"persona_name": "C", "size": 20}]}
    now = {"job": "attribute-personas", "k": 3, "clusters": [
        {"persona_name": "A", "size": 40}, {"persona_name": "B", "size": 41}, {"persona_name": "D", "size": 19}]}
    changes = compare(before, now)
    assert changes["new_clusters"] == ["D"] and changes["gone_clusters"] == ["C"]
    assert list(changes["grew"]) == ["B"] and list(changes["shrank"]) == ["A"]


def test_job_3_reports_triggers_that_fired_or_cleared():
    before = {"job": "retention-research", "run_id": "r1", "triggers": [{"key": "campaign:3:opt_out"}]}
    now = {"job": "retention-research", "triggers": [{"key": "campaign:4:opt_out"}]}
    changes = compare(before, now)
    assert changes["fired"] == ["campaign:4:opt_out"] and changes["cleared"] == ["campaign:3:opt_out"]


def test_a_first_run_says_there_is_nothing_to_compare():
    changes = compare(None, {"job": "campaign-messaging"})
    assert changes["first_run"] and "first run" in changes_markdown(changes)
