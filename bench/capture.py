"""Capture summary benchmark: crashfleet's summariser against tshark and scapy, one pcap, one run.

    .venv/bin/python bench/capture.py [--packets 1000000] [--scapy-packets N] [--json out.json]

The pcap (a realistic mix: web and TLS conversations with 1% retransmissions, DNS with
NXDOMAIN and lost queries, refused and unanswered connections; snaplen 320 like a
default capture) is generated once and cached in /var/cache/crashfleet-bench/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.capture.synth lives in the checkout

from crashfleet.agent.pcap import reader, report, summary  # noqa: E402
from tests.capture import synth  # noqa: E402

CACHE = Path("/var/cache/crashfleet-bench")
SCAPY_PY = "/usr/bin/python3"  # Debian's python3-scapy
SCAPY_LOOP = """
import sys, time
from scapy.all import PcapReader
limit = int(sys.argv[2]); n = 0; t = time.perf_counter()
for pkt in PcapReader(sys.argv[1]):
    pkt.summary()  # touch the layers, as a summariser would
    n += 1
    if n >= limit:
        break
print(n, time.perf_counter() - t)
"""


def pcap(packets: int) -> Path:
    digest = hashlib.sha256(Path(synth.__file__).read_bytes()).hexdigest()[:12]
    path = CACHE / f"mixed-{packets}-{digest}.pcap"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as out:
            synth.mixed(synth.PcapWriter(out, snaplen=320), packets)
        tmp.replace(path)
    return path


def ours(path: Path) -> tuple[float, str]:
    started = time.perf_counter()
    out = report.build(summary.summarise(reader.records([str(path)])))
    return time.perf_counter() - started, json.dumps(out, separators=(",", ":"))


def tshark(path: Path) -> tuple[float, int]:
    argv = ["tshark", "-q", "-z", "conv,tcp", "-z", "io,phs", "-z", "expert", "-r", str(path)]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, check=True)
    return time.perf_counter() - started, len(done.stdout)


def scapy(path: Path, limit: int) -> tuple[float, int]:
    done = subprocess.run(
        [SCAPY_PY, "-c", SCAPY_LOOP, str(path), str(limit)], capture_output=True, text=True, check=True
    )
    count, seconds = done.stdout.split()
    return float(seconds), int(count)


def tcpdump_text(path: Path) -> int:
    with subprocess.Popen(
        ["tcpdump", "-n", "-r", str(path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    ) as proc:
        assert proc.stdout is not None
        return sum(len(chunk) for chunk in iter(lambda: proc.stdout.read(1 << 20), b""))  # type: ignore[union-attr]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument(
        "--scapy-packets",
        type=int,
        default=0,
        help="scapy reads only this many (0: all), its time is then scaled to the whole file",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    for tool in ("tshark", "tcpdump"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing")
    path = pcap(args.packets)
    print(f"pcap: {path} ({path.stat().st_size / 1e6:.0f} MB, {args.packets} packets)", file=sys.stderr)
    our_s, text = ours(path)
    print(f"ours: {our_s:.2f} s", file=sys.stderr)
    tshark_s, tshark_bytes = tshark(path)
    print(f"tshark: {tshark_s:.2f} s", file=sys.stderr)
    limit = args.scapy_packets or args.packets
    scapy_s, scapy_n = scapy(path, limit)
    scapy_full = scapy_s * args.packets / scapy_n
    print(f"scapy: {scapy_s:.2f} s for {scapy_n} packets", file=sys.stderr)
    dump_bytes = tcpdump_text(path)
    result: dict[str, Any] = {
        "packets": args.packets,
        "pcap_bytes": path.stat().st_size,
        "ours_s": round(our_s, 2),
        "tshark_s": round(tshark_s, 2),
        "tshark_output_bytes": tshark_bytes,
        "scapy_s": round(scapy_full, 2),
        "scapy_measured_packets": scapy_n,
        "summary_bytes": len(text),
        "summary_tokens": json.loads(text)["size_tokens"],
        "tcpdump_text_bytes": dump_bytes,
        "vs_tshark": round(tshark_s / our_s, 2),
        "vs_scapy": round(scapy_full / our_s, 1),
        "smaller_than_tcpdump_text": round(dump_bytes / len(text)),
    }
    result["targets"] = {
        "as fast as tshark": result["vs_tshark"] >= 1,
        "15x scapy": result["vs_scapy"] >= 15,
        "100x smaller than tcpdump -r": result["smaller_than_tcpdump_text"] >= 100,
    }
    scaled = "" if scapy_n == args.packets else f" (measured on {scapy_n}, scaled)"
    print(f"| summary of {args.packets:,} packets | seconds | ours is |\n|---|---|---|")
    print(f"| crashfleet (pure Python, one pass) | {our_s:.2f} | - |")
    print(f"| tshark -q -z conv,tcp -z io,phs -z expert | {tshark_s:.2f} | {result['vs_tshark']}x faster |")
    print(f"| scapy PcapReader loop{scaled} | {scapy_full:.2f} | {result['vs_scapy']}x faster |")
    print(
        f"\nsummary {len(text):,} bytes (~{result['summary_tokens']} tokens) vs tcpdump -r text "
        f"{dump_bytes:,} bytes: {result['smaller_than_tcpdump_text']:,}x smaller"
    )
    print("targets: " + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in result["targets"].items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
