"""Host folding and output grouping."""

from __future__ import annotations

from crashfleet.controller.grouping import HostOutcome, fold, group_outcomes


def test_fold_uses_ranges() -> None:
    assert fold([f"web{i:02d}" for i in range(1, 48)]) == "web[01-47]"
    assert fold(["web01", "web03", "db1", "web02"]) == "db1,web[01-03]"
    assert fold([]) == ""


def test_identical_outputs_form_one_group_and_statuses_are_counted() -> None:
    outcomes = [
        HostOutcome(f"web{i:02d}", "ok", key="A", output="same\n", output_id=f"web{i:02d}:aa") for i in range(1, 48)
    ]
    outcomes += [
        HostOutcome("web48", "ok", key="B", output="other\n"),
        HostOutcome("web49", "unreachable", key="connect", message="cannot connect to web49"),
        HostOutcome("web50", "timeout", message="web50 did not answer within 30 s"),
    ]
    result = group_outcomes(outcomes, elapsed_ms=12, page_chars=16000)
    s = result.summary
    assert (s.total, s.ok, s.unreachable, s.timeout, s.failed, s.elapsed_ms) == (50, 48, 1, 1, 0, 12)
    first = result.groups[0]
    assert (first.hosts, first.count, first.status, first.output) == ("web[01-47]", 47, "ok", "same\n")
    assert first.output_ids[0] == "web01:aa" and len(first.output_ids) == 16  # capped: any one pages the same
    assert [g.status for g in result.groups] == ["ok", "ok", "timeout", "unreachable"]
    assert {e.host for e in result.errors} == {"web49", "web50"}
    assert result.groups[3].output == "cannot connect to web49"


def test_outputs_share_the_page_budget() -> None:
    big = "".join(f"line {i} " + "x" * 60 + "\n" for i in range(400))
    outcomes = [HostOutcome(f"h{i}", "ok", key=str(i), output=big, next_cursor="c") for i in range(4)]
    result = group_outcomes(outcomes, elapsed_ms=1, page_chars=8000)
    for group in result.groups:
        assert group.output is not None and len(group.output) < 2000 + 200
        assert "output_page" in group.output and group.next_cursor is None


def test_error_list_is_capped() -> None:
    outcomes = [HostOutcome(f"h{i:03d}", "failed", key="x", message="boom") for i in range(30)]
    result = group_outcomes(outcomes, elapsed_ms=1, page_chars=16000)
    assert len(result.errors) == 20 and result.note and "10 more" in result.note
    assert result.groups[0].hosts == "h[000-029]"
