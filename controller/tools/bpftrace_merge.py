"""Merge bpftrace maps (from `-f json`) across hosts: one fleet-wide figure, each host's, the outliers.

Pure functions, no I/O. Input per host: {map name: {"type": map|hist|stats, "kind": the
aggregation seen in the program (or None), "value": bpftrace's JSON value}}.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from typing import Any

from ..grouping import fold
from .bpftrace_models import Bucket, HostFigure, MergedMap, Outlier

TOP_KEYS = 20
MAX_HOSTS_LISTED = 50
Z_LIMIT = 3.5  # modified z-score (Iglewicz and Hoaglin) beyond which a host is an outlier
MIN_RELATIVE = 0.2  # ...and at least this far from the median, relative to it
OUTLIER_RULE = (
    f"a host is an outlier when its figure (p99 for histograms, else the value or the total "
    f"over keys) has a modified z-score 0.6745*|x-median|/MAD above {Z_LIMIT} and differs from "
    f"the fleet median by over {MIN_RELATIVE:.0%}; when MAD is 0, the {MIN_RELATIVE:.0%} rule "
    f"alone; needs 3 or more hosts"
)
Hist = list[dict[str, Any]]
Keyed = dict[str, Any]


def merge_maps(per_host: dict[str, dict[str, Any]]) -> list[MergedMap]:
    """Every map any host printed, merged."""
    names = sorted({name for maps in per_host.values() for name in maps})
    return [merge_one(name, {h: m[name] for h, m in per_host.items() if name in m}) for name in names]


def merge_one(name: str, entries: dict[str, dict[str, Any]]) -> MergedMap:
    kind = _kind(next(iter(entries.values())))
    keyed = {host: _keyed(kind, entry["value"]) for host, entry in entries.items()}
    dropped = sum(int(e.get("keys_dropped") or 0) for e in entries.values())
    result = MergedMap(name=name, kind=kind, hosts=fold(entries))
    notes = []
    if kind in ("hist", "lhist"):
        _merge_hist(result, keyed)
    else:
        _merge_scalar(result, kind, keyed)
        if kind == "avg":
            notes.append("fleet avg is the unweighted mean of host averages; use stats() for an exact one")
    if dropped:
        notes.append(f"{dropped} small keys were left out by hosts (over 1000 keys per map)")
    result.note = "; ".join(notes) or None
    return result


def outlier_histograms(per_host: dict[str, dict[str, Any]], merged: list[MergedMap]) -> dict[str, dict[str, Hist]]:
    """Each histogram's outlier hosts' own buckets (their keys summed): what a view draws beside the
    fleet's. The answer itself names the outliers with their figures; this is for the eyes."""
    found: dict[str, dict[str, Hist]] = {}
    for merged_map in merged:
        if merged_map.histogram is None or not merged_map.outliers:
            continue
        hosts = sorted({o.host for o in merged_map.outliers if merged_map.name in per_host.get(o.host, {})})
        found[merged_map.name] = {
            host: add_buckets([], _all_buckets(_keyed(merged_map.kind, per_host[host][merged_map.name]["value"])))
            for host in hosts
        }
    return found


def _all_buckets(keyed: Keyed) -> list[dict[str, Any]]:
    return [bucket for buckets in keyed.values() for bucket in buckets]


def _kind(entry: dict[str, Any]) -> str:
    """The aggregation: from the program when known, else from bpftrace's JSON type."""
    if entry.get("kind"):
        return str(entry["kind"])
    if entry["type"] == "hist":
        return "hist"
    if entry["type"] == "stats":
        value = entry["value"]
        return (
            "stats"
            if _is_stats(value) or (isinstance(value, dict) and all(_is_stats(v) for v in value.values()))
            else "avg"
        )
    return "value"


def _is_stats(value: Any) -> bool:
    return isinstance(value, dict) and {"count", "total"} <= set(value)


def _keyed(kind: str, value: Any) -> Keyed:
    """Every map as {key: value}; an unkeyed map has the single key ''."""
    if kind in ("hist", "lhist"):
        return {"": value} if isinstance(value, list) else dict(value)
    if kind == "stats":
        return {"": value} if _is_stats(value) else dict(value)
    return dict(value) if isinstance(value, dict) else {"": value}


# -- histograms


def _merge_hist(result: MergedMap, keyed: dict[str, Keyed]) -> None:
    per_key: dict[str, Hist] = {}
    figures: dict[str, HostFigure] = {}
    for host, keys in keyed.items():
        for key, buckets in keys.items():
            per_key[key] = add_buckets(per_key.get(key, []), buckets)
        merged_host = add_buckets([], [b for buckets in keys.values() for b in buckets])
        count, p50, p99 = summarise(merged_host)
        figures[host] = HostFigure(host=host, count=count, p50=p50, p99=p99)
    overall = add_buckets([], [b for buckets in per_key.values() for b in buckets])
    result.histogram = [Bucket(**b) for b in overall]
    result.count, result.p50, result.p99 = summarise(overall)
    if len(per_key) > 1 or "" not in per_key:
        totals = {key: float(sum(b["count"] for b in buckets)) for key, buckets in per_key.items()}
        result.keys, result.key_count = _top(totals, reverse=True), len(totals)
    result.per_host = _listed(figures.values(), lambda f: f.p99 or 0)
    result.outliers = find_outliers({h: f.p99 for h, f in figures.items() if f.p99 is not None}, "p99")


def add_buckets(into: Hist, buckets: Iterable[dict[str, Any]]) -> Hist:
    """Bucket-wise sum, keyed by (min, max); sorted by lower bound."""
    table = {(b.get("min"), b.get("max")): dict(b) for b in into}
    for bucket in buckets:
        bound = (bucket.get("min"), bucket.get("max"))
        if bound in table:
            table[bound]["count"] += int(bucket.get("count", 0))
        else:
            table[bound] = {"min": bound[0], "max": bound[1], "count": int(bucket.get("count", 0))}
    return sorted(table.values(), key=_bucket_order)


def _bucket_order(bucket: dict[str, Any]) -> tuple[float, float]:
    low = bucket.get("min")
    high = bucket.get("max")
    return (float("-inf") if low is None else low, float("inf") if high is None else high)


def summarise(buckets: Hist) -> tuple[int, float | None, float | None]:
    """(count, p50, p99); a percentile is the upper bound of the bucket it falls in."""
    total = sum(b["count"] for b in buckets)
    return total, percentile(buckets, 0.5, total), percentile(buckets, 0.99, total)


def percentile(buckets: Hist, q: float, total: int) -> float | None:
    if total <= 0:
        return None
    seen = 0
    for bucket in buckets:
        seen += bucket["count"]
        if seen >= q * total:
            bound = bucket.get("max") if bucket.get("max") is not None else bucket.get("min")
            return None if bound is None else float(bound)
    return None


# -- scalars: count, sum, min, max, avg, stats, plain values


def _merge_scalar(result: MergedMap, kind: str, keyed: dict[str, Keyed]) -> None:
    per_key: dict[str, list[Any]] = {}
    for keys in keyed.values():
        for key, value in keys.items():
            per_key.setdefault(key, []).append(value)
    merged = {key: combine(kind, values) for key, values in per_key.items()}
    figures = {host: combine(kind, list(keys.values())) for host, keys in keyed.items()}
    if set(merged) == {""}:
        result.value = _number(kind, merged[""])
        figure = "value"
    else:
        numbers = {key: _number(kind, value) for key, value in merged.items()}
        result.keys, result.key_count = _top(numbers, reverse=kind != "min"), len(numbers)
        figure = "total" if kind in ("count", "sum", "value", "stats") else kind
    host_numbers = {host: _number(kind, value) for host, value in figures.items()}
    result.per_host = _listed([HostFigure(host=h, value=v) for h, v in host_numbers.items()], lambda f: f.value or 0)
    result.outliers = find_outliers(host_numbers, figure)


def combine(kind: str, values: list[Any]) -> Any:
    """Merge one key's values from several hosts (or one host's values over its keys)."""
    if kind == "stats":
        count = sum(int(v.get("count", 0)) for v in values)
        total = sum(int(v.get("total", 0)) for v in values)
        return {"count": count, "total": total, "average": total // count if count else 0}
    numbers = [float(v) for v in values]
    if kind == "min":
        return min(numbers)
    if kind == "max":
        return max(numbers)
    if kind == "avg":
        return statistics.fmean(numbers)
    return sum(numbers)


def _number(kind: str, value: Any) -> float:
    return float(value["average"] if kind == "stats" else value)


def _top(values: dict[str, float], reverse: bool) -> dict[str, float]:
    ranked = sorted(values.items(), key=lambda kv: (-kv[1] if reverse else kv[1], kv[0]))
    return dict(ranked[:TOP_KEYS])


def _listed(figures: Iterable[HostFigure], order: Callable[[HostFigure], float]) -> list[HostFigure]:
    return sorted(figures, key=lambda f: (-order(f), f.host))[:MAX_HOSTS_LISTED]


# -- outliers


def find_outliers(values: dict[str, float], figure: str) -> list[Outlier]:
    """Hosts whose figure stands out from the fleet's (see OUTLIER_RULE)."""
    if len(values) < 3:
        return []
    median = statistics.median(values.values())
    mad = statistics.median(abs(v - median) for v in values.values())
    found = []
    for host, value in sorted(values.items()):
        distance = abs(value - median)
        if distance <= MIN_RELATIVE * abs(median) or distance == 0:
            continue
        if mad == 0:
            why = f"{figure} {value:g} vs fleet median {median:g} (most hosts agree exactly)"
        else:
            score = 0.6745 * distance / mad
            if score <= Z_LIMIT:
                continue
            why = f"{figure} {value:g} vs fleet median {median:g} (modified z-score {score:.1f})"
        found.append(Outlier(host=host, figure=figure, value=value, fleet_median=median, why=why))
    return found
