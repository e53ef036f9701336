"""A job over its output cap: stopped, the flood dropped, the lines it asked to keep still written."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from crashfleet.agent.jobs import JobManager
from crashfleet.agent.store import Store

# Like bpftrace: floods stdout until SIGTERM, then prints its final lines and exits.
FLOODER = textwrap.dedent("""
    import signal, sys
    def last(*_):
        sys.stdout.write("flood tail without newline")
        sys.stdout.write("\\nKEEP final 1\\nnot this\\nKEEP final 2")
        sys.exit(0)
    signal.signal(signal.SIGTERM, last)
    while True:
        sys.stdout.write("flood line\\n" * 997 + "KEEP early\\n")
""")


def run_capped(tmp_path: Path, keep: object) -> bytes:
    store = Store(str(tmp_path / "store"))
    jobs = JobManager(store, lambda method, params: None, str(tmp_path))
    job = jobs.start("flood", [sys.executable, "-c", FLOODER], duration=30, max_output=100_000, keep_past_cap=keep)  # type: ignore[arg-type]
    assert jobs.wait(job, 30)
    assert job.stop_reason == "output cap of 100000 bytes reached" and job.exit_status == 0
    return (tmp_path / "store" / job.output_id / "data").read_bytes()


def test_kept_lines_survive_the_cap(tmp_path: Path) -> None:
    data = run_capped(tmp_path, lambda line: line.startswith(b"KEEP"))
    head, marker, past = data.partition(b"\n[crashfleet: output cap of 100000 bytes reached; job stopped]\n")
    assert marker and len(head) == 100_000 and head.startswith(b"flood line\n")
    lines = past.splitlines()
    assert lines[-2:] == [b"KEEP final 1", b"KEEP final 2"]  # whole lines, the last without its newline
    assert set(lines[:-2]) <= {b"KEEP early"}  # everything else past the cap is dropped


def test_without_keep_everything_past_the_cap_is_dropped(tmp_path: Path) -> None:
    marker = b"\n[crashfleet: output cap of 100000 bytes reached; job stopped]\n"
    data = run_capped(tmp_path, None)
    assert data.endswith(marker) and len(data) == 100_000 + len(marker)
