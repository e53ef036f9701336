"""`crashfleet capture A:B` for the engineer at a terminal, on the namespace lab: a progress bar on the
terminal while the hosts capture real traffic, then the summary as tables (hosts, problems, loss)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from .conftest import tcpdumps
from .netlab import HERE, NetLab

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(180)]
DNS = [sys.executable, str(HERE / "dnsserver.py"), "query"]
CLI = [sys.executable, "-m", "crashfleet.controller"]


def env(lab: NetLab, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CRASHFLEET_SSH_KNOWN_HOSTS": str(lab.known_hosts),
        "XDG_STATE_HOME": str(tmp_path),
        "COLUMNS": "200",
    }


class Terminal:
    """stderr on a pseudo-terminal (where the progress bar draws), stdout piped; both read as they come."""

    def __init__(self, argv: list[str], environ: dict[str, str]) -> None:
        master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env=environ, text=True
        )
        os.close(slave)
        self.seen = bytearray()
        self.reader = threading.Thread(target=self._drain, args=(master,), daemon=True)
        self.reader.start()

    def _drain(self, master: int) -> None:
        try:
            while chunk := os.read(master, 4096):
                self.seen += chunk
        except OSError:  # EIO: the child closed its end
            pass
        finally:
            os.close(master)

    def finish(self, timeout: float) -> tuple[int, str, str]:
        out, _ = self.proc.communicate(timeout=timeout)
        self.reader.join(timeout)
        return self.proc.returncode, out, self.seen.decode(errors="replace")


def test_capture_shows_progress_then_the_grouped_tables(lab: NetLab, tmp_path: Path) -> None:
    term = Terminal(
        [
            *CLI,
            "capture",
            "-i",
            str(lab.inventory),
            "app01:db01",
            "--mode",
            "host",
            "--target",
            "10.77.2.2",
            "--interface",
            "data0",
            "-d",
            "4",
        ],
        env(lab, tmp_path),
    )
    requests = 0
    while term.proc.poll() is None:  # traffic all along the window, whenever tcpdump opened the device
        assert lab.exec("app01", "curl", "-sf", "-o", "/dev/null", "http://10.77.2.2/index.html").returncode == 0
        assert lab.exec("app01", *DNS, "10.77.2.2", "nope.test").stdout.strip() == "NXDOMAIN"
        requests += 1
    code, out, terminal = term.finish(timeout=60)
    assert code == 0, out + terminal
    assert requests >= 2, requests

    assert "capturing " in terminal and "[#" in terminal and "/4 s" in terminal, terminal  # the bar, drawn
    lines = out.splitlines()
    assert lines[0].startswith("capture J") and "2 host(s)" in lines[0], out
    header = next(i for i, line in enumerate(lines) if line.startswith("HOSTS"))
    assert lines[header].split() == ["HOSTS", "STATE", "PACKETS", "BYTES", "TCP", "ENDED", "HTTP", "DNS", "PROBLEMS"], (
        out
    )
    rows = {}
    for line in lines[header + 1 :]:
        if not line.strip():
            break
        rows[line.split()[0]] = line
    # One row a host, or one for both when they saw exactly the same (the target host mode: often).
    assert set(rows) in ({"app01", "db01"}, {"app01,db01"}), out
    app01 = rows.get("app01") or rows["app01,db01"]
    assert "2xx" in app01 and "NXDOMAIN" in app01, out
    problems = lines.index("Problems, ranked:")
    assert lines[problems + 1].split()[:4] == ["#", "SEVERITY", "WHERE", "PROBLEM"], out
    nxdomain = [line.split()[2] for line in lines[problems + 2 :] if "NXDOMAIN" in line and "nope.test" in line]
    assert any("app01" in where for where in nxdomain), out  # app01, or app01,db01 when both saw the same
    # The last SYN of the window, answered after tcpdump stopped, is not "no SYN/ACK".
    assert "got no SYN/ACK" not in out, out
    # Both hosts saw every packet of a healthy lab; flows before one tcpdump opened its device are not loss.
    assert "Lost between hosts:" not in out and "lost between" not in out, out
    assert "drill in: capture_packets('J" in out, out
    assert not tcpdumps(lab)


def test_capture_without_a_tty_prints_no_bar(lab: NetLab, tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "capture", "-i", str(lab.inventory), "db01", "--interface", "data0", "-d", "1"],
        capture_output=True,
        text=True,
        env=env(lab, tmp_path),
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "capturing" not in done.stderr and "\r" not in done.stderr, done.stderr
    assert "1 host(s)" in done.stdout and "HOSTS" in done.stdout, done.stdout


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["nosuch01:nosuch02"], "pattern 'nosuch01:nosuch02' matches no host"),
        (["app01:db01", "-d", "0"], "duration must be between 0 and 3600 s"),
    ],
)
def test_bad_input_is_refused_clearly(lab: NetLab, tmp_path: Path, args: list[str], said: str) -> None:
    done = subprocess.run(
        [*CLI, "capture", "-i", str(lab.inventory), *args],
        capture_output=True,
        text=True,
        env=env(lab, tmp_path),
        timeout=120,
    )
    assert done.returncode == 2 and said in done.stderr, done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_an_interface_no_host_has_lists_the_real_ones(lab: NetLab, tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "capture", "-i", str(lab.inventory), "app01:db01", "--interface", "nosuch0", "-d", "1"],
        capture_output=True,
        text=True,
        env=env(lab, tmp_path),
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "nosuch0" in done.stdout and "data0" in done.stdout, done.stdout
    assert not tcpdumps(lab)
