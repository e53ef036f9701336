"""Merge hosts' folded CPU profiles: fleet-wide stacks, each host's figures, the hosts that stand out.

Pure functions, no I/O. Input per host: its agent's answer (protocol.ProfileStatus): `samples`
(all it took), `stacks` (distinct), `top` (its largest folded stacks with their counts) and
`folded_output_id` (every stack, in its store). Shares are of exact sample totals; a stack's
count is summed over the hosts that listed it in their top, so stacks past a host's top are
in the totals only (the note says how many samples that is).
"""

from __future__ import annotations

from crashfleet.agent import protocol

from ..grouping import fold
from .common import output_ref
from .profile_models import FleetProfile, FleetStack, HostProfile, StandOut

TOP_STACKS = 20  # fleet-wide stacks in an answer
FLAME_STACKS = 2000  # stacks a flame graph view gets (in the result's _meta, not the model's text)
MAX_HOSTS_LISTED = 50
MAX_OUTLIERS = 20
PER_HOST = 3  # stacks named per host that stands out
MAX_STACK_CHARS = 1000  # a longer stack is shown with its middle frames elided
MIN_SHARE = 0.10  # a host stands out on a stack holding at least this share of its samples...
RATIO = 3.0  # ...and this many times the stack's share of the other hosts' samples
MIN_SAMPLES = 20  # hosts with fewer samples are not judged
OUTLIER_RULE = (
    f"a host stands out on a stack that holds at least {MIN_SHARE:.0%} of its samples and over "
    f"{RATIO:g} times that stack's share of the other hosts' samples (up to {PER_HOST} stacks a host, "
    f"largest difference first); needs 2 or more hosts and {MIN_SAMPLES} samples on the host"
)
Counts = dict[str, dict[str, int]]  # stack -> host -> samples


def merge_profiles(per_host: dict[str, protocol.ProfileStatus]) -> FleetProfile:
    totals = {host: int(status.get("samples", 0)) for host, status in per_host.items()}
    counts = stack_counts(per_host)
    fleet = sum(totals.values())
    ranked = sorted(counts.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    result = FleetProfile(
        samples=fleet,
        stack_count=len(counts),
        stacks=[_fleet_stack(stack, hosts, fleet) for stack, hosts in ranked[:TOP_STACKS]],
        per_host=[_host(host, per_host[host], totals[host]) for host in sorted(per_host)[:MAX_HOSTS_LISTED]],
        outliers=find_outliers(counts, totals),
    )
    result.note = _note(per_host, totals, counts) or None
    return result


def flame_stacks(counts: Counts, limit: int = FLAME_STACKS) -> list[dict[str, object]]:
    """The fleet's stacks with their samples, largest first: what a flame graph draws (the answer
    names the top TOP_STACKS; the rest are for the eyes)."""
    summed = sorted(((sum(hosts.values()), stack) for stack, hosts in counts.items()), key=lambda sc: (-sc[0], sc[1]))
    return [{"stack": stack, "samples": samples} for samples, stack in summed[:limit]]


def stack_counts(per_host: dict[str, protocol.ProfileStatus]) -> Counts:
    counts: Counts = {}
    for host, status in per_host.items():
        for entry in status.get("top", []):
            by_host = counts.setdefault(entry["stack"], {})
            by_host[host] = by_host.get(host, 0) + int(entry["count"])
    return counts


def find_outliers(counts: Counts, totals: dict[str, int]) -> list[StandOut]:
    """Per host, the stacks whose share of its samples is furthest above their share on the other hosts."""
    fleet = sum(totals.values())
    if len(totals) < 2:
        return []
    found: list[tuple[float, StandOut]] = []
    for host, total in totals.items():
        others = fleet - total
        if total < MIN_SAMPLES or others <= 0:
            continue
        mine: list[tuple[float, StandOut]] = []
        for stack, by_host in counts.items():
            share = by_host.get(host, 0) / total
            rest = (sum(by_host.values()) - by_host.get(host, 0)) / others
            if share >= MIN_SHARE and share > RATIO * rest:
                why = f"{share:.0%} of its {total} samples in this stack, {rest:.1%} of the other hosts' {others}"
                outlier = StandOut(
                    host=host, stack=shown(stack), share=round(share, 4), others_share=round(rest, 4), why=why
                )
                mine.append((share - rest, outlier))
        found += sorted(mine, key=lambda pair: -pair[0])[:PER_HOST]
    found.sort(key=lambda pair: (-pair[0], pair[1].host))
    return [outlier for _, outlier in found[:MAX_OUTLIERS]]


def shown(stack: str, limit: int = MAX_STACK_CHARS) -> str:
    """The stack, or past `limit` chars its comm, its 2 outermost frames and as many of its innermost as fit."""
    if len(stack) <= limit:
        return stack
    frames = stack.split(";")
    head: list[str] = frames[:3]
    tail: list[str] = []
    room = limit - len(";".join(head)) - 20
    for frame in reversed(frames[3:]):
        room -= len(frame) + 1
        if room < 0:
            break
        tail.insert(0, frame)
    return ";".join([*head, f"[{len(frames) - len(head) - len(tail)} frames]", *tail])


def _fleet_stack(stack: str, by_host: dict[str, int], fleet: int) -> FleetStack:
    samples = sum(by_host.values())
    return FleetStack(
        stack=shown(stack),
        samples=samples,
        share=round(samples / fleet, 4) if fleet else 0.0,
        hosts=fold(by_host),
        host_count=len(by_host),
    )


def _host(host: str, status: protocol.ProfileStatus, total: int) -> HostProfile:
    top = status.get("top") or []
    folded = status.get("folded_output_id")
    return HostProfile(
        host=host,
        samples=total,
        stacks=int(status.get("stacks", len(top))),
        top_stack=shown(top[0]["stack"]) if top else None,
        top_share=round(top[0]["count"] / total, 4) if top and total else None,
        output_id=output_ref(host, folded) if folded else None,
    )


def _note(per_host: dict[str, protocol.ProfileStatus], totals: dict[str, int], counts: Counts) -> str:
    notes = []
    listed = sum(n for by_host in counts.values() for n in by_host.values())
    left_out = sum(totals.values()) - listed
    if left_out > 0:
        notes.append(
            f"{left_out} samples ({left_out / sum(totals.values()):.1%}) are in stacks past each host's top "
            "and count in the totals only: a host's output_id holds all its stacks"
        )
    empty = [host for host, total in totals.items() if total == 0]
    if empty:
        notes.append(f"no samples from {fold(empty)}")
    if len(per_host) > MAX_HOSTS_LISTED:
        notes.append(f"per_host lists {MAX_HOSTS_LISTED} of {len(per_host)} hosts")
    return "; ".join(notes)
