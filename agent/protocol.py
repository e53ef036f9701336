"""The wire protocol between controller and agent, imported by both (stdlib, Python 3.8).

JSON-RPC 2.0, one object a line. Here: the protocol version, the method names, every error
kind the agent sends (an error's `data.kind`; the controller maps each to an exception class,
controller/errors.py), and the shapes of the replies the controller reads, as TypedDicts.
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, Tuple, TypedDict

PROTOCOL_VERSION = 1

# -- methods ------------------------------------------------------------------

HELLO = "hello"
PING = "ping"
FACTS = "facts"
PAGE = "page"
SEARCH = "search"
RUN = "run"
JOB_STATUS = "job.status"
JOB_CANCEL = "job.cancel"
JOBS_LIST = "jobs.list"

BPFTRACE_INFO = "bpftrace.info"
BPFTRACE_PROBES = "bpftrace.probes"
BPFTRACE_TOOLS = "bpftrace.tools"
BPFTRACE_RUN = "bpftrace.run"
BPFTRACE_RESULT = "bpftrace.result"

CAPTURE_INTERFACES = "capture.interfaces"
CAPTURE_START = "capture.start"
CAPTURE_STATUS = "capture.status"
CAPTURE_SUMMARY = "capture.summary"
CAPTURE_FLOWS = "capture.flows"
CAPTURE_FINGERPRINTS = "capture.fingerprints"
CAPTURE_PACKETS = "capture.packets"

DUMPS_LIST = "dumps.list"
DUMPS_OPEN = "dumps.open"
DUMPS_CRASH = "dumps.crash"
DUMPS_INTERRUPT = "dumps.interrupt"
DUMPS_DRGN = "dumps.drgn"
DUMPS_SESSIONS = "dumps.sessions"
DUMPS_CLOSE = "dumps.close"
DUMPS_SCRIPTS = "dumps.scripts"
DUMPS_SCRIPT = "dumps.script"
DUMPS_TRIAGE = "dumps.triage"

PROFILE_START = "profile.start"
PROFILE_RESULT = "profile.result"

CORE_METHODS = (HELLO, PING, FACTS, PAGE, SEARCH, RUN, JOB_STATUS, JOB_CANCEL, JOBS_LIST)
DOMAIN_METHODS = (
    (BPFTRACE_INFO, BPFTRACE_PROBES, BPFTRACE_TOOLS, BPFTRACE_RUN, BPFTRACE_RESULT)
    + (CAPTURE_INTERFACES, CAPTURE_START, CAPTURE_STATUS, CAPTURE_SUMMARY, CAPTURE_FLOWS, CAPTURE_FINGERPRINTS)
    + (CAPTURE_PACKETS, DUMPS_LIST, DUMPS_OPEN, DUMPS_CRASH, DUMPS_INTERRUPT, DUMPS_DRGN, DUMPS_SESSIONS)
    + (DUMPS_CLOSE, DUMPS_SCRIPTS, DUMPS_SCRIPT, DUMPS_TRIAGE)
    + (PROFILE_START, PROFILE_RESULT)
)

# Notifications (no id, no answer): the agent's, then the controller's one.
JOB_STARTED = "job.started"
JOB_PROGRESS = "job.progress"
JOB_DONE = "job.done"
AGENT_STOPPING = "agent.stopping"
SHUTDOWN = "shutdown"  # the controller closes on purpose: end the jobs now, not at the lease's end
NOTIFICATIONS = (JOB_STARTED, JOB_PROGRESS, JOB_DONE, AGENT_STOPPING, SHUTDOWN)

# -- error kinds ----------------------------------------------------------------

KINDS: Dict[str, str] = {}  # every kind the agent sends -> what it means


def _kind(kind: str, meaning: str) -> str:
    KINDS[kind] = meaning
    return kind


# the request itself (rpc.py)
BAD_REQUEST = _kind("bad_request", "the line is not JSON, or not a JSON-RPC 2.0 request")
TOO_LARGE = _kind("too_large", "the request line is over 1 MiB")
UNKNOWN_METHOD = _kind("unknown_method", "no such method on this agent (hint: the ones it has)")
INTERNAL = _kind("internal", "a bug in the agent: data.traceback_tail says where")
SHUTTING_DOWN = _kind("shutting_down", "the agent is stopping and starts nothing more")
# parameters
BAD_PARAMS = _kind("bad_params", "a parameter is missing, of the wrong type, out of range or malformed")
BAD_ARGUMENT = _kind("bad_argument", "the store refused an argument (a size, a line number)")
# jobs and their processes
UNKNOWN_JOB = _kind("unknown_job", "no such job (or capture) on this agent: it never ran here or its agent ended")
JOB_LOST = _kind("job_lost", "the job ran under an earlier agent in this dir and ended with it; output_id kept")
EXEC_FAILED = _kind("exec_failed", "the job's program could not be started")
TIMEOUT = _kind("timeout", "a helper command the agent ran itself took too long")
OVER_CAP = _kind("over_cap", "a child went over one of its caps (data.cap: output, line, memory...) and was stopped")
QUOTA_EXCEEDED = _kind("quota_exceeded", "a cap of this host's policy (jobs, captures, capture bytes) is reached")
# stored outputs
UNKNOWN_OUTPUT = _kind("unknown_output", "no such output: evicted, deleted or never there")
BAD_CURSOR = _kind("bad_cursor", "the cursor is malformed, or belongs to another output or call")
STALE_CURSOR = _kind("stale_cursor", "the cursor points past the output's end")
BAD_REGEX = _kind("bad_regex", "the search pattern is not a valid regular expression")
PATTERN_TOO_COSTLY = _kind("pattern_too_costly", "the regex used up its CPU allowance (policy regex_cpu_seconds)")
# policy and the agent's own safety
POLICY_DENIED = _kind("policy_denied", "this host's policy forbids it (data.rule names the key)")
REFUSED = _kind("refused", "the crash command grammar refused the command (data.rule: crash.<id>)")
UNSAFE_DIR = _kind("unsafe_dir", "the agent's dir is writable by others than root (at start-up)")
BAD_POLICY = _kind("bad_policy", "the host's policy file is not valid JSON, has unknown keys or unsafe owner")
SANDBOX_UNAVAILABLE = _kind("sandbox_unavailable", "the policy requires the full sandbox and this host has part")
UNKNOWN_COMMAND = _kind("unknown_command", "no such command in the catalogue")
# bpftrace
NOT_INSTALLED = _kind("not_installed", "bpftrace is not installed on this host")
TRACEFS_MISSING = _kind("tracefs_missing", "tracefs is not mounted and the agent may not mount it")
BAD_PROGRAM = _kind("bad_program", "the program is not UTF-8 text or is too large")
UNSAFE_PROGRAM = _kind("unsafe_program", "the safety check refused the program (line, column, rule)")
COMPILE_ERROR = _kind("compile_error", "bpftrace does not compile the program (line, column)")
UNKNOWN_PROBE = _kind("unknown_probe", "a probe of the program does not exist on this host")
ATTACH_FAILED = _kind("attach_failed", "bpftrace could not attach a probe on this kernel")
BPFTRACE_FAILED = _kind("bpftrace_failed", "bpftrace failed otherwise (its error lines in the message)")
UNKNOWN_TOOL = _kind("unknown_tool", "no such tool in the vetted bpftrace library")
TOOL_CANNOT_RUN = _kind("tool_cannot_run", "the library tool cannot run on this host (the reason in the message)")
# capture
NO_TCPDUMP = _kind("no_tcpdump", "tcpdump is not installed on this host")
NOT_ROOT = _kind("not_root", "capturing needs root and the agent is not")
NO_CAPTURE_USER = _kind("no_capture_user", "no unprivileged user to run tcpdump as")
UNKNOWN_INTERFACE = _kind("unknown_interface", "no such network interface on this host")
UNRESOLVED = _kind("unresolved", "the capture target's host name does not resolve here")
BAD_FILTER = _kind("bad_filter", "tcpdump does not compile the BPF filter")
BAD_CAPTURE = _kind("bad_capture", "the capture's pcap files cannot be read")
# dumps
NO_DUMP = _kind("no_dump", "no dump in the dump dirs (for the newest-dump default)")
NOT_FOUND = _kind("not_found", "the dump or vmlinux path given does not exist")
NOT_A_DUMP = _kind("not_a_dump", "the file is not a kernel dump")
NO_RELEASE = _kind("no_release", "the dump names no kernel release: pass vmlinux")
WRONG_VMLINUX = _kind("wrong_vmlinux", "the vmlinux given is not ELF, or its build id is not the dump's")
NO_VMLINUX = _kind("no_vmlinux", "no vmlinux for the dump's kernel here (nor from debuginfod)")
DEBUGINFOD_FAILED = _kind("debuginfod_failed", "the debuginfod download failed")
DEBUGINFOD_WRONG_FILE = _kind("debuginfod_wrong_file", "a debuginfod server sent a file of another build id")
NO_KCORE = _kind("no_kcore", "no /proc/kcore for live analysis")
NO_CRASH = _kind("no_crash", "crash (for the dump's arch) is not installed, or the session has no crash")
CRASH_FAILED = _kind("crash_failed", "crash did not start on the dump")
BUSY = _kind("busy", "the session is still running another crash command")
TOO_MANY_SESSIONS = _kind("too_many_sessions", "the policy's cap of open dump sessions is reached")
UNKNOWN_SESSION = _kind("unknown_session", "no such dump session: closed, expired or its agent ended")
UNKNOWN_SCRIPT = _kind("unknown_script", "no such bundled analysis script")
DRGN_FAILED = _kind("drgn_failed", "the drgn worker did not start")
DRGN_TOO_OLD = _kind("drgn_too_old", "the drgn found is too old for this dump")
DRGN_UNSUPPORTED = _kind("drgn_unsupported", "drgn cannot read this dump format here (crash can)")

# -- replies ----------------------------------------------------------------------
# Required keys in a class, optional ones in its total=False subclass. Only the keys the
# controller reads are promised; the agent may send more.

JobState = Literal["running", "done", "failed", "cancelled", "aborted"]


class Page(TypedDict):
    """`page`; also `capture.packets` and a finished job's first page (`page` in its status)."""

    output_id: str
    text: str
    start_line: int
    end_line: int
    total_lines: int
    bytes: int
    next_cursor: Optional[str]
    finished: bool
    truncated: bool


class SearchMatch(TypedDict):
    line: int
    text: str
    before: List[str]
    after: List[str]


class SearchResult(TypedDict):
    """`search`."""

    output_id: str
    pattern: str
    matches: List[SearchMatch]
    scanned_lines: int
    total_lines: int
    more: bool
    next_cursor: Optional[str]
    finished: bool


class _JobStatus(TypedDict):
    job_id: str
    kind: str  # what the job runs (command, bpftrace, capture, crash...), not an error kind
    state: JobState
    output_id: str
    started: float
    elapsed: float
    exit_status: Optional[int]
    meta: Dict[str, Any]


class JobStatus(_JobStatus, total=False):
    """`run`, `job.status`, `job.cancel`, `job.done`; the finished keys once it is not running."""

    lines: Optional[int]
    bytes: Optional[int]
    sha256: Optional[str]
    truncated: Optional[bool]
    stop_reason: Optional[str]
    stderr_tail: str
    page: Page  # with settle's `page_bytes`, once finished


class JobStarted(TypedDict, total=False):
    """The `job.started` notification: which request started which job."""

    job_id: str
    request: Any  # the JSON-RPC id of the call that started it
    output_id: str
    kind: str


class _BpftraceError(TypedDict):
    kind: str  # COMPILE_ERROR, UNKNOWN_PROBE, ATTACH_FAILED or BPFTRACE_FAILED
    message: str


class BpftraceError(_BpftraceError, total=False):
    """A failed run's error, inside its status."""

    hint: str
    line: int
    column: int


class BpftraceStatus(JobStatus, total=False):
    """`bpftrace.run`, `bpftrace.result`: a job status, with the maps of a finished JSON run."""

    error: BpftraceError
    maps: Dict[str, Any]  # name -> {type, kind, value[, keys_dropped]}
    printed: str
    lost_events: int


class BpftraceInfo(TypedDict, total=False):
    """`bpftrace.info`."""

    version: Optional[str]
    path: str
    features: Dict[str, Any]
    probe_types: Dict[str, int]
    btf: bool
    tracefs: Dict[str, Any]
    kprobes: bool
    limits: Dict[str, Any]
    max_duration: float


class _BpftraceProbes(TypedDict):
    count: int
    sha256: str
    types: Dict[str, int]
    output_id: str
    page: Page


class BpftraceProbes(_BpftraceProbes, total=False):
    """`bpftrace.probes`; `probes` with `full`."""

    tracefs_error: str
    probes: List[str]


class _ToolArg(TypedDict):
    name: str
    default: Any


class ToolArg(_ToolArg, total=False):
    help: str


class BpftraceTool(TypedDict):
    name: str
    source: str
    description: str
    args: List[ToolArg]
    runnable: bool
    reason: str


class BpftraceTools(TypedDict):
    """`bpftrace.tools`."""

    tools: List[BpftraceTool]


class ProfileStack(TypedDict):
    stack: str  # folded: comm;outermost frame;...;innermost frame (offsets stripped)
    count: int  # samples


class ProfileStatus(JobStatus, total=False):
    """`profile.start`, `profile.result`: the bpftrace job's status; once it ended, its samples
    folded into stacks (the largest `top` here, every one in the store as folded_output_id)."""

    error: BpftraceError
    lost_events: int
    hz: int
    samples: int
    stacks: int  # distinct folded stacks
    top: List[ProfileStack]
    folded_output_id: str


class CaptureStatus(JobStatus, total=False):
    """`capture.start`, `capture.status`: a job status with tcpdump's counters."""

    files: int
    disk_bytes: int
    captured: int
    received_by_filter: int
    dropped_by_kernel: int
    listening: bool  # tcpdump has opened the device: from now on its packets count
    error: str  # tcpdump's own error line, when it failed before writing anything


class CaptureFlow(TypedDict):
    cid: str
    flow: str  # "tcp 10.0.0.1:5000>10.0.0.2:80"
    sent: int
    returned: int
    first: float
    last: float


class CaptureFlows(TypedDict):
    """`capture.flows`: for correlating hosts."""

    addresses: List[str]
    flows: List[CaptureFlow]
    window: Optional[List[float]]  # [first, last] packet time, None when it saw nothing


class CaptureFingerprints(TypedDict):
    """`capture.fingerprints`: (packet number, identity) of one direction's packets."""

    packets: List[Tuple[int, str]]


class CaptureProblem(TypedDict, total=False):
    severity: str  # high, medium, low
    kind: str
    text: str


class CaptureReport(TypedDict, total=False):
    """`capture.summary` (agent/pcap/report.py); the lists shrink to fit max_tokens."""

    host: str
    state: JobState
    interface: str
    filter: str
    packets: int
    bytes: int
    duration_s: float
    problems: List[CaptureProblem]
    size_tokens: int
    took_s: float


class Debuginfo(TypedDict, total=False):
    """Where a dump's vmlinux is: local, via debuginfod (cached or to fetch), or missing."""

    present: bool
    source: str  # local, debuginfod or missing
    vmlinux: str
    cached: bool
    servers: List[str]
    hint: str
    package_hint: Optional[str]


class DmesgLog(TypedDict, total=False):
    path: str
    panic: Optional[str]
    title: Optional[str]  # the crash's title (agent/dumps/oops.py)


class DumpEntry(TypedDict, total=False):
    path: str
    size: int
    mtime: float
    format: str
    arch: Optional[str]
    release: Optional[str]
    build_id: Optional[str]
    debuginfo: Debuginfo
    incomplete: bool
    dmesg: Optional[DmesgLog]


class DrgnInfo(TypedDict, total=False):
    """The drgn the agent's workers use (agent/dumps/drgn_pick.py)."""

    python: str
    importable: bool
    version: str
    libkdumpfile: bool
    recent: bool
    error: str
    hint: str


class DumpList(TypedDict):
    """`dumps.list`."""

    dumps: List[DumpEntry]
    dirs: List[str]
    skipped: List[Dict[str, str]]
    allowed: List[str]
    drgn: DrgnInfo
    crash: bool


class _DumpSession(TypedDict):
    session_id: str
    vmcore: str
    vmlinux: str


class DumpSession(_DumpSession, total=False):
    """A session's description: `dumps.close`, each of `dumps.sessions`."""

    release: Optional[str]
    arch: Optional[str]
    format: Optional[str]
    created: float
    last_used: float
    crash_pid: Optional[int]
    minimal: bool
    drgn_pid: Optional[int]
    crash_restarts: int


class DumpSessions(TypedDict):
    """`dumps.sessions`."""

    sessions: List[DumpSession]


class _CommandReply(TypedDict):
    session_id: str
    output_id: str


class CommandReply(_CommandReply, total=False):
    """`dumps.crash`, `dumps.drgn`, `dumps.script`: the output with its first page; a crash
    command still running after `wait` is a job instead (state running, job_id, no page)."""

    page: Page
    lines: Optional[int]
    bytes: Optional[int]
    sha256: Optional[str]
    ended: str  # done, timeout, killed, failed...
    note: str
    cap: str  # the cap or budget that ended it: output, line, timeout, memory, idle, died (drgn); output (crash)
    state: JobState
    job_id: str
    ok: bool  # drgn: the code raised nothing
    value: Optional[str]
    error: str
    privileges: Any


class Report(TypedDict):
    """A kernel log's crash report, named as crash-report systems name crashes (agent/dumps/oops.py)."""

    title: Optional[str]  # "KIND in CULPRIT [module]": no address, CPU, PID, time or release
    kind: Optional[str]
    culprit: Optional[str]
    culprit_module: Optional[str]
    frames: List[str]
    modules: List[str]
    taint: Optional[str]  # the Tainted: letters ("GO"); "" for "Not tainted"; None when not printed
    detail: Optional[str]
    oopses: int  # reports in the log: the first is the cause
    truncated: bool  # the log ends inside the report: titled from what survived
    interleaved: bool  # another CPU's lines are mixed in
    notes: List[str]
    evidence: List[str]  # the header line, then the culprit's, addresses kept
    span: Optional[List[int]]  # [start, end): the bytes of the source the report was read from


class TriageSource(TypedDict):
    source: str
    why: str


class _DumpTriage(TypedDict):
    dump: Optional[DumpEntry]
    dumps: int
    report: Optional[Report]
    source: Optional[str]
    tried: List[TriageSource]


class DumpTriage(_DumpTriage, total=False):
    """`dumps.triage`: what killed the host, from the cheapest kernel log that has it."""

    origin: str  # the file or boot the log came from
    stale: Optional[str]  # why this log is not the last boot's (a pstore record of an earlier crash)
    output_id: str  # the report's part of the log, kept on the host
    log_bytes: int


class DumpModules(TypedDict):
    loaded: List[str]
    failed: Dict[str, str]


class DumpOpen(DumpSession, CommandReply, total=False):
    """`dumps.open`: the session and its first command's answer; while a debuginfod download
    runs, only the download's keys (fetching true, build_id, bytes, what...)."""

    reused: bool
    command: str
    notes: List[str]
    warnings: List[str]
    modules: DumpModules
    fetching: bool
    build_id: str
    what: str


class ScriptEntry(TypedDict):
    name: str
    description: str


class DumpScripts(TypedDict):
    """`dumps.scripts`."""

    scripts: List[ScriptEntry]
    drgn_code: bool


class ToolFact(TypedDict, total=False):
    present: bool
    path: Optional[str]
    version: Optional[str]
    probed: bool


class Facts(TypedDict, total=False):
    """`facts` (agent/facts.py); `hello` carries them too."""

    hostname: str
    kernel: str
    arch: str
    distro: Dict[str, str]
    python: str
    agent: Dict[str, Any]
    uid: int
    btf: bool
    tracefs: Optional[str]
    kcore: bool
    boot_id: str
    uptime_s: float
    store: Dict[str, Any]
    sandbox: Dict[str, Any]
    tools: Dict[str, ToolFact]


class Hello(TypedDict, total=False):
    """`hello`. All optional: an agent of another protocol may send less (the controller checks)."""

    protocol: int
    build: str
    version: str
    policy: Dict[str, Any]
    facts: Facts
    lease: Optional[Dict[str, Any]]
    running_jobs: int
    installed: str  # not the agent's: the controller notes where a deployed agent lives
