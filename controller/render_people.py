"""Terminal tables for triage, bpftrace and capture answers: what the MCP tools return, for a person."""

from __future__ import annotations

from typing import Any

from .grouping import fold
from .models import FanoutResult
from .render import render_fanout, table
from .tools.bpftrace_models import BpftraceRun
from .tools.capture_models import CaptureSummary


def render_triage(result: FanoutResult) -> str:
    """Hosts grouped by what killed them: title, hosts, culprit frames, kernels, where the log came from."""
    rows = [["HOSTS", "#", "CRASH", "CULPRIT FRAMES", "KERNELS"]]
    for group in result.groups:
        data = group.data or {}
        title = data.get("title") or data.get("why") or group.output or "-"
        frames = " < ".join((data.get("frames") or [])[:4]) or "-"
        rows.append([group.hosts, str(group.count), str(title), frames, ", ".join(data.get("releases") or []) or "-"])
    crashed = sum(g.count for g in result.groups if g.status == "ok" and (g.data or {}).get("title"))
    parts = [
        f"{crashed} crashed host(s) in {len(result.groups)} group(s), {result.summary.elapsed_ms} ms",
        "",
        table(rows),
    ]
    for group in result.groups:
        for note in (group.data or {}).get("notes") or []:
            parts.append(f"note ({group.hosts}): {note}")
    parts += [f"error: {e.host}: {e.message}" + (f" ({e.hint})" if e.hint else "") for e in result.errors]
    if result.job_id:
        parts.append(f"still working: {result.note}")
    return "\n".join(parts)


def render_log_triage(groups: list[dict[str, Any]], unreadable: list[dict[str, str]]) -> str:
    """`crashfleet triage --log`: the files grouped by crash title."""
    rows = [["FILES", "#", "CRASH", "CULPRIT FRAMES"]]
    for group in groups:
        frames = " < ".join(group["frames"][:4]) or "-"
        rows.append([", ".join(group["files"]), str(len(group["files"])), group["title"] or "no crash report", frames])
    parts = [table(rows)]
    parts += [f"note: {note}" for group in groups for note in group["notes"]]
    parts += [f"unreadable: {u['file']}: {u['why']}" for u in unreadable]
    return "\n".join(parts)


def render_trace(result: BpftraceRun) -> str:
    parts = [render_fanout(result)]
    for merged in result.maps:
        figure = merged.value if merged.value is not None else f"p50 {merged.p50} p99 {merged.p99}"
        parts.append(f"\n{merged.name} ({merged.kind}) on {merged.hosts}: {figure}")
        if merged.histogram:
            top = max(b.count for b in merged.histogram) or 1
            parts.append(
                table(
                    [
                        [
                            f"[{b.min}, {b.max if b.max is not None else 'inf'})",
                            str(b.count),
                            "#" * max(1, 40 * b.count // top),
                        ]
                        for b in merged.histogram
                    ]
                )
            )
        for outlier in merged.outliers:
            parts.append(f"  outlier {outlier.host}: {outlier.why}")
    return "\n".join(parts)


def capture_progress(status: FanoutResult, duration: float) -> tuple[int, int, str]:
    """(done, total, message) for the progress bar while hosts capture: the window's elapsed part."""
    datas = [g.data or {} for g in status.groups]
    elapsed = max((float(d.get("elapsed") or 0) for d in datas), default=0.0)
    packets = sum(int(d.get("captured") or 0) * g.count for d, g in zip(datas, status.groups))
    total = max(1, round(duration * 10))
    done = min(total - 1, round(elapsed * 10))  # total (which clears the bar) only once every host is done
    return done, total, f"capturing {elapsed:.0f}/{duration:g} s, {packets} packets, {status.summary.running} running"


def render_capture(result: CaptureSummary) -> str:
    """Per-host figures (hosts with the same figures folded), problems ranked, loss between hosts."""
    rows: dict[tuple[str, ...], list[str]] = {}
    for host, summary in sorted(result.hosts.items()):
        rows.setdefault(_capture_row(summary), []).append(host)
    parts = [
        f"capture {result.job_id}: {len(result.hosts)} host(s), {len(result.problems)} problem(s)",
        "",
        table(
            [["HOSTS", "STATE", "PACKETS", "BYTES", "TCP", "ENDED", "HTTP", "DNS", "PROBLEMS"]]
            + [[fold(hosts), *cells] for cells, hosts in rows.items()]
        ),
    ]
    if result.problems:
        parts += [
            "",
            "Problems, ranked:",
            table(
                [["#", "SEVERITY", "WHERE", "PROBLEM", "EVIDENCE"]]
                + [
                    [
                        str(i),
                        p.get("severity", "-"),
                        p.get("host") or p.get("hosts") or "-",
                        _cut(p.get("text", ""), 110),
                        _evidence(p),
                    ]
                    for i, p in enumerate(result.problems, 1)
                ]
            ),
        ]
    if result.lost_between_hosts:
        parts += [
            "",
            "Lost between hosts:",
            table(
                [["FROM", "TO", "FLOW", "SENT", "ARRIVED", "LOST"]]
                + [
                    [
                        x["from"],
                        x["to"],
                        x["flow"],
                        str(x["sent"]),
                        str(x["arrived"]),
                        str(x.get("lost", x["sent"] - x["arrived"])),
                    ]
                    for x in result.lost_between_hosts
                ]
            ),
        ]
    if result.note:
        parts += ["", result.note]
    parts += [f"error: {e.host}: {e.message}" + (f" ({e.hint})" if e.hint else "") for e in result.errors]
    parts += ["", f"drill in: capture_packets('{result.job_id}', HOST, 'c3' | 'port 53' | '100-200')"]
    return "\n".join(parts)


def _capture_row(summary: dict[str, Any]) -> tuple[str, ...]:
    tcp = summary.get("tcp", {})
    http = summary.get("http", {})
    dns = summary.get("dns", {})
    return (
        str(summary.get("state", "-")),
        str(summary.get("packets", 0)),
        _size(int(summary.get("bytes", 0))),
        str(tcp.get("conversations", 0)),
        _counts(tcp.get("ended", {})),
        f"{http['requests']} ({_counts(http.get('status', {}))})" if http else "-",
        _counts(dns.get("rcodes", {})),
        str(len(summary.get("problems", []))),
    )


def _counts(counts: dict[str, int]) -> str:
    return " ".join(f"{k} {v}" for k, v in counts.items()) or "-"


def _evidence(problem: dict[str, Any]) -> str:
    conversations = [str(c) for c in problem.get("conversations", [])[:3]]
    packets = [str(n) for n in problem.get("packets", [])[:3]]
    return " ".join(conversations + ([f"pkts {','.join(packets)}"] if packets else [])) or "-"


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
