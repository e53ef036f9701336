"""CPU profiles: bpftrace's `profile` probe counts kernel stacks, folded the way flamegraph.pl reads them.

The program is built here from one checked integer (hz); the duration is bpftrace's own end
timer. No text from the controller reaches bpftrace. The run goes through the bpftrace domain
(Bpftrace.start: bpftrace_enabled, its safety check, the duration caps, the sandbox profile,
the job and its output cap), after this domain's own cap (profile_max_duration).

Kernel stacks only. User stacks (`ustack`) were tried in the sandbox and left out: bpftrace
(bcc) reads a traced process's binaries through /proc/PID/root/..., and inside the sandbox
those opens (and readlink of /proc/PID/root) fail with EACCES, so every user frame came back
as a bare address (0x7fa2365162ad, where bpftrace outside the sandbox names __libc_read+13).
Opening that path would widen the sandbox to every process's files. Without frame pointers
(most distribution binaries) user stacks would be one frame deep anyway.
"""

from __future__ import annotations

import json
import os
import re
import threading
from typing import Any, Callable, Dict, List, Tuple

from . import bpftrace, protocol
from .errors import AgentError
from .params import bounded, param
from .service import MAX_WAIT
from .store import StoreError

LABEL = "profile"  # the bpftrace job's label (meta `bpftrace`): what profile.result accepts
PROGRAM = "profile:hz:%d { @[comm, kstack] = count(); }"
HZ = (1, 999)
DEFAULT_HZ = 49  # not a divisor of the timer tick: samples do not lock step with timers
DEFAULT_DURATION = 10.0
TOP = 100  # stacks in an answer by default
MAX_TOP = 1000
USER_FRAME = "[user]"  # a sample taken in user space: no kernel stack
UNKNOWN_COMM = "[unknown]"
_OFFSET_RE = re.compile(r"\+(?:0x[0-9a-fA-F]+|\d+)$")  # bpftrace's +215, perf's +0x1a
_UNSAFE_RE = re.compile(r"[;\s\x00-\x1f\x7f]")  # would split a folded line or a frame: a comm may hold them
_MAP_LINE = b'{"type": "map"'


def methods(agent: Any) -> Dict[str, Callable[[Dict[str, Any]], Any]]:
    profiler = Profiler(agent)
    return {protocol.PROFILE_START: profiler.start, protocol.PROFILE_RESULT: profiler.result}


class Profiler:
    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.bpftrace = bpftrace.Bpftrace(agent)
        self._storing = threading.Lock()  # one folded output per job, even when results race

    def start(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """Profile every CPU at `hz` for `duration` seconds; a run that ends within `wait` is answered folded."""
        hz = param(params, "hz", int, DEFAULT_HZ)
        if not HZ[0] <= hz <= HZ[1]:
            raise AgentError(
                protocol.BAD_PARAMS,
                "parameter 'hz' must be between %d and %d, got %s" % (HZ[0], HZ[1], hz),
                hint="samples per second on each CPU; 49 or 99 are usual",
            )
        duration = float(bounded(params, "duration", DEFAULT_DURATION, 0.001, 1e9))
        cap = float(self.agent.policy.settings["profile_max_duration"])
        if duration > cap:
            raise AgentError(
                protocol.POLICY_DENIED,
                "duration %gs is over this host's profile cap of %gs" % (duration, cap),
                hint="ask for %gs or less (policy key profile_max_duration)" % cap,
                rule="policy.profile_max_duration",
            )
        top, wait = _top(params), bounded(params, "wait", 0.0, 0.0, MAX_WAIT)  # checked before anything starts
        run = {"duration": duration, "format": "json", "wait": wait, "page_bytes": 256}
        status = self.bpftrace.start(PROGRAM % hz, [], LABEL, run, meta={"hz": hz})
        return self._answer(self.agent.jobs.get(status["job_id"]), status, top)

    def result(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """A profile's status (waits up to `wait` s); once it ended, its folded stacks."""
        job = self.agent.jobs.get(param(params, "job_id", str))
        if job.kind != "bpftrace" or job.meta.get("bpftrace") != LABEL:
            raise AgentError(
                protocol.BAD_PARAMS,
                "job %s is not a profile" % job.id,
                hint="profile.result reads the jobs profile.start started; job.status reads any job",
            )
        top, wait = _top(params), bounded(params, "wait", 0.0, 0.0, MAX_WAIT)
        status = self.bpftrace.result({"job_id": job.id, "wait": wait, "page_bytes": 256})
        return self._answer(job, status, top)

    def _answer(self, job: Any, status: Dict[str, Any], top: int) -> Dict[str, Any]:
        # bpftrace's view of the run (its map cut to its largest keys, the raw JSON's first page)
        # is replaced by the folded stacks, read whole from the output.
        for key in ("maps", "printed", "page"):
            status.pop(key, None)
        status["hz"] = job.meta.get("hz")
        if status["state"] == "running" or "error" in status:
            return status
        folded = fold(read_counts(os.path.join(self.agent.store.root, job.output_id, "data")))
        ranked = sorted(folded.items(), key=lambda kv: (-kv[1], kv[0]))
        status.update(
            samples=sum(folded.values()),
            stacks=len(ranked),
            top=[{"stack": stack, "count": count} for stack, count in ranked[:top]],
            folded_output_id=self._store(job, ranked),
        )
        return status

    def _store(self, job: Any, ranked: List[Tuple[str, int]]) -> str:
        """The folded stacks as an output (output_page, output_search), written once per job."""
        with self._storing:
            output_id = job.meta.get("folded_output_id")
            if output_id is not None:
                try:
                    self.agent.store.info(output_id)
                    return str(output_id)
                except StoreError:
                    pass  # evicted: written again
            writer = self.agent.store.create("profile-folded", {"job_id": job.id, "hz": job.meta.get("hz")})
            writer.write("".join("%s %d\n" % (stack, count) for stack, count in ranked).encode())
            writer.close(exit_status=0)
            job.meta["folded_output_id"] = writer.output_id
            return str(writer.output_id)


def _top(params: Dict[str, Any]) -> int:
    return int(bounded(params, "top", TOP, 1, MAX_TOP))


def read_counts(path: str) -> Dict[str, int]:
    """The @ map bpftrace printed last in its `-f json` output (key "comm,\\n    frame+off\\n..."), whole."""
    counts: Dict[str, int] = {}
    try:
        handle = open(path, "rb")
    except OSError:
        return counts
    with handle:
        for raw in handle:
            if not raw.startswith(_MAP_LINE):
                continue
            try:
                data = json.loads(raw).get("data")
            except ValueError:
                continue
            found = data.get("@") if isinstance(data, dict) else None
            if isinstance(found, dict):
                counts = found
    return counts


def fold(counts: Dict[str, Any]) -> Dict[str, int]:
    """`@[comm, kstack]` keys -> folded stacks "comm;outermost;...;innermost" -> samples.

    bpftrace 0.17 prints a key as comm, a comma, then the frames innermost first, one a line
    ("    name+offset"). A frame never holds a comma and a comm may, so the last comma splits
    them. Offsets go (samples at two offsets of a function are one stack), frames are
    reversed (root first, as flamegraph.pl wants), and characters that would split a folded
    line (';', whitespace, control characters, all possible in a comm) become '_'.
    """
    folded: Dict[str, int] = {}
    for key, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            continue
        comm, _, stack = key.rpartition(",")
        frames = [_clean(_OFFSET_RE.sub("", line.strip())) for line in reversed(stack.split("\n")) if line.strip()]
        line = ";".join([_clean(comm) or UNKNOWN_COMM] + (frames or [USER_FRAME]))
        folded[line] = folded.get(line, 0) + value
    return folded


def _clean(name: str) -> str:
    return _UNSAFE_RE.sub("_", name)
