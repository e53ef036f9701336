"""A real elfutils `debuginfod` on 127.0.0.1 for the dump tests and the benchmark, indexing the
fixture's -dbg .deb (`-U`). Its index is kept under /var/cache/crashfleet-tests/debuginfod, so
only the first run on a machine pays the scan (~10 s idle, over a minute on a loaded machine).
Started by the caller, stopped by pid."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INDEX = Path("/var/cache/crashfleet-tests/debuginfod")
READY_TIMEOUT = 900.0  # the first scan decompresses 283 MB of .deb on a busy machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\S+) (\S+)$", text, re.M)}


def _indexed(url: str) -> bool:
    """One traversal done and nothing left to scan: every file under the dir is in the index."""
    m = _metrics(url)  # a scan metric appears only once a scan thread has had work: absent is idle
    return (
        m.get('thread_work_total{role="traverse"}', 0) >= 1
        and m.get('thread_work_pending{role="scan"}', 0) == 0
        and m.get('thread_busy{role="scan"}', 0) == 0
    )


@contextmanager
def serving(deb_dir: Path | None, name: str) -> Iterator[str]:
    """debuginfod scanning deb_dir (None: an empty dir, a server that has nothing), its URL."""
    if shutil.which("debuginfod") is None:
        raise RuntimeError("debuginfod is not installed: apt-get install debuginfod libarchive-tools")
    work = INDEX / name
    work.mkdir(parents=True, exist_ok=True)
    scan = deb_dir or work / "empty"
    scan.mkdir(exist_ok=True)
    port = free_port()
    log = open(work / "server.log", "wb")
    # -t 0 -g 0: one traversal, no rescans or grooming while the tests run.
    proc = subprocess.Popen(
        ["debuginfod", "-U", "-d", str(work / "index.sqlite"), "-p", str(port), "-t", "0", "-g", "0", str(scan)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(proc, url, work / "server.log")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"debuginfod exited ({proc.returncode}): {log.read_text()[-1500:]}")
        try:
            if _indexed(url):
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.5)
    raise RuntimeError(f"debuginfod did not finish indexing within {READY_TIMEOUT:g} s: {log.read_text()[-1500:]}")
