"""Capture correlation on two real hosts' capture.flows and capture.fingerprints answers.

From the netns lab (tests/unit/data/README.md): db01 served app01 while the router dropped about one
in seven packets db01 sent from :8080. db01 captured first: one flow to :80 ended before app01's capture
started, and the slow flow from :8081 was a second under way when it did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crashfleet.controller.tools.capture_correlate import LOSS_PACKETS_SHOWN, losses, missing_packets, rank

DATA = Path(__file__).parent / "data"
LOSSY = "tcp 10.77.2.2:8080>10.77.1.2:47160"  # db01 to app01, through the dropping router
SLOW = "tcp 10.77.2.2:8081>10.77.1.2:53486"  # under way when app01 started capturing
EARLY = "tcp 10.77.2.2:80>10.77.1.2:46030"  # over before app01 started capturing
# db01's packets of LOSSY that app01 never saw (identities absent from app01's fingerprints).
NEVER_SEEN = [91, 92, 103, 116, 135, 142, 143, 182, 183, 188, 193]


@pytest.fixture
def hosts() -> dict[str, dict[str, Any]]:
    return {host: json.loads((DATA / f"capture-{host}.json").read_text()) for host in ("db01", "app01")}


def views(hosts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {host: data["flows"] for host, data in hosts.items()}


def prints(hosts: dict[str, dict[str, Any]], flow: str) -> tuple[list[Any], list[Any]]:
    """(db01's fingerprints of the flow, app01's)."""
    return hosts["db01"]["fingerprints"][flow], hosts["app01"]["fingerprints"][flow]


def test_the_loss_between_the_hosts(hosts: dict[str, dict[str, Any]]) -> None:
    # db01 counted 68 packets on LOSSY's server side, app01 57: the only flow short at its receiver.
    # app01's own packets all reached db01 (the router dropped only db01's :8080).
    assert losses(views(hosts)) == [{"from": "db01", "to": "app01", "flow": LOSSY, "sent": 68, "arrived": 57}]


def test_missing_packets_are_those_the_receiver_never_saw(hosts: dict[str, dict[str, Any]]) -> None:
    sent, seen = prints(hosts, LOSSY)
    assert (len(sent), len(seen)) == (68, 57)
    assert missing_packets(sent, seen) == (11, NEVER_SEEN[:LOSS_PACKETS_SHOWN])  # 68 - 57, the first 8 shown


def test_traffic_outside_the_receivers_window_is_not_loss(hosts: dict[str, dict[str, Any]]) -> None:
    flows = views(hosts)
    start = flows["app01"]["window"][0]
    before = sorted(f["flow"] for f in flows["db01"]["flows"] if f["first"] < start)
    assert before == ["tcp 10.77.1.2:46030>10.77.2.2:80", "tcp 10.77.1.2:53486>10.77.2.2:8081"]  # EARLY and SLOW
    # Only the window keeps them out: a receiver with no window would count both as lost.
    flows["app01"] = {**flows["app01"], "window": None}
    found = [(loss["flow"], loss["sent"], loss["arrived"]) for loss in losses(flows)]
    assert found == [(SLOW, 45, 26), (LOSSY, 68, 57), (EARLY, 6, 0)]  # worst first


def test_packets_before_the_receivers_first_are_not_counted(hosts: dict[str, dict[str, Any]]) -> None:
    # The 19 packets db01 sent on SLOW before app01's tcpdump opened were never captured there.
    sent, seen = prints(hosts, SLOW)
    assert (len(sent), len(seen)) == (45, 26)
    assert seen[0][1] == sent[19][1]  # app01's first is db01's 20th
    assert missing_packets(sent, seen) == (0, [])


def test_packets_after_the_receivers_last_are_not_counted(hosts: dict[str, dict[str, Any]]) -> None:
    # app01 as if its capture had stopped at db01's packet 140: 135's loss counts, 142 on are unknown.
    sent, seen = prints(hosts, LOSSY)
    number = {identity: n for n, identity in sent}
    stopped = [packet for packet in seen if number[packet[1]] < 140]
    assert missing_packets(sent, stopped) == (5, [91, 92, 103, 116, 135])


def test_rank_puts_the_loss_first_and_folds_problems_seen_alike(hosts: dict[str, dict[str, Any]]) -> None:
    [loss] = losses(views(hosts))
    loss["lost"], loss["packets"] = missing_packets(*prints(hosts, LOSSY))
    problems = rank({host: {"problems": data["problems"]} for host, data in hosts.items()}, [loss])
    assert problems[0] == {
        "severity": "high",
        "kind": "lost_between_hosts",
        "hosts": "db01>app01",
        "text": f"11 of 68 packets db01 sent to app01 on {LOSSY} never arrived at app01: lost between db01 and app01",
        "packets": NEVER_SEEN[:LOSS_PACKETS_SHOWN],
    }
    # Each host's problems, by severity; the same duplicate-ACK text on both hosts is listed once.
    where = [(p["kind"], p.get("host") or p.get("hosts")) for p in problems[1:]]
    assert where == [
        ("retransmissions", "db01"),
        ("retransmissions", "app01"),
        ("segments_missing", "app01"),
        ("dup_acks", "app01,db01"),
    ]


def test_a_flow_that_never_arrived_is_said_so(hosts: dict[str, dict[str, Any]]) -> None:
    flows = views(hosts)
    flows["app01"] = {**flows["app01"], "window": None}  # EARLY counts as lost only without the window
    [problem] = rank({}, [loss for loss in losses(flows) if loss["flow"] == EARLY])
    assert problem["text"] == f"{EARLY} left db01 (6 packets) and never arrived at app01: lost between db01 and app01"
    assert problem["packets"] == []
