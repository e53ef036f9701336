"""Merging bpftrace maps across hosts: on JSON captured from real bpftrace 0.17 runs on this kernel, and
on the maps three rig hosts' agents parsed from one bpftrace_run (tests/unit/data/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crashfleet.agent.bpftrace import map_kinds, read_json_output
from crashfleet.agent.bpftrace_safety import blank_comments_and_strings, check_program
from crashfleet.agent.errors import AgentError
from crashfleet.controller.tools.bpftrace_merge import add_buckets, find_outliers, merge_maps, percentile

DATA = Path(__file__).parent / "data"
# The program the captures came from (host 1 lacks @bycomm).
PROGRAM = (
    "tracepoint:raw_syscalls:sys_enter { @calls = count(); @ids[args->id] = count(); "
    "@lat = hist(args->id); @lin = lhist(args->id, 0, 400, 100); @st = stats(args->id); "
    "@avg = avg(args->id); @lo = min(args->id); @hi = max(args->id); @s = sum(args->id); }\n"
    "tracepoint:sched:sched_switch { @bycomm[args->prev_comm] = hist(args->prev_pid); }"
)


@pytest.fixture
def hosts() -> dict[str, dict[str, Any]]:
    kinds = map_kinds(PROGRAM)
    return {f"web0{n}": read_json_output(str(DATA / f"bpftrace-syscalls-{n}.jsonl"), kinds)["maps"] for n in (1, 2, 3)}


def test_kinds_come_from_the_program() -> None:
    assert map_kinds(PROGRAM) == {
        "@calls": "count",
        "@ids": "count",
        "@lat": "hist",
        "@lin": "lhist",
        "@st": "stats",
        "@avg": "avg",
        "@lo": "min",
        "@hi": "max",
        "@s": "sum",
        "@bycomm": "hist",
    }
    assert map_kinds('BEGIN { printf("@x = count()"); } // @y = sum(1)') == {}


def test_scalars_merge_by_their_aggregation(hosts: dict[str, dict[str, Any]]) -> None:
    merged = {m.name: m for m in merge_maps(hosts)}
    values = {h: {name: entry["value"] for name, entry in maps.items()} for h, maps in hosts.items()}
    assert merged["@calls"].value == sum(v["@calls"] for v in values.values())
    assert merged["@s"].value == sum(v["@s"] for v in values.values())
    assert merged["@lo"].value == min(v["@lo"] for v in values.values())
    assert merged["@hi"].value == max(v["@hi"] for v in values.values())
    count = sum(v["@st"]["count"] for v in values.values())
    total = sum(v["@st"]["total"] for v in values.values())
    assert merged["@st"].value == total // count
    assert merged["@avg"].note and "unweighted" in merged["@avg"].note
    assert {f.host: f.value for f in merged["@calls"].per_host} == {h: v["@calls"] for h, v in values.items()}
    ids = merged["@ids"]
    some_key = next(iter(values["web01"]["@ids"]))
    expected = sum(v["@ids"].get(some_key, 0) for v in values.values())
    assert ids.key_count == len(set().union(*(v["@ids"] for v in values.values())))
    assert ids.keys is not None and len(ids.keys) == 20
    if some_key in ids.keys:
        assert ids.keys[some_key] == expected
    assert list(ids.keys.values()) == sorted(ids.keys.values(), reverse=True)


def test_histograms_add_bucket_wise(hosts: dict[str, dict[str, Any]]) -> None:
    merged = {m.name: m for m in merge_maps(hosts)}
    for name in ("@lat", "@lin"):
        hist = merged[name]
        assert hist.histogram is not None
        assert hist.count == sum(sum(b["count"] for b in maps[name]["value"]) for maps in hosts.values())
        for bucket in hist.histogram:
            assert bucket.count == sum(
                b["count"]
                for maps in hosts.values()
                for b in maps[name]["value"]
                if (b.get("min"), b.get("max")) == (bucket.min, bucket.max)
            )
    assert merged["@lin"].histogram[-1].max is None  # lhist's open-ended top bucket survives
    bycomm = merged["@bycomm"]
    assert bycomm.hosts == "web[02-03]" and bycomm.keys and bycomm.key_count
    assert bycomm.count == sum(
        b["count"]
        for maps in hosts.values()
        if "@bycomm" in maps
        for buckets in maps["@bycomm"]["value"].values()
        for b in buckets
    )
    assert sum(bycomm.keys.values()) <= bycomm.count


def test_percentiles_are_bucket_upper_bounds() -> None:
    buckets = add_buckets(
        [], [{"min": 0, "max": 0, "count": 50}, {"min": 1, "max": 1, "count": 49}, {"min": 8, "max": 15, "count": 1}]
    )
    assert percentile(buckets, 0.5, 100) == 0 and percentile(buckets, 0.99, 100) == 1
    assert percentile(buckets, 1.0, 100) == 15 and percentile([], 0.5, 0) is None


def test_outlier_rule() -> None:
    assert [o.host for o in find_outliers({"a": 2, "b": 3, "c": 12}, "value")] == ["c"]
    assert find_outliers({"a": 10, "b": 11, "c": 12}, "value") == []
    assert find_outliers({"a": 1000, "b": 1001, "c": 1010}, "value") == []  # z high, but only 1% off
    assert [o.host for o in find_outliers({"a": 5, "b": 5, "c": 5, "d": 9}, "p99")] == ["d"]
    assert find_outliers({"a": 1, "b": 100}, "value") == []  # two hosts: no majority to stand out from


@pytest.fixture
def rig() -> dict[str, dict[str, Any]]:
    """Each rig host's maps: web01 ran `uname -a` twice, web02 three times, web03 eight times and
    `cat /proc/meminfo` four times; @execs counts the execs by comm, @write_bytes their write sizes."""
    return {host: json.loads((DATA / f"bpftrace-maps-{host}.json").read_text()) for host in ("web01", "web02", "web03")}


def test_rig_counts_sum_per_key_and_per_host(rig: dict[str, dict[str, Any]]) -> None:
    execs = {m.name: m for m in merge_maps(rig)}["@execs"]
    assert (execs.kind, execs.hosts, execs.value) == ("count", "web[01-03]", None)  # keyed: no single value
    assert execs.keys == {"uname": 2 + 3 + 8, "cat": 4} and execs.key_count == 2
    assert [(f.host, f.value) for f in execs.per_host] == [("web03", 12), ("web02", 3), ("web01", 2)]
    # Totals 2, 3, 12: median 3, MAD = median(1, 0, 9) = 1, web03's z = 0.6745 * 9 / 1 = 6.1 > 3.5.
    [outlier] = execs.outliers
    assert (outlier.host, outlier.figure, outlier.value, outlier.fleet_median) == ("web03", "total", 12, 3)
    assert "z-score 6.1" in outlier.why


def test_rig_histograms_add_bucket_wise(rig: dict[str, dict[str, Any]]) -> None:
    hist = {m.name: m for m in merge_maps(rig)}["@write_bytes"]
    # uname writes one 64..127 byte line, cat one 1..2 KiB /proc/meminfo; web03's empty buckets stay.
    assert [(b.min, b.max, b.count) for b in hist.histogram or []] == [
        (64, 127, 2 + 3 + 8),
        (128, 255, 0),
        (256, 511, 0),
        (512, 1023, 0),
        (1024, 2047, 4),
    ]
    # Of 17 writes the 9th (p50) falls in 64..127, the 17th (p99: 16.83 rounded up) in 1024..2047.
    assert (hist.count, hist.p50, hist.p99) == (17, 127, 2047)
    figures = {f.host: (f.count, f.p50, f.p99) for f in hist.per_host}
    assert figures == {"web01": (2, 127, 127), "web02": (3, 127, 127), "web03": (12, 127, 2047)}
    assert hist.per_host[0].host == "web03"  # highest p99 first
    # p99s 127, 127, 2047: MAD 0, so the 20% rule alone.
    [outlier] = hist.outliers
    assert (outlier.host, outlier.figure, outlier.value, outlier.fleet_median) == ("web03", "p99", 2047, 127)
    assert "most hosts agree exactly" in outlier.why


def test_rig_two_hosts_have_no_outlier(rig: dict[str, dict[str, Any]]) -> None:
    merged = merge_maps({host: rig[host] for host in ("web01", "web03")})
    assert [(m.name, m.hosts, m.outliers) for m in merged] == [
        ("@execs", "web[01,03]", []),
        ("@write_bytes", "web[01,03]", []),
    ]
    assert {m.name: m.count or m.keys for m in merged} == {"@execs": {"uname": 10, "cat": 4}, "@write_bytes": 14}


@pytest.mark.parametrize(
    "program, construct",
    [
        ('BEGIN { system ("id"); }', "system"),
        ("BEGIN { signal/* hidden */(9); }", "signal"),
        ('#include "secret.h"\nBEGIN {}', "#include"),
        ("#include <../../etc/shadow>\nBEGIN {}", "#include"),
        ("aw:0x1:8:w { }", "aw"),
    ],
)
def test_unsafe_constructs(program: str, construct: str) -> None:
    with pytest.raises(AgentError) as caught:
        check_program(program)
    assert caught.value.kind == "unsafe_program" and caught.value.extra["construct"] == construct


@pytest.mark.parametrize(
    "program",
    [
        'BEGIN { printf("system(cat(\\"x\\"))\\n"); } // signal(9)',
        "#include <linux/sched.h>\ntracepoint:signal:signal_generate { @system[comm] = count(); $cat = 1; }",
        "/* override( */ tracepoint:sched:sched_switch { @ = count(); }",
    ],
)
def test_safe_programs_pass(program: str) -> None:
    check_program(program)


def test_blanking_keeps_positions() -> None:
    program = 'a /* x\ny */ "s\\"t" // z\nb'
    blanked = blank_comments_and_strings(program)
    assert len(blanked) == len(program) and blanked.count("\n") == 2 and blanked.strip().startswith("a")
    assert "x" not in blanked and "s" not in blanked and blanked.endswith("b")
