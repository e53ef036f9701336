"""What killed this host, named from its kernel log, read from the cheapest source that has it.

With a dump (the newest in the dump dirs): the dmesg file kdump wrote beside it, then
`makedumpfile --dump-dmesg` (kdump-compressed dumps), then the printk ring buffer of an ELF dump
read with VMCOREINFO alone (printk.py: ~0.02 s, no vmlinux needed), then drgn's printk reader
(~1 s and ~250 MB, with a matching vmlinux: kernels before 5.10, other arches), and only then
crash's `log` (seconds of CPU and most of a GB: a last resort). Without a dump (most cloud VMs
have no kdump): a pstore record (efi-pstore, ramoops; systemd-pstore's copies), then the previous
boot's kernel messages in the persistent journal. The answer says which source it came from and
what was tried; the log's report is parsed by oops.py and kept on the host as an output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import profiles, sandbox
from ..jobs import _clean_env
from . import discovery, dmesg, oops, printk, vmlinux

CHILD_TIMEOUT = 120.0  # seconds one log source may take (drgn loading a big vmlinux on a busy host)
LOG_BYTES = 64 << 20  # the largest log a child may write: past it, the child is stopped (RLIMIT_FSIZE)
KEPT_BYTES = 256 << 10  # the report's part of the log kept on the host as an output
PSTORE_DIRS = ["/sys/fs/pstore", "/var/lib/systemd/pstore"]

DMESG_FILE = "kdump's dmesg file"
MAKEDUMPFILE = "makedumpfile --dump-dmesg"
PRINTK = "printk buffer (VMCOREINFO)"
DRGN = "drgn (printk buffer)"
CRASH = "crash log"
PSTORE = "pstore"
JOURNAL = "journal (previous boot)"

DRGN_DMESG = """import sys
import drgn
from drgn.helpers.linux.printk import get_dmesg
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
prog.load_debug_info([sys.argv[2]])
sys.stdout.buffer.write(get_dmesg(prog))
"""


class Unavailable(Exception):
    """This source cannot give the log (say why, in a few words)."""


class Log:
    """A kernel log found by one source: a file the agent may read, where it came from."""

    def __init__(self, source: str, path: str, origin: str, stale: Optional[str] = None) -> None:
        self.source, self.path, self.origin, self.stale = source, path, origin, stale


def triage(dumps: Any, params: Dict[str, Any]) -> Dict[str, Any]:
    """The host's answer: its newest dump's (or last boot's) report, where it came from, what was tried."""
    found = discovery.scan(dumps.dirs(params), dumps.roots())["dumps"]
    dump = found[0] if found else None
    with tempfile.TemporaryDirectory(prefix="triage-", dir=dumps.agent.jobs.workdir) as work:
        os.chmod(work, 0o755)  # drgn reads it after it became nobody
        readers = _dump_sources(dumps, dump, work) if dump else _boot_sources(dumps, work)
        tried: List[Dict[str, str]] = []
        for source, read in readers:
            try:
                log = read()
            except Unavailable as exc:
                tried.append({"source": source, "why": str(exc)[:300]})
                continue
            return _answer(dumps, dump, log, tried, len(found))
    return {"dump": _brief(dump), "dumps": len(found), "report": None, "source": None, "tried": tried}


def _answer(
    dumps: Any, dump: Optional[Dict[str, Any]], log: Log, tried: List[Dict[str, str]], count: int
) -> Dict[str, Any]:
    report = oops.scan(log.path)
    writer = dumps.agent.store.create("triage", {"source": log.source, "origin": log.origin})
    with writer:
        writer.write(_kept(log.path, report))
    return {
        "dump": _brief(dump),
        "dumps": count,
        "source": log.source,
        "origin": log.origin,
        "stale": log.stale,
        "tried": tried,
        "report": report,
        "output_id": writer.output_id,
        "log_bytes": os.path.getsize(log.path),
    }


def _brief(dump: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    if dump is None:
        return None
    return {k: dump.get(k) for k in ("path", "format", "arch", "release", "mtime", "size", "incomplete")}


def _kept(path: str, report: oops.Oops) -> bytes:
    """The part of the log to keep: from a little before the report to its end (the tail of the
    log when no report was found)."""
    size = os.path.getsize(path)
    span = report.get("span")
    start, end = (span[0], span[1]) if span else (max(0, size - KEPT_BYTES), size)
    end = min(end, start + KEPT_BYTES)
    with open(path, "rb") as handle:
        handle.seek(start)
        return handle.read(end - start)


# -- with a dump -------------------------------------------------------------------------------


def _dump_sources(dumps: Any, dump: Dict[str, Any], work: str) -> List[Tuple[str, Callable[[], Log]]]:
    return [
        (DMESG_FILE, lambda: _dmesg_file(dump)),
        (MAKEDUMPFILE, lambda: _makedumpfile(dumps, dump, work)),
        (PRINTK, lambda: _printk(dump, work)),
        (DRGN, lambda: _drgn(dumps, dump, work)),
        (CRASH, lambda: _crash(dumps, dump)),
    ]


def _dmesg_file(dump: Dict[str, Any]) -> Log:
    path = dmesg.beside(dump["path"])
    if path is None:
        raise Unavailable("none beside the dump")
    return Log(DMESG_FILE, path, path)


def _makedumpfile(dumps: Any, dump: Dict[str, Any], work: str) -> Log:
    if dump.get("format") != "kdump-compressed":  # ELF: printk.py is cheaper, and reads QEMU's too
        raise Unavailable("this path reads kdump-compressed dumps, not %s" % dump.get("format"))
    binary = shutil.which("makedumpfile", path=_clean_env()["PATH"])
    if binary is None:
        raise Unavailable("not installed")
    out = os.path.join(work, "makedumpfile.log")
    profile = profiles.log_reader("makedumpfile", dump["path"], work, CHILD_TIMEOUT, LOG_BYTES)
    _child(dumps, [binary, "--dump-dmesg", dump["path"], out], profile, binary, work)
    return _written(MAKEDUMPFILE, out, dump["path"])


def _printk(dump: Dict[str, Any], work: str) -> Log:
    """The ELF dump's printk ring buffer, read by the agent's own code in a forked sandbox (the
    dump is untrusted data): it reads the dump, writes one file."""
    if dump.get("format") != "elf":
        raise Unavailable("reads ELF dumps, not %s" % dump.get("format"))
    out = os.path.join(work, "printk.log")
    profile = profiles.log_reader("printk", dump["path"], work, CHILD_TIMEOUT, LOG_BYTES, forked=True)

    def read() -> str:
        try:
            data = printk.dmesg(dump["path"], LOG_BYTES)
        except (printk.Unreadable, OSError, ValueError, struct.error) as exc:
            return str(exc) or type(exc).__name__
        with open(out, "wb") as handle:
            handle.write(data)
        return ""

    try:
        why = sandbox.fork_call(read, profile, CHILD_TIMEOUT)
    except sandbox.ChildFailed as exc:
        raise Unavailable("its reader %s" % exc) from None
    if why:
        raise Unavailable(str(why))
    return _written(PRINTK, out, dump["path"])


def _drgn(dumps: Any, dump: Dict[str, Any], work: str) -> Log:
    if dump.get("format") != "elf":
        raise Unavailable("this drgn path reads ELF dumps (crash reads %s)" % dump.get("format"))
    settings = dumps.policy.settings
    try:
        linux = vmlinux.match(dump, settings["vmlinux_dirs"], bool(settings["vmlinux_standard_dirs"]))["path"]
    except Exception as exc:  # AgentError: no matching vmlinux here (debuginfod is for crash_open)
        raise Unavailable("no matching vmlinux on this host (%s)" % getattr(exc, "message", exc)) from None
    chosen = dumps.chosen_drgn()
    if not chosen.get("importable") or not chosen.get("recent"):
        raise Unavailable("no drgn recent enough (%s)" % (chosen.get("error") or chosen.get("hint")))
    python = str(chosen["python"])
    profile = profiles.drgn(dumps.policy, linux, dump["path"], work, chosen.get("paths") or [])
    out = os.path.join(work, "drgn.log")
    _child(dumps, [python, "-I", "-c", DRGN_DMESG, dump["path"], linux], profile, python, work, stdout=out)
    return _written(DRGN, out, dump["path"])


def _crash(dumps: Any, dump: Dict[str, Any]) -> Log:
    """crash's `log` in a session (kept open: a drill-down reuses it)."""
    try:
        opened = dumps.open({"vmcore": dump["path"], "fetch_wait": 0, "page_bytes": 256})
        if opened.get("fetching"):
            raise Unavailable("its vmlinux is still downloading from debuginfod: crash_open waits for it")
        ran = dumps.crash({"session_id": opened["session_id"], "command": "log", "timeout": CHILD_TIMEOUT})
    except Unavailable:
        raise
    except Exception as exc:  # AgentError from crash: say why in the list of what was tried
        raise Unavailable(getattr(exc, "message", None) or str(exc)) from None
    path = os.path.join(dumps.agent.store.root, ran["output_id"], "data")
    if not os.path.getsize(path):
        raise Unavailable("crash printed no log")
    return Log(CRASH, path, dump["path"])


# -- without a dump: what the machine kept of its last boot --------------------------------------


def _boot_sources(dumps: Any, work: str) -> List[Tuple[str, Callable[[], Log]]]:
    return [(PSTORE, lambda: _pstore(dumps, work)), (JOURNAL, lambda: _journal(dumps, work))]


def _pstore(dumps: Any, work: str) -> Log:
    """The newest pstore record's kernel log, its parts in order (Part1 is the newest chunk)."""
    dirs = [str(d) for d in dumps.policy.settings.get("pstore_dirs") or PSTORE_DIRS]
    records = _records(dirs)
    if not records:
        raise Unavailable("no record in %s" % ", ".join(dirs))
    newest = max(records.values(), key=lambda parts: max(os.path.getmtime(p) for p in parts))
    out = os.path.join(work, "pstore.log")
    with open(out, "wb") as handle:
        for path in newest:
            with open(path, "rb") as part:
                handle.write(part.read(LOG_BYTES).rstrip(b"\n") + b"\n")
    when = max(os.path.getmtime(p) for p in newest)
    return Log(PSTORE, out, newest[-1], _stale(dumps, when, work))


PART = re.compile(rb"^(\w+)#(\d+) Part(\d+)")  # pstore's own first line of each part: "Panic#1 Part2"


def _records(dirs: List[str]) -> Dict[Tuple[str, str], List[str]]:
    """dmesg records, each with its parts oldest chunk first. pstore writes one dump as parts
    ("Oops#1 Part1" holds its newest lines) into one file each (efi, ramoops); systemd-pstore
    moves them into a dir per record or joins them into dmesg.txt."""
    parts: Dict[Tuple[str, str], List[Tuple[int, str]]] = {}
    for directory in dirs:
        for root, _, files in os.walk(directory):
            for name in sorted(files):
                if not name.startswith("dmesg"):
                    continue
                path = os.path.join(root, name)
                with open(path, "rb") as handle:
                    first = PART.match(handle.readline(200))
                key = (root, first.group(1).decode() + first.group(2).decode()) if first else (root, name)
                parts.setdefault(key, []).append((int(first.group(3)) if first else 0, path))
    return {key: [path for _, path in sorted(found, reverse=True)] for key, found in parts.items()}


def _stale(dumps: Any, when: float, work: str) -> Optional[str]:
    """Why a record is not what ended the last boot: it is older than that boot's start."""
    try:
        previous = _previous_boot(dumps, work)
    except Unavailable:
        return None  # no journal to tell: the record is taken for the last boot's, as pstore's are
    started = float(previous.get("first_entry") or 0) / 1e6
    if not started or when >= started:
        return None
    return "the record (%s) is older than the last boot before this one (started %s): an earlier crash" % (
        _stamp(when),
        _stamp(started),
    )


def _journal(dumps: Any, work: str) -> Log:
    """The previous boot's kernel messages, from the persistent journal."""
    previous = _previous_boot(dumps, work)
    out = os.path.join(work, "journal.log")
    argv = _journalctl(dumps) + ["-k", "-b", str(previous["boot_id"]), "-o", "short-monotonic", "-q", "--no-pager"]
    _child(dumps, argv, _journal_profile(dumps, work), argv[0], work, stdout=out)
    if not os.path.getsize(out):
        raise Unavailable("the previous boot has no kernel messages in the journal")
    return Log(JOURNAL, out, "boot %s" % previous["boot_id"])


def _previous_boot(dumps: Any, work: str) -> Dict[str, Any]:
    """The newest boot the journal knows that is not this one."""
    out = os.path.join(work, "boots.json")
    argv = _journalctl(dumps) + ["--list-boots", "-o", "json", "-q", "--no-pager"]
    _child(dumps, argv, _journal_profile(dumps, work), argv[0], work, stdout=out)
    try:
        with open(out) as handle:
            listed = json.load(handle)
    except ValueError:
        raise Unavailable("no boots in the journal (not persistent here?)") from None
    current = _read("/proc/sys/kernel/random/boot_id").strip().replace("-", "")
    earlier = [b for b in listed if isinstance(b, dict) and b.get("boot_id") and b.get("boot_id") != current]
    if not earlier:
        raise Unavailable("no earlier boot in the journal (not persistent, or this is the first boot)")
    return max(earlier, key=lambda b: float(b.get("first_entry") or 0))


def _journalctl(dumps: Any) -> List[str]:
    binary = shutil.which("journalctl", path=_clean_env()["PATH"])
    if binary is None:
        raise Unavailable("no journalctl (no systemd journal)")
    argv = [binary]
    for directory in dumps.policy.settings.get("journal_dirs") or []:
        argv += ["-D", str(directory)]
    return argv


def _journal_profile(dumps: Any, work: str) -> sandbox.Profile:
    dirs = [str(d) for d in dumps.policy.settings.get("journal_dirs") or []]
    return profiles.journal(dirs, work, CHILD_TIMEOUT, LOG_BYTES)


# -- children ----------------------------------------------------------------------------------


def _child(
    dumps: Any, argv: List[str], profile: sandbox.Profile, binary: str, work: str, stdout: Optional[str] = None
) -> None:
    """Run one log reader in its sandbox, its output into a file of `work` (capped by the file
    size limit); Unavailable with its last words when it fails."""
    err_path = os.path.join(work, os.path.basename(binary) + ".err")
    preexec = sandbox.child_setup(dumps.policy.settings, profile, binary)
    with open(stdout or os.devnull, "wb") as out, open(err_path, "wb") as err:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=work,
                env=_clean_env(),
                preexec_fn=preexec,
                start_new_session=True,
            )
        except OSError as exc:
            raise Unavailable("cannot run %s: %s" % (argv[0], exc)) from None
        try:
            status = proc.wait(CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise Unavailable("no answer within %g s" % CHILD_TIMEOUT) from None
        finally:
            _kill(proc)
    if status != 0:
        raise Unavailable(_last_words(err_path) or "exit status %d" % status)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """The reader and anything it started (its process group)."""
    try:
        os.killpg(proc.pid, 9)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _written(source: str, path: str, origin: str) -> Log:
    if not os.path.exists(path) or not os.path.getsize(path):
        raise Unavailable("it wrote no log")
    return Log(source, path, origin)


def _last_words(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - 2000))
            lines = handle.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    useful = [line.strip() for line in lines if line.strip() and not line.startswith(("Traceback", "  "))]
    return useful[-1][:300] if useful else ""


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ""


def _stamp(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
