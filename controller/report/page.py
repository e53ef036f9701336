"""The report as one HTML5 file: inline CSS, charts as data: URIs, nothing fetched when it is opened."""

from __future__ import annotations

import json
import time
from html import escape
from typing import Any

from . import charts
from .gather import ReportData

STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;color:#1d2433;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccd;margin-top:1.8em}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccd;padding:.25em .6em;text-align:left;vertical-align:top}th{background:#eef1f7}
pre{background:#f6f7f9;padding:.6em;overflow:auto;max-height:30em}.missing{color:#a94442}
figure{margin:.8em 0}figcaption{font-size:.9em;color:#556}"""


def render(report: ReportData) -> str:
    body = [
        f"<h1>{escape(report.title)}</h1>",
        f"<p>Written {escape(time.strftime('%Y-%m-%d %H:%M:%S %Z'))} by crashfleet; "
        f"hosts: {escape(', '.join(sorted(report.hosts)) or 'none')}.</p>",
    ]
    body += _missing(report) + _facts(report) + _triage(report) + _maps(report) + _captures(report)
    body += _sessions(report) + _outputs(report) + _timeline(report)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(report.title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _table(head: list[str], rows: list[list[str]]) -> str:
    """A table of already-escaped cells."""
    head_html = "".join(f"<th>{h}</th>" for h in head)
    rows_html = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>\n<thead><tr>{head_html}</tr></thead>\n<tbody>{rows_html}</tbody>\n</table>"


def _cell(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return escape(json.dumps(value, sort_keys=True))
    return escape("" if value is None else str(value))


def _missing(report: ReportData) -> list[str]:
    if not report.missing:
        return []
    return [
        "<h2>Not included</h2>",
        '<p class="missing">These ids were not found (unknown or expired):</p>',
        _table(["id", "why"], [[_cell(ref), _cell(why)] for ref, why in report.missing]),
    ]


def _facts(report: ReportData) -> list[str]:
    if not report.facts:
        return []
    keys = sorted({k for g in report.facts["groups"] for k in (g.get("data") or {})})
    rows = [
        [_cell(g["hosts"]), _cell(g["status"])] + [_cell((g.get("data") or {}).get(k)) for k in keys]
        for g in report.facts["groups"]
    ]
    rows += (
        [
            [_cell(e["host"]), _cell(e["status"]), _cell(e["message"])] + [""] * (len(keys) - 1)
            for e in report.facts.get("errors", [])
        ]
        if keys
        else []
    )
    return ["<h2>Fleet facts</h2>", _table(["hosts", "status", *map(escape, keys)], rows)]


def _triage(report: ReportData) -> list[str]:
    if not report.triage:
        return []
    rows = [
        [
            _cell(g["count"]),
            _cell(g["hosts"]),
            _cell(g["data"].get("title")),
            "<br>".join(_cell(f) for f in g["data"].get("frames", [])[:8]),
            _cell(", ".join(g["data"].get("releases") or [])),
        ]
        for g in sorted(report.triage, key=lambda g: -int(g["count"]))
    ]
    return ["<h2>Crash triage</h2>", _table(["hosts #", "hosts", "crash", "culprit frames", "kernels"], rows)]


def _maps(report: ReportData) -> list[str]:
    if not report.maps:
        return []
    parts = ["<h2>bpftrace</h2>"]
    for merged in report.maps:
        parts.append(f"<h3>{escape(merged['name'])} ({escape(merged['kind'])}) on {escape(merged['hosts'])}</h3>")
        if merged.get("histogram"):
            parts.append(_figure(charts.histogram(merged["name"], merged["histogram"])))
        outliers = {o["host"] for o in merged.get("outliers", [])}
        if merged.get("per_host"):
            parts.append(_figure(charts.per_host(merged["name"], merged["per_host"], outliers)))
            parts.append(
                _table(
                    ["host", "value", "count", "p50", "p99"],
                    [
                        [_cell(f["host"]) + (" (outlier)" if f["host"] in outliers else "")]
                        + [_cell(f.get(k)) for k in ("value", "count", "p50", "p99")]
                        for f in merged["per_host"]
                    ],
                )
            )
        if merged.get("outliers"):
            parts.append(
                _table(
                    ["outlier", "figure", "value", "fleet median", "why"],
                    [
                        [_cell(o[k]) for k in ("host", "figure", "value", "fleet_median", "why")]
                        for o in merged["outliers"]
                    ],
                )
            )
    return parts


def _figure(chart: charts.Chart) -> str:
    return (
        f'<figure><img src="{chart.src}" width="{chart.width}" height="{chart.height}" '
        f'alt="{escape(chart.title)}"><figcaption>{escape(chart.title)}</figcaption></figure>'
    )


def _captures(report: ReportData) -> list[str]:
    parts: list[str] = []
    for summary in report.captures:
        parts.append(f"<h2>Capture {escape(summary['job_id'])}</h2>")
        problems = summary.get("problems", [])
        parts.append(
            "<h3>Problems, ranked</h3>"
            + (
                _table(["#", "problem"], [[str(i), _cell(p)] for i, p in enumerate(problems, 1)])
                if problems
                else "<p>No problems found.</p>"
            )
        )
        if summary.get("lost_between_hosts"):
            parts.append(
                "<h3>Lost between hosts</h3>"
                + _table(["loss"], [[_cell(loss)] for loss in summary["lost_between_hosts"]])
            )
        for host, data in sorted(summary.get("hosts", {}).items()):
            conversations = data.get("conversations") or []
            parts.append(
                f"<h3>Conversations on {escape(host)}</h3>"
                + (
                    _table(["conversation"], [[_cell(c)] for c in conversations[:20]])
                    if conversations
                    else "<p>None.</p>"
                )
            )
    return parts


def _sessions(report: ReportData) -> list[str]:
    if not report.sessions:
        return []
    keys = ["session_id", "host", "vmcore", "release", "format"]
    return ["<h2>Dump sessions</h2>", _table(keys, [[_cell(s.get(k)) for k in keys] for s in report.sessions])]


def _outputs(report: ReportData) -> list[str]:
    parts: list[str] = []
    for page in report.outputs:
        more = f" (lines {page['start_line']}-{page['end_line']} of {page['total_lines']})"
        parts += [f"<h2>Output {escape(page['output_id'])}{escape(more)}</h2>", f"<pre>{escape(page['text'])}</pre>"]
    return parts


def _timeline(report: ReportData) -> list[str]:
    if not report.timeline:
        return []
    rows = [
        [
            _cell(time.strftime("%H:%M:%S", time.localtime(e["ts"]))),
            _cell(e.get("who")),
            _cell(e.get("host")),
            _cell(e.get("method")),
            _cell(e.get("outcome")),
        ]
        for e in report.timeline
    ]
    return ["<h2>Timeline (audit log)</h2>", _table(["time", "who", "host", "call", "outcome"], rows)]
