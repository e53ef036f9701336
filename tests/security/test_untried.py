"""The attacks nobody had tried before issue 23, each through the real controller or a real agent:
a host-pattern regex that backtracks for ages, uprobe/usdt targets through `..` and symlinks,
the reattach socket from another local user, module names from a hostile dump reaching
debuginfod and crash, crash commands with huge outputs or long `search` runs, and bpftrace
programs whose prints and maps flood the agent. Where a layer can hold alone, both are shown.
"""

from __future__ import annotations

import http.server
import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crashfleet.agent import profiles, sandbox
from crashfleet.agent.facts import tracefs_mount
from crashfleet.agent.jobs import _clean_env
from crashfleet.agent.policy import DEFAULTS, Policy
from crashfleet.controller.errors import UsageError
from crashfleet.controller.runtime import Runtime
from crashfleet.controller.settings import Settings
from crashfleet.controller.tools.fleet import fleet_hosts
from tests.dumps.agentproc import Agent, spawn, sysrq_dumps
from tests.dumps.fixture import Fixture, link_file
from tests.security.attack import Canaries
from tests.security.hostile import LAYERS, MiB, rss

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the agent's sandbox needs root")
AGENT_GROWTH = 32 * MiB
FLOOD_CAP = 8 * MiB  # max_output_bytes of the flood tests' agents


# -- a host-pattern regex from the model, evaluated in the controller -------------------------------

INVENTORY = {"all": {"hosts": {"web01": {}, "web02": {}, "db01.prod.example.com": {}}}}


@pytest.fixture
def controller(tmp_path: Path) -> Runtime:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(json.dumps(INVENTORY))
    return Runtime.create(Settings(inventory=inventory, audit_log=tmp_path / "audit.jsonl"))


@pytest.mark.parametrize(
    "pattern",
    [
        "~(.|.|.)*!",  # 3^21 paths over "db01.prod.example.com": it never ended (control in SECURITY.md)
        "~(.?)(.?)(.?)(.?)(.?)(.?)(.?)(.?)(.?)(.?)(.?)(.?)(.?)(.?)(.?)(.?)(.?)(.?)(.?)(.?)(.?).*.*.*.*!",
        "~(a+)+$",
        "~(.?){40}!",
        "~(web)\\1",
    ],
)
def test_a_host_regex_that_can_backtrack_for_ages_is_refused(controller: Runtime, pattern: str) -> None:
    """The controller is one process for every client: a regex that could take exponential time
    is refused before it runs, with what is allowed instead; a plain one still selects."""
    with pytest.raises(UsageError) as refused:
        fleet_hosts(controller, pattern)
    assert "exponential time" in refused.value.message and "~web0[1-3]" in refused.value.message
    assert [h.name for h in fleet_hosts(controller, "~web0[12]").details] == ["web01", "web02"]
    assert [h.name for h in fleet_hosts(controller, "~(web|db)[0-9]+.*$").details] == [
        "web01",
        "web02",
        "db01.prod.example.com",
    ]


# -- uprobe and usdt targets through .. and symlinks ------------------------------------------------


@pytest.fixture(scope="module")
def tracefs() -> None:
    if tracefs_mount() is None:
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], check=True)


@pytest.fixture
def outside_binary(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A program outside the system dirs, and a symlink to it from inside one (/opt)."""
    binary = tmp_path / "evil"
    shutil.copy("/bin/true", binary)
    link_dir = Path("/opt") / ("crashfleet-test-" + secrets.token_hex(4))
    link_dir.mkdir()
    (link_dir / "tool").symlink_to(binary)
    yield binary, link_dir / "tool"
    shutil.rmtree(link_dir)


@pytest.fixture(params=list(LAYERS))
def bpf_agent(request: pytest.FixtureRequest, tmp_path: Path, zipapp: Path, tracefs: None) -> Iterator[Agent]:
    agent = spawn(zipapp, tmp_path / "bpf", dict(LAYERS[request.param], max_output_bytes=FLOOD_CAP), tmp_path)
    yield agent
    agent.stop()


def test_uprobe_and_usdt_targets_outside_the_system_dirs_are_refused(
    bpf_agent: Agent, outside_binary: tuple[Path, Path]
) -> None:
    """Layer 1: `..` in a target and a symlink in a system dir to a file outside are refused by
    rule; the refusal comes before bpftrace starts."""
    binary, link = outside_binary
    for program in (
        f"uprobe:/usr/bin/../..{binary}:main {{ exit(); }}",
        f"uretprobe:/usr/lib/../..{binary}:main {{ exit(); }}",
        f"usdt:/usr/bin/../..{binary}:probe:name {{ exit(); }}",
        f"uprobe:{link}:main {{ exit(); }}",
        f"usdt:{link}:provider:probe {{ exit(); }}",
        "uprobe:/proc/self/root/usr/bin/true:main { exit(); }",
    ):
        refused = bpf_agent.error("bpftrace.run", program=program, duration=5, wait=30)
        assert refused["data"]["kind"] == "unsafe_program", (program, refused)
        assert refused["data"]["rule"] == "bpftrace.probe_target", (program, refused)


def test_the_sandbox_alone_keeps_bpftrace_from_a_binary_outside_the_system_dirs(
    tmp_path: Path, outside_binary: tuple[Path, Path], tracefs: None
) -> None:
    """Layer 2 alone: bpftrace given the target straight (no check) cannot open it to attach."""
    binary, link = outside_binary
    work = tmp_path / "work"
    work.mkdir()
    preexec = sandbox.preexec(profiles.bpftrace(Policy(dict(DEFAULTS), None), str(work)), "/usr/bin/bpftrace")
    for target in (binary, link):
        done = subprocess.run(
            ["/usr/bin/bpftrace", "-e", f"uprobe:{target}:main {{ exit(); }}"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=work,
            env=_clean_env(),
            preexec_fn=preexec,
            start_new_session=True,
        )
        assert done.returncode != 0 and "Attaching" not in done.stdout, done
    sandbox.release(preexec)


# -- the reattach socket from another local user -------------------------------------------------

NOBODY_CONNECT = """
import json, os, socket, sys
path, fd = sys.argv[1], os.open(os.path.dirname(sys.argv[1]), os.O_PATH)
os.chdir(os.path.dirname(path))  # a long path does not fit sun_path: from inside its dir instead
os.setgroups([]); os.setgid(65534); os.setuid(65534)
found = {}
for how, where in (("path", os.path.basename(path)), ("dir-fd", "/proc/self/fd/%d/%s" % (fd, os.path.basename(path)))):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(where)
    except OSError as exc:
        found[how] = exc.errno
        continue
    try:  # connected: does the agent answer a ping?
        s.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {}}\\n')
        s.settimeout(60)
        found[how] = "answered" if s.recv(4096) else "closed"
    except OSError:  # EPIPE, ECONNRESET: closed by the agent
        found[how] = "closed"
print(json.dumps(found))
"""


def test_the_reattach_socket_refuses_another_local_user(zipapp: Path, tmp_path: Path) -> None:
    """The socket is 0600 in a 0700 dir: another user cannot connect, by path or through a
    directory fd opened for it. With the modes loosened (an admin's mistake), the agent still
    closes the connection: the peer's uid (SO_PEERCRED) is not its own."""
    agent = spawn(zipapp, tmp_path / "lease", {"job_lease": 60}, tmp_path)
    try:
        agent.result("hello", controller="0123456789abcdef")
        found = list((tmp_path / "lease" / "agent" / "run").glob("*.sock"))
        assert len(found) == 1, found
        sock = found[0]
        assert (sock.stat().st_mode & 0o777, sock.parent.stat().st_mode & 0o777) == (0o600, 0o700)
        assert _as_nobody(sock) == {"path": 13, "dir-fd": 13}  # EACCES both ways
        # Loosened on the socket and its dir only: nobody reaches them from inside the dir, or through
        # a dir fd opened for it, so the dirs above stay as they are.
        modes = [(p, stat.S_IMODE(p.stat().st_mode)) for p in (sock, sock.parent)]
        try:
            for path, mode in modes:
                path.chmod(mode | (0o666 if path == sock else 0o711))
            assert _as_nobody(sock) == {"path": "closed", "dir-fd": "closed"}
        finally:
            for path, mode in modes:
                path.chmod(mode)
        assert "time" in agent.result("ping")
    finally:
        agent.stop()


def _as_nobody(sock: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", NOBODY_CONNECT, str(sock)], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


# -- module names from a hostile dump ------------------------------------------------------------

MODULE = b"qemu_fw_cfg\0"  # the fixture's one loaded module
HOSTILE_NAME = b"../../etc/x\0"  # as long: the dump's layout is unchanged


class _Recorder(http.server.BaseHTTPRequestHandler):
    paths: list[str] = []

    def do_GET(self) -> None:
        _Recorder.paths.append(self.path)
        self.send_error(404)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[str]]]:
    _Recorder.paths = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.paths
    server.shutdown()
    server.server_close()


def hostile_dump(fixture: Fixture, directory: Path) -> Path:
    """The sysrq dump with its module's name rewritten to a path, everywhere in its memory."""
    directory.mkdir(parents=True)
    data = fixture.vmcore("sysrq").read_bytes()
    assert data.count(MODULE) >= 1
    path = directory / "vmcore"
    path.write_bytes(data.replace(MODULE, HOSTILE_NAME))
    link_file(fixture.vmlinux, directory / fixture.vmlinux.name)
    return path


def test_a_module_name_from_a_hostile_dump_reaches_no_url_path_or_crash_command(
    zipapp: Path, dump_fixture: Fixture, tmp_path: Path, recorder: tuple[str, list[str]], canaries: Canaries
) -> None:
    """drgn reads the module's name from the dump's memory: "../../etc/x" never reaches a
    debuginfod request, a cache path or crash's `mod -s`; the open says which module it left out.
    The unpatched dump's module is asked for by its build id (the control)."""
    url, requests = recorder
    policy = {"debuginfod_urls": [url], "debuginfod_cache_dir": str(tmp_path / "cache")}
    agent = spawn(zipapp, tmp_path / "plain", policy, sysrq_dumps(dump_fixture, tmp_path / "dumps").parent)
    try:
        plain = agent.result("dumps.open", vmcore=str(tmp_path / "dumps" / "vmcore"), modules=True, fetch_wait=60)
    finally:
        agent.stop()
    assert len(requests) == 1 and requests[0].startswith("/buildid/"), requests  # the control
    assert any("qemu_fw_cfg" in n and "not on the debuginfod servers" in n for n in plain["notes"]), plain["notes"]
    vmcore = hostile_dump(dump_fixture, tmp_path / "hostile")
    agent = spawn(zipapp, tmp_path / "hostile-agent", policy, vmcore.parent)
    try:
        opened = agent.result("dumps.open", vmcore=str(vmcore), modules=True, fetch_wait=60)
        mods = agent.result("dumps.crash", session_id=opened["session_id"], command="mod")
    finally:
        agent.stop()
    assert len(requests) == 1, requests  # nothing more asked for
    assert any("'../../etc/x'" in n and "name not usable" in n for n in opened["notes"]), opened["notes"]
    assert opened["modules"] == {"loaded": [], "failed": {}}
    assert "../../etc/x" in mods["page"]["text"]  # crash shows it as data, and that is all
    assert not (tmp_path / "cache").exists() or not any(".." in str(p) for p in (tmp_path / "cache").rglob("*"))
    assert not Path("/etc/x").exists()
    canaries.assert_none()


# -- crash commands with huge outputs or long searches -------------------------------------------


@pytest.fixture(scope="module", params=list(LAYERS))
def crash_agent(
    request: pytest.FixtureRequest, zipapp: Path, dump_fixture: Fixture, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Agent, str]]:
    base = tmp_path_factory.mktemp("floods-" + request.param)
    vmcore = sysrq_dumps(dump_fixture, base / "dumps")
    agent = spawn(zipapp, base, dict(LAYERS[request.param], max_output_bytes=FLOOD_CAP), vmcore.parent)
    sid = agent.result("dumps.open", vmcore=str(vmcore))["session_id"]
    yield agent, sid
    agent.stop()


@pytest.mark.parametrize("command", ["search -p 0", "rd -p -a 0 100000000"])
def test_a_crash_command_with_a_huge_output_stops_at_its_cap(crash_agent: tuple[Agent, str], command: str) -> None:
    """What crash prints for one command is capped at max_output_bytes: the command is
    interrupted (crash restarted if ^C does not stop it), the answer names the cap, the agent's
    memory stays, the session answers."""
    agent, sid = crash_agent
    before = rss(agent.proc.pid)
    answer = agent.result("dumps.crash", session_id=sid, command=command, timeout=600)
    assert answer["cap"] == "output" and answer["ended"] in ("interrupted", "restarted"), answer
    assert answer["bytes"] <= FLOOD_CAP + 4096
    assert rss(agent.proc.pid) < before + AGENT_GROWTH
    assert "sysrq triggered crash" in agent.result("dumps.crash", session_id=sid, command="sys")["page"]["text"]


# Each takes seconds at the least (three strings through the kernel's memory: ~9 s on a quiet machine,
# one alone was under 3 s once), many times the 1 s timeout.
@pytest.mark.parametrize("command", ["search -k -c zzzqqqxxyy qqqzzzyyxx wwwvvvuuut", "rd -p 0 100000000 | grep -c 0"])
def test_a_long_search_or_filtered_flood_ends_at_its_timeout(crash_agent: tuple[Agent, str], command: str) -> None:
    """A long search, or a flood its pipes filter out (read linearly, nothing held: `| grep -c`
    may count over a long output), ends at the command's timeout; the session answers."""
    agent, sid = crash_agent
    before = rss(agent.proc.pid)
    answer = agent.result("dumps.crash", session_id=sid, command=command, timeout=1)
    assert answer["ended"] in ("interrupted", "restarted") and "timeout" in answer["note"], answer
    assert rss(agent.proc.pid) < before + AGENT_GROWTH
    assert "sysrq triggered crash" in agent.result("dumps.crash", session_id=sid, command="sys")["page"]["text"]


# -- bpftrace programs whose prints and maps flood the agent ------------------------------------

SYSCALLS = "tracepoint:raw_syscalls:sys_enter"
FLOODS = {
    "printf": SYSCALLS + ' { printf("%d %s %d %s\\n", pid, comm, args->id, "xxxxxxxxxxxxxxxx"); }',
    "print-map": SYSCALLS + " { @[tid, args->id, nsecs] = count(); } interval:ms:20 { print(@); }",
    "big-maps": SYSCALLS + " { @[tid, args->id, nsecs] = count(); @h[nsecs, comm] = hist(nsecs); }",
}


@pytest.mark.parametrize("program", list(FLOODS))
def test_a_bpftrace_flood_stops_at_the_output_cap_and_the_answer_stays_small(bpf_agent: Agent, program: str) -> None:
    """Prints and printed maps stop the job at max_output_bytes; maps at the end are read within
    bpftrace's pinned map size and answered within the answer's caps; the agent's memory stays."""
    before = rss(bpf_agent.proc.pid)
    done = bpf_agent.result("bpftrace.run", program=FLOODS[program], duration=10, wait=120)
    assert done["state"] == "done", done
    assert done["bytes"] <= FLOOD_CAP + 4 * MiB + 4096  # the cap, and whole map lines kept past it
    if program != "big-maps":
        assert done["stop_reason"] == f"output cap of {FLOOD_CAP} bytes reached", done
    assert len(json.dumps(done)) < 512 * 1024
    assert rss(bpf_agent.proc.pid) < before + AGENT_GROWTH
    assert "time" in bpf_agent.result("ping")
