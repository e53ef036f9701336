"""Capture correlation across hosts: packets one host sent that another never saw, and the ranked problems.

Pure functions, no I/O: tools/capture.py asks the agents (capture.flows, capture.fingerprints) and
passes their answers here.
"""

from __future__ import annotations

import collections
from typing import Any

from ..grouping import fold

SEVERITY = {"high": 3, "medium": 2, "low": 1}
MAX_PROBLEMS = 12
LOSS_PACKETS_SHOWN = 8

# from, to, flow ("tcp A:p>B:q"), sent, arrived; lost and packets once matched packet by packet.
Loss = dict[str, Any]
Direction = tuple[str, str, str]  # proto, source endpoint, destination endpoint
Seen = tuple[int, float, float]  # packets in that direction, the conversation's first and last packet time
View = tuple[set[str], dict[Direction, Seen], tuple[float, float] | None]  # addresses, directions, window
Fingerprints = list[tuple[int, str]]  # (packet number, identity), as capture.fingerprints lists them


def losses(views: dict[str, dict[str, Any]]) -> list[Loss]:
    """Flows one host sent to another that arrived short there, worst first; views: host -> capture.flows.

    Only traffic inside the receiver's capture window counts: a flow sent before the receiver's tcpdump
    opened its device (or after it stopped) was not captured there, which is not loss."""
    parsed = {host: _view(found) for host, found in views.items()}
    found: list[Loss] = []
    for sender, (addresses, sent, _) in parsed.items():
        for key, (count, first, last) in sent.items():
            if _ip(key[1]) not in addresses:
                continue  # not sent by this host: it only saw the flow go by or come in
            for receiver, (their_addresses, seen, window) in parsed.items():
                if receiver == sender or _ip(key[2]) not in their_addresses:
                    continue
                if window is not None and not window[0] <= first <= last <= window[1]:
                    continue  # outside what the receiver captured: unknown, not lost
                arrived = seen.get(key, (0, 0.0, 0.0))[0]
                if arrived < count:
                    flow = f"{key[0]} {key[1]}>{key[2]}"
                    found.append({"from": sender, "to": receiver, "flow": flow, "sent": count, "arrived": arrived})
    found.sort(key=lambda loss: loss["arrived"] - loss["sent"])
    return found


def missing_packets(sent: Fingerprints, seen: Fingerprints) -> tuple[int, list[int]]:
    """(how many, the first packet numbers on the sender) of the packets sent that never arrived.

    Packets are matched by identity (IP id, seq, ack, flags, length) on both ends."""
    arrived = collections.Counter(identity for _, identity in seen)
    missing = []
    for number, identity in sent:
        if arrived[identity]:
            arrived[identity] -= 1
        else:
            missing.append(number)
    if seen:  # outside the receiver's window (first..last it saw) a packet may just be uncaptured
        first = next((n for n, i in sent if i == seen[0][1]), None)
        last = next((n for n, i in reversed(sent) if i == seen[-1][1]), None)
        if first is not None and last is not None:
            missing = [n for n in missing if first < n < last]
    return len(missing), missing[:LOSS_PACKETS_SHOWN]


def _view(found: dict[str, Any]) -> View:
    window = found.get("window")
    return (
        set(found["addresses"]),
        _directions(found["flows"]),
        (float(window[0]), float(window[1])) if window else None,
    )


def _directions(flows: list[dict[str, Any]]) -> dict[Direction, Seen]:
    """(packets, first, last) per direction (the conversation's first and last packet time)."""
    out: dict[Direction, Seen] = {}
    for flow in flows:
        proto, _, ends = flow["flow"].partition(" ")
        client, _, server = ends.partition(">")
        first, last = float(flow.get("first", 0.0)), float(flow.get("last", 0.0))
        out[(proto, client, server)] = (flow["sent"], first, last)
        out[(proto, server, client)] = (flow["returned"], first, last)
    return out


def _ip(endpoint: str) -> str:
    if endpoint.startswith("["):
        return endpoint[1 : endpoint.index("]")]
    return endpoint.rsplit(":", 1)[0] if endpoint.count(":") == 1 else endpoint


def rank(summaries: dict[str, dict[str, Any]], lost: list[Loss]) -> list[dict[str, Any]]:
    """Problems across hosts, most severe first: the losses between hosts, then each host's own."""
    problems = [_loss_problem(loss) for loss in lost] + _host_problems(summaries)
    problems.sort(key=lambda p: -SEVERITY.get(p.get("severity", "low"), 1))
    return problems[:MAX_PROBLEMS]


def _loss_problem(loss: Loss) -> dict[str, Any]:
    count = loss.get("lost", loss["sent"] - loss["arrived"])
    text = (
        f"{count} of {loss['sent']} packets {loss['from']} sent to {loss['to']} on {loss['flow']} never "
        f"arrived at {loss['to']}: lost between {loss['from']} and {loss['to']}"
    )
    if loss["arrived"] == 0:
        text = (
            f"{loss['flow']} left {loss['from']} ({loss['sent']} packets) and never arrived at "
            f"{loss['to']}: lost between {loss['from']} and {loss['to']}"
        )
    return {
        "severity": "high",
        "kind": "lost_between_hosts",
        "hosts": f"{loss['from']}>{loss['to']}",
        "text": text,
        "packets": loss.get("packets", []),
    }


def _host_problems(summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each host's problems; one seen the same way on several hosts is listed once, with its hosts."""
    same: dict[str, dict[str, Any]] = {}
    for host, summary in summaries.items():
        for problem in summary.get("problems", []):
            if problem["text"] in same:
                same[problem["text"]]["hosts"].append(host)
            else:
                same[problem["text"]] = {"hosts": [host], **problem}
    for problem in same.values():
        seen_on = problem.pop("hosts")
        problem["host" if len(seen_on) == 1 else "hosts"] = fold(seen_on)
    return list(same.values())
