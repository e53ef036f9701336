"""A kernel crash named from its kernel log, the way kernel engineers and crash-report systems do.

`parse(text)` and `scan(path_or_bytes)` answer one `Oops`: a title "KIND in CULPRIT" (e.g.
"BUG: soft lockup in cfx_spin_wait [cfx_spin]"), and the frames, modules, taint, notes and log
lines behind it. Hosts whose logs give one title crashed of one bug, so a title holds no address,
offset, CPU number, PID, time, line number or kernel release.

The rules:
- Which report. The text's LAST boot is read (the kernel's "Linux version N (" banner starts
  one); when it holds no report (a capture kernel's boot, a clean reboot), the last boot that
  does, with a note. Its FIRST report is the cause; later ones are counted (`oopses`) and named in
  a note. A "Kernel panic - not syncing" line, or the "Oops: ... [#1]" line of a fault, belongs to
  the report before it: neither is a second report. A panic alone names the report it ends
  ("softlockup: hung tasks", "Hard LOCKUP", "RCU Stall", "panic_on_warn set"), with a note.
- KIND comes from the report's header line: BUG: soft lockup; BUG: kernel NULL pointer
  dereference; BUG: unable to handle page fault (older kernels' "unable to handle kernel paging
  request", and arm64's "Unable to handle kernel ... at virtual address", name the same kinds);
  general protection fault; divide error; double fault; invalid opcode; kernel BUG (at FILE:LINE;
  the line goes); WARNING; INFO: task hung; INFO: rcu detected stall; hard LOCKUP; KASAN: TYPE
  Read/Write; UBSAN: TYPE; BUG: scheduling while atomic; BUG: sleeping function called from
  invalid context; list_add/list_del corruption; stack-protector; Out of memory (panic_on_oom);
  Attempted to kill init; sysrq-triggered crash; any other "BUG: ..." up to its first detail;
  and "panic: MESSAGE" (addresses stripped) for any other "Kernel panic - not syncing:" line.
- CULPRIT is the first frame that says WHY:
  - faults, BUG(), WARNING, soft and hard lockups, RCU stalls: the code that was running, i.e. the
    kernel `RIP:` (x86), `pc :` (arm64) or crash's `[exception RIP: ...]` line, then the frames
    after it (a RIP in no function, "RIP: 0010:0x0", leaves its caller); with no RIP (cut off),
    the frames after the last </IRQ> or </NMI> (the interrupted context): a lockup is never named
    after the watchdog that caught it, nor after a CPU's idle loop;
  - WARNING, KASAN and stack-protector: the function their own line names, unless generic;
  - hung tasks, sleeping in atomic context, UBSAN, lockdep and panics: the report's stack;
  - OOM panics: the comm of the task with the most rss in the OOM task table, else the task
    that invoked the OOM killer.
  Frames that say HOW the kernel died are skipped (GENERIC below: panic, oops and BUG paths,
  exception, interrupt and NMI entry, watchdog, hrtimer and tick code, printk and stack dumps,
  lock primitives and lock debugging, scheduler and wait primitives, KASAN/UBSAN internals,
  allocator entry points, memory and string primitives, list and refcount checkers, retpoline
  thunks), so are `?` (unreliable) entries; compiler suffixes (.cold, .isra.N, .constprop.N,
  .part.N, .llvm.N) are stripped, and a stack stops at the syscall entry, ret_from_fork or the
  idle loop (BOUNDARY). A culprit in a module is named with it: "... in cfx_flush_ring [cfx_ring]".
- Robustness: line prefixes (dmesg times, printk caller ids "[ T95]"/"[ C0]", syslog and journal
  stamps, "<4>" levels, /dev/kmsg records, ANSI and CR noise) are removed; bytes are decoded with
  replacement; with caller ids another CPU's lines are set aside (`interleaved`), without them a
  second report inside the first is flagged; a report cut off is titled from what survived
  (`truncated`); a garbled line still names its function; a title never comes from a guess (a
  lost RIP, a garbled line, a lost header) without a note saying so.
- Speed: `scan` never loops over lines in Python outside a bounded window. It finds the boots
  with one regex, a report's stack ("Call Trace") with one literal search, checks the bytes
  before each stack (and the text's tail) with one `find` per ANCHORS entry, and parses at most
  BEFORE + AFTER bytes around the first header.
"""

from __future__ import annotations

import mmap
import os
import re
import sys
from typing import Callable, Dict, List, Match, NamedTuple, Optional, Pattern, Sequence, Tuple, Union

from .. import protocol

MAX_BYTES = 256 << 20  # scan(): a bigger file is read from its end
DIRECT = 1 << 20  # a region this small is searched whole; beyond it, near stacks and the tail
TRACE_REACH = 64 << 10  # the farthest a header is printed before its "Call Trace" (an RCU stall lists its CPUs)
BEFORE = 8 << 10  # context kept before the first header (a list corruption message printed before BUG())
AFTER = 512 << 10  # the report, its panic and later reports
OOM_REACH = 8 << 20  # back from an OOM panic to its "invoked oom-killer" (the task table can be long)
MAX_FRAMES = 6
LINE_CHARS = 300
KIND_CHARS = 120

Buffer = Union[bytes, mmap.mmap]


Oops = protocol.Report  # the answer's shape is the wire's


# -- finding the first report in a big log, on bytes --------------------------------------------

BOOT = re.compile(r"Linux version \d\S* \(")  # "Linux version 6.1.0-57-cloud-amd64 (debian-kernel@..."
TRACE = re.compile(rb"Call [Tt]race")  # a literal prefix: re scans for it at memchr speed
# Every header line holds one of these; each is verified by header() on its decoded line.
ANCHORS = (
    b"Kernel panic - not syncing",
    b"BUG",  # "BUG: ...", "kernel BUG at": one find, not two (each find reads every byte)
    b"WARNING: ",
    b"INFO: task ",
    b"d stall",  # RCU's "detected stalls", "self-detected stall", "detected expedited stalls"
    b"hard LOCKUP",
    b"UBSAN: ",
    b"Unable to handle kernel ",
    b"PANIC: double fault",
    b" [#",  # the die() line of every x86 and arm64 oops: "Oops: 0002 [#1] PREEMPT SMP"
)


def scan(source: Union[str, os.PathLike[str], bytes, bytearray, memoryview], max_bytes: int = MAX_BYTES) -> Oops:
    """The first report of the last boot that has one, in a file (its last max_bytes) or bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = source if isinstance(source, bytes) else bytes(source)
        return _scan(data, max(0, len(data) - max_bytes), len(data))
    with open(source, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            return _scan(b"", 0, 0)
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return _scan(mapped, max(0, size - max_bytes), size)


def parse(text: Union[str, bytes]) -> Oops:
    """The first report of the last boot that has one, in a kernel log's text."""
    data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    return _scan(data, 0, len(data))


def _scan(buf: Buffer, lo: int, hi: int) -> Oops:
    notes: List[str] = []
    if lo > 0:
        notes.append("Only the last %d MiB of %d MiB were read." % (((hi - lo) >> 20), hi >> 20))
        newline = buf.find(b"\n", lo, hi)
        lo = hi if newline < 0 else newline + 1  # from a whole line
    end, later = hi, 0
    while end > lo or (end == lo == hi and later == 0):
        start = _boot_before(buf, lo, end)
        at = _first_header(buf, start, end)
        if at is not None:
            if later:
                notes.append(
                    "The last %d boot(s) in the text hold no report (a capture kernel or a reboot): "
                    "this report is from the boot before them." % later
                )
            return _window(buf, start, end, at, notes)
        end, later = start, later + 1
    result = _empty(notes)
    result["notes"].append(NOTHING)
    return result


def _boot_before(buf: Buffer, lo: int, end: int) -> int:
    """Where the last boot before `end` starts: its "Linux version N" line, or the text's start."""
    at = end
    while True:
        at = buf.rfind(b"Linux version ", lo, at)
        if at < 0:
            return lo
        start = max(lo, buf.rfind(b"\n", lo, at) + 1)
        line_end = buf.find(b"\n", at, end)
        line = _line(bytes(buf[start : end if line_end < 0 else line_end]).decode("utf-8", "replace"))
        if BOOT.match(line.body):  # the kernel's banner starts its message; a mention does not
            return start


def _first_header(buf: Buffer, lo: int, hi: int) -> Optional[int]:
    """The start of the first header line in [lo, hi).

    A report prints its stack soon after its header, so in a big region only the bytes up to
    TRACE_REACH before each "Call Trace" are searched: stacks closer than that make one span,
    extended a reach at a time by a backward find (not a Python step per stack). Then the last
    DIRECT bytes, where a report cut off before its stack would be."""
    if hi - lo <= DIRECT:
        return _search(buf, lo, hi)
    found, pos = None, lo
    while found is None:
        match = TRACE.search(buf, pos, hi)
        if match is None:
            break
        begin, end = max(pos, match.start() - TRACE_REACH), match.start()
        while True:
            reach = min(hi, end + TRACE_REACH)
            further = max(buf.rfind(b"Call Trace", end + 1, reach), buf.rfind(b"Call trace", end + 1, reach))
            if further < 0:
                break
            end = further
        found = _search(buf, begin, end)
        pos = end + 1
    tail = hi - DIRECT
    if found is not None and found < tail:
        return found
    last = _search(buf, tail, hi)
    return last if found is None or (last is not None and last < found) else found


def _search(buf: Buffer, lo: int, hi: int) -> Optional[int]:
    """The start of the first line in [lo, hi) that header() accepts: one find per anchor."""
    best: Optional[int] = None
    for anchor in ANCHORS:
        at = buf.find(anchor, lo, hi if best is None else best)
        while at >= 0:
            start = buf.rfind(b"\n", 0, at) + 1
            end = buf.find(b"\n", at, hi)
            end = hi if end < 0 else end
            if any(header(line.body) for line in _lines(bytes(buf[start:end]))):  # CRs split it further
                best = start
                break
            at = buf.find(anchor, end, hi if best is None else best)
    return best


def _window(buf: Buffer, lo: int, hi: int, at: int, notes: List[str]) -> Oops:
    """Parse the lines around the header at `at`: BEFORE bytes before it (more for an OOM panic,
    back to its "invoked oom-killer"), AFTER bytes after it."""
    begin = max(lo, at - BEFORE)
    head_end = buf.find(b"\n", at, hi)
    head = bytes(buf[at : hi if head_end < 0 else head_end])
    if b"Out of memory" in head or b"deadlocked on memory" in head:
        invoked = buf.rfind(b"invoked oom-killer", max(lo, at - OOM_REACH), at)
        begin = min(begin, invoked) if invoked >= 0 else begin
    begin = max(lo, buf.rfind(b"\n", lo, begin) + 1)  # the whole line `begin` falls in
    end = min(hi, at + AFTER)
    whole = end >= hi
    if not whole:
        newline = buf.rfind(b"\n", at, end)
        end = end if newline < 0 else newline + 1
    before = _lines(bytes(buf[begin:at]))
    after = _lines(bytes(buf[at:end]))
    result = _analyse(before + after, len(before), whole)
    result["span"] = [begin, end]
    if not whole:
        result["notes"].append("Reports were counted in the %d KiB after the first one only." % (AFTER >> 10))
    result["notes"][:0] = notes
    return result


# -- lines: prefixes off, printk caller ids kept -------------------------------------------------


class Line(NamedTuple):
    raw: str  # the line as logged, control characters removed
    body: str  # the kernel's message: times, levels, syslog and caller prefixes removed
    ctx: str  # the printk caller id ("T95", "C0"), "" when the log has none


CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f]")
SYSLOG = re.compile(
    r"(?:[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d(?:\.\d+)?|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?"
    r"(?:Z|[+-]\d\d:?\d\d)?) +\S+ +(?P<ident>[^\s:\[]+)(?:\[\d+\])?: "
)
PREFIXES = (
    re.compile(r"\d+,\d+,\d+,[^;]*?(?:caller=(?P<ctx>[TC]\d+))?[^;]*;"),  # a /dev/kmsg record
    re.compile(r"(?:kern|user|daemon|syslog|auth|local\d) *:(?:emerg|alert|crit|err|warn|notice|info|debug) *: "),
    re.compile(r"<\d{1,3}>"),  # a log level (crash's `log -m` puts it after the time)
    re.compile(r"\[ *\d+\.\d+\] ?"),  # dmesg's time
    re.compile(r"\[[A-Z][a-z]{2} [A-Z][a-z]{2} +\d+ \d\d:\d\d:\d\d \d{4}\] ?"),  # dmesg -T
    re.compile(r"\[ *(?P<ctx>[TC]\d+)\] ?"),  # printk's caller id (CONFIG_PRINTK_CALLER)
    re.compile(r"(?:[\w.-]+ )?kernel: "),  # journalctl -o short-monotonic: "[ 1.2] host kernel: "
)
CRASH_PANIC = re.compile(r'^\s*PANIC: "(.*?)"')  # crash's `sys`


def _lines(data: bytes) -> List[Line]:
    return [_line(raw) for raw in data.decode("utf-8", "replace").splitlines()]


def _line(raw: str) -> Line:
    raw = CONTROL.sub("", raw).rstrip()
    pos, ctx = 0, ""
    syslog = SYSLOG.match(raw)
    if syslog:
        if syslog.group("ident") != "kernel":
            return Line(raw, "", "")  # another program's line in a syslog or journal
        pos = syslog.end()
    for _ in range(len(PREFIXES) + 1):
        for prefix in PREFIXES:
            match = prefix.match(raw, pos)
            if match and match.end() > pos:
                if "ctx" in prefix.groupindex and match.group("ctx"):
                    ctx = match.group("ctx")
                pos = match.end()
                break
        else:
            break
    body = raw[pos:]
    panic = CRASH_PANIC.match(body)
    return Line(raw, panic.group(1) if panic else body, ctx)


# -- header lines ---------------------------------------------------------------------------------


class Header(NamedTuple):
    family: str  # "pre": a fault's first line, its die() line follows; "die"; "panic"; "report"
    kind: str
    strategy: str  # where the culprit is: "rip" (the running code), "stack" (the first stack), "oom", "none"
    detail: Optional[str] = None
    func: Optional[str] = None  # a function the line names itself (WARNING, KASAN, stack-protector)
    module: Optional[str] = None
    named: bool = True  # False: the title is the kind alone (sysrq, init, generic panics)
    lost: bool = False  # a panic naming a report whose own lines are missing from the text


SYM = r"(?P<fn>[A-Za-z_.$][\w.$]*)\+0x[0-9a-f]+/0x[0-9a-f]+(?:\(\))?(?:\s+\[(?P<mod>[\w-]+)[^\]]*\])?"
SYMBOL = re.compile(SYM, re.A)
PR_FMT = r"(?:(?:NMI )?watchdog: |rcu: |traps: |kernel: )?"
ADDRESS = re.compile(r"(?:0x)?([0-9a-f]{8,16})\b")
ARM64_FAULTS = {
    "NULL pointer dereference": "BUG: kernel NULL pointer dereference",
    "paging request": "BUG: unable to handle page fault",
}


def _symbol(text: str) -> Tuple[Optional[str], Optional[str]]:
    match = SYMBOL.search(text)
    return (match.group("fn"), match.group("mod")) if match else (None, None)


def _cut(text: str) -> str:
    """A header's words up to its first detail: "Bad page state in process x" -> "Bad page state"."""
    words: List[str] = []
    for word in text.split():
        if any(ch.isdigit() for ch in word) or word in ("-", "in", "at", "on", "for", "of") or word.startswith("("):
            break
        cut = re.split(r"[,:!]", word, maxsplit=1)
        if cut[0]:
            words.append(cut[0])
        if cut[0] != word:
            break
    return " ".join(words)[:KIND_CHARS]


def _bug(match: Match[str]) -> Header:
    text = match.group(1)
    kasan = re.match(r"KASAN: ([\w-]+)(?: (?:in|on) (.*))?", text)
    if kasan:
        fn, mod = _symbol(kasan.group(2) or "")
        return Header("report", "KASAN: " + kasan.group(1), "stack", None, fn, mod)
    if text.startswith("soft lockup"):
        comm = re.search(r"\[(.*):\d+\]", text)
        return Header("report", "BUG: soft lockup", "rip", "task " + _comm(comm.group(1)) if comm else None)
    address = re.search(r"(?:address:|at) *(\S+)", text)
    where = _address_class(address.group(1)) if address else None
    if re.match(r"(?:unable to handle )?kernel NULL pointer dereference", text):
        return Header("pre", "BUG: kernel NULL pointer dereference", "rip", where)
    if re.match(r"unable to handle (?:page fault|kernel paging request)", text):
        return Header("pre", "BUG: unable to handle page fault", "rip", where)
    if "stack guard page was hit" in text:
        return Header("pre", "BUG: stack guard page was hit", "rip")
    sleeping = re.match(r"sleeping function called from invalid context at (\S+)", text)
    if sleeping:
        return Header("report", "BUG: sleeping function called from invalid context", "stack", sleeping.group(1))
    atomic = re.match(r"scheduling while atomic: (.*?)/\d+/", text)
    if atomic:
        return Header("report", "BUG: scheduling while atomic", "stack", "task " + _comm(atomic.group(1)))
    kind = _cut(text)
    return Header("report", "BUG: " + kind, "stack") if kind else Header("report", "BUG", "stack")


def _warning(match: Match[str]) -> Header:
    where = match.group(1)
    place = re.match(r"(\S+?):(\d+) ", where)
    fn, mod = _symbol(where)
    if fn is None:  # 3.x: "WARNING: at drivers/x.c:12 func()"
        old = re.search(r" ([A-Za-z_][\w.]*)\(\)", where)
        fn = old.group(1) if old else None
    return Header("report", "WARNING", "rip", "%s:%s" % place.groups() if place else None, fn, mod)


def _lockdep(match: Match[str]) -> Header:
    return Header("report", "WARNING: " + match.group(1).rstrip("!"), "stack")


def _kernel_bug(match: Match[str]) -> Header:
    return Header("pre", "kernel BUG", "rip", "%s:%s" % (match.group(1), match.group(2)))


def _kernel_bug_sym(match: Match[str]) -> Header:
    fn, mod = _symbol(match.group(1))
    return Header("pre", "kernel BUG", "rip", None, fn, mod)


def _hung(match: Match[str]) -> Header:
    return Header("report", "INFO: task hung", "stack", "task " + _comm(match.group(1)))


def _rcu(_match: Match[str]) -> Header:
    return Header("report", "INFO: rcu detected stall", "rip")


def _hard(_match: Match[str]) -> Header:
    return Header("report", "hard LOCKUP", "rip")


def _ubsan(match: Match[str]) -> Header:
    return Header("report", "UBSAN: " + match.group(1), "stack", match.group(2))


def _arm64(match: Match[str]) -> Header:
    what = match.group(1)
    kind = ARM64_FAULTS.get(what, "Unable to handle kernel " + what)
    return Header("pre", kind, "rip", _address_class(match.group(2)))


def _double(_match: Match[str]) -> Header:
    return Header("pre", "double fault", "rip")


def _list(match: Match[str]) -> Header:
    message = ADDRESS.sub("ADDR", match.group(0))
    return Header("pre", match.group(1) + " corruption", "rip", message[:KIND_CHARS])


def _panic(match: Match[str]) -> Header:
    message = match.group(1).strip()
    for pattern, make in PANICS:
        found = pattern.match(message)
        if found:
            return make(found)
    return Header("panic", "panic: " + _scrub(message), "stack", named=False)


def _die(match: Match[str]) -> Header:
    what = re.sub(r"^(?:Oops: )+(?=.)", "", match.group(1))  # 6.9+ puts "Oops: " before every die string
    for pattern, kind in DIE_KINDS:
        if re.match(pattern, what):
            detail = None
            if kind == "general protection fault":
                address = re.search(r"address (\S+)", what)
                detail = _address_class(address.group(1)) if address else None
                if what.startswith("segment-related"):
                    detail = "segment-related"
            return Header("die", kind, "rip", detail)
    return Header("die", _scrub(what), "rip")


DIE_KINDS = (
    (r"Oops$", "Oops"),
    (r"(?:segment-related )?general protection fault", "general protection fault"),
    (r"divide error", "divide error"),
    (r"invalid opcode", "invalid opcode"),
    (r"double fault", "double fault"),
    (r"stack segment", "stack segment fault"),
    (r"stack guard page", "BUG: stack guard page was hit"),
    (r"Internal error: Oops - BUG$", "kernel BUG"),
    (r"Internal error: Oops$", "Internal error: Oops"),
)

# What a panic message names, when no report came before it.
PANICS: Tuple[Tuple[Pattern[str], Callable[[Match[str]], Header]], ...] = (
    (re.compile(r"sysrq triggered crash"), lambda m: Header("panic", "sysrq-triggered crash", "stack", named=False)),
    (
        re.compile(r"Attempted to kill init!(?: exitcode=(0x[0-9a-f]+))?"),
        lambda m: Header(
            "panic", "Attempted to kill init", "stack", "exitcode=" + m.group(1) if m.group(1) else None, named=False
        ),
    ),
    (
        re.compile(r"stack-protector: Kernel stack is corrupted in: (.*)"),
        lambda m: Header("panic", "stack-protector: Kernel stack is corrupted", "stack", None, *_symbol(m.group(1))),
    ),
    (
        re.compile(r"Out of memory: (\S+) panic_on_oom is enabled"),
        lambda m: Header("panic", "Out of memory (panic_on_oom)", "oom", m.group(1) + " panic_on_oom"),
    ),
    (
        re.compile(r"System is deadlocked on memory|Out of memory and no killable processes"),
        lambda m: Header("panic", "Out of memory (System is deadlocked on memory)", "oom", "no killable processes"),
    ),
    # Panics that end a report: first only when the report's own lines are lost. The panic's stack
    # still holds the lockup's interrupted RIP or the WARN's; a hung task's panic is khungtaskd's.
    (re.compile(r"softlockup: hung tasks"), lambda m: Header("panic", "BUG: soft lockup", "rip", lost=True)),
    (re.compile(r"Hard LOCKUP"), lambda m: Header("panic", "hard LOCKUP", "rip", lost=True)),
    (re.compile(r"hung_task: blocked tasks"), lambda m: Header("panic", "INFO: task hung", "none", lost=True)),
    (re.compile(r"RCU Stall"), lambda m: Header("panic", "INFO: rcu detected stall", "rip", lost=True)),
    (
        re.compile(r"(?:(KASAN|UBSAN): )?(?:[\w ]+: )?panic_on_warn set"),
        lambda m: Header("panic", m.group(1) or "WARNING", "stack" if m.group(1) else "rip", lost=True),
    ),
)

HEADERS = (
    (re.compile(PR_FMT + r"BUG: (.*)"), _bug),
    (re.compile(r"kernel BUG at ([^:\s]+):(\d+)"), _kernel_bug),
    (re.compile(r"Kernel BUG at (.+?) \[verbose debug info unavailable\]"), _kernel_bug_sym),
    (re.compile(r"WARNING: (?:CPU: \d+ PID: \d+ )?at (.*)"), _warning),
    (
        re.compile(
            r"WARNING: (possible circular locking dependency detected|possible recursive locking detected|"
            r"inconsistent lock state|suspicious RCU usage|possible irq lock inversion dependency detected|"
            r"bad unlock balance detected!|held lock freed!|lock held when returning to user space!)"
        ),
        _lockdep,
    ),
    (re.compile(r"INFO: task (.+):\d+ blocked for more than \d+ seconds"), _hung),
    (re.compile(PR_FMT + r"INFO: (?:rcu_\w+|rcu) (?:self-)?detected (?:expedited )?stall"), _rcu),
    (re.compile(PR_FMT + r"Watchdog detected hard LOCKUP on cpu \d+"), _hard),
    (re.compile(r"UBSAN: (.+?) in (\S+)"), _ubsan),
    (re.compile(r"Unable to handle kernel (.+?) at virtual address (\S+)"), _arm64),
    (re.compile(PR_FMT + r"PANIC: double fault"), _double),
    (re.compile(r"(list_add|list_del) corruption.*"), _list),
    (re.compile(r"Kernel panic - not syncing: ?(.*)"), _panic),
    # die()'s string has no colon but for arm64's "Internal error: " and 6.9's "Oops: " before it
    (re.compile(r"((?:Oops: )*(?:Internal error: )?[A-Za-z][^#\"'\[\]:]*?): [0-9a-f]{3,16} \[#\d+\]"), _die),
)


def header(body: str) -> Optional[Header]:
    """The header a log line's message is, if it starts a report (or a report's next part)."""
    text = body.strip()
    if not text:
        return None
    for pattern, make in HEADERS:
        match = pattern.match(text)
        if match:
            return make(match)
    return None


def _address_class(text: str) -> Optional[str]:
    """What kind of address a fault was at: null, poison, user, kernel or non-canonical."""
    digits = text.lower()[2:] if text.lower().startswith("0x") else text.lower()
    if digits == "(null)":
        return "null address"
    try:
        value = int(digits, 16)
    except ValueError:
        return None
    if re.search(r"dead0000|6b6b6b6b|5a5a5a5a|a5a5a5a5|cccccccc", digits):
        return "poison address"
    if value < 0x1000:
        return "null address"
    top = value >> 48
    return "user address" if top == 0 else "kernel address" if top == 0xFFFF else "non-canonical address"


def _comm(comm: str) -> str:
    """A task's name without its per-cpu or worker number: "kworker/u8:2" -> "kworker"."""
    return re.sub(r"/u?\d+(?::\d+\w?)?$", "", comm.strip()) or comm.strip()


def _scrub(text: str) -> str:
    """A message without addresses, offsets or CPU numbers."""
    text = re.sub(r"([A-Za-z_.$][\w.$]*)\+0x[0-9a-f]+/0x[0-9a-f]+", r"\1", text)
    text = re.sub(r"\b0x[0-9a-fA-F]+\b|\b[0-9a-f]{8,16}\b", "ADDR", text)
    text = re.sub(r"\bCPU ?#?\d+", "CPU", text)
    return re.sub(r"\s+", " ", text).strip()[:KIND_CHARS]


# -- frames ---------------------------------------------------------------------------------------


class Event(NamedTuple):
    type: str  # frame, rip, urip (user mode regs), open, close, trace, end, reg, header, blank, other
    line: int
    fn: Optional[str] = None  # a frame's or RIP's function; a marker's name (IRQ, NMI, TASK)
    module: Optional[str] = None
    unreliable: bool = False
    found: Optional[Header] = None  # a header line's header
    garbled: bool = False  # a RIP line whose symbol lost its offset and module to noise


# A frame line, after any bytes a noisy console mangled (not ASCII) before it.
FRAME = re.compile(r"^[^\x00-\x7f]*\s*(?:\[<?[0-9a-f]+>?\]\s*)*(?P<q>\?\s+)?" + SYM)
RAW_FRAME = re.compile(r"^\s*(?:\?\s+)?(?:\[<[0-9a-f]+>\]\s*)?0x[0-9a-f]+\s*$")  # "? 0xffffffffc020c000": no symbol
CRASH_FRAME = re.compile(
    r"^\s*#\d+\s+\[[0-9a-f]+\]\s+(?P<fn>[A-Za-z_.$][\w.$]*)\s+at\s+[0-9a-f]+(?:\s+\[(?P<mod>[\w-]+)\])?", re.A
)
RIP = re.compile(
    r"^\s*(?:RIP|EIP|IP|pc|PC is at)\s?:?\s*(?:(?P<cs>[0-9a-f]{4}):)?(?:\[<[0-9a-f]+>\]\s*)*(?:"
    + SYM
    + r"|(?P<garbled>[A-Za-z_.$][\w.$]*)\+\S*|(?P<raw>\S+))",  # "name+" whose offset a noisy line lost
    re.A,
)
EXCEPTION_RIP = re.compile(r"^\s*\[exception RIP: (?P<fn>[A-Za-z_.$][\w.$]*)(?:\+\d+)?\]", re.A)
MARK = re.compile(r"^\s*<(?P<close>/?)(?P<name>IRQ|NMI|TASK|SOFTIRQ|EOI|#[A-Z0-9]+|ENTRY_TRAMPOLINE|SYSENTER)>\s*$")
TRACE_START = re.compile(r"^\s*(?:Call Trace:|Call trace:|Backtrace:|PID: \d+\s+TASK: )")
END = re.compile(r"^\s*---\[ end (?:trace|Kernel panic)")
REGISTERS = re.compile(
    r"^\s*(?:Code: |RSP: |RAX: |RDX: |RBP: |RSI: |R\d+: |FS: |CS: |CR2: |DR\d: |PKRU: |ORIG_RAX: |"
    r"EAX: |ESI: |DS: |CR0: |lr : |sp : |pstate: |x\d+ ?: |RIP: [0-9a-f]{16} )"
)
CPU_LINE = re.compile(r"^CPU: (\d+) PID: \d+ Comm: ")
TAINT = re.compile(r"(?:^|\s)(?:Tainted: (?P<flags>[A-Z ]*[A-Z])|Not tainted)(?:\s|$)")
SUFFIX = re.compile(r"(?:\.(?:cold|isra|constprop|part|llvm|lto_priv|localalias|clone|\d+)(?:\.\d+)?)+$")


def _event(index: int, body: str) -> Event:
    if not body.strip():
        return Event("blank", index)  # KASAN prints empty lines inside its report; consoles add some
    match = FRAME.match(body)
    if match:
        garbled = match.group("mod") is None and "[" in body[match.end() :]  # "[cfx_ri": its module cut
        return Event("frame", index, match.group("fn"), match.group("mod"), bool(match.group("q")), garbled=garbled)
    match = CRASH_FRAME.match(body)
    if match:
        return Event("frame", index, match.group("fn"), match.group("mod"))
    if RAW_FRAME.match(body):
        return Event("frame", index, unreliable=True)
    match = EXCEPTION_RIP.match(body)
    if match:
        return Event("rip", index, match.group("fn"))
    if REGISTERS.match(body):
        return Event("reg", index)
    match = RIP.match(body)
    if match:
        return _rip_event(index, match)
    match = MARK.match(body)
    if match:
        return Event(
            "close" if match.group("close") or match.group("name") == "EOI" else "open", index, match.group("name")
        )
    if TRACE_START.match(body):
        return Event("trace", index)
    if END.match(body):
        return Event("end", index)
    found = header(body)
    return Event("header", index, found=found) if found else Event("other", index)


def _rip_event(index: int, match: Match[str]) -> Event:
    """A RIP/pc line: kernel mode when symbolized or in the kernel's code segment (0010)."""
    if match.group("cs") in ("0033", "0023", "002b"):
        return Event("urip", index)
    if match.group("fn"):
        garbled = match.group("mod") is None and "[" in match.string[match.end() :]
        return Event("rip", index, match.group("fn"), match.group("mod"), garbled=garbled)
    if match.group("garbled"):
        return Event("rip", index, match.group("garbled"), garbled=True)
    if match.group("cs") == "0010":
        return Event("rip", index)  # "RIP: 0010:0x0": a call through a NULL pointer, no symbol
    return Event("other", index)


def name(fn: str) -> str:
    """A function's name without the compiler's suffixes: "ext4_da_map_blocks.constprop.0" -> "ext4_da_map_blocks"."""
    return SUFFIX.sub("", fn) or fn


GENERIC = re.compile(
    r"(?:"
    # panic, oops, BUG and WARN paths
    r"v?panic|nmi_panic|__?crash_kexec|machine_kexec|oops_\w+|__?die(?:_body|_header|_addr)?|make_task_dead|"
    r"do_(?:error_)?trap\w*|handle_(?:bug|invalid_op)|__?report_bug|__warn(?:_printk)?|warn_slowpath\w*|"
    r"check_panic_on_warn|__stack_chk_fail|bug_handler|call_break_hook|brk_handler|arm64_notify_die|"
    r"die_kernel_fault|__do_kernel_fault|"
    # exception, interrupt and NMI entry
    r"asm_\w+|exc_\w+|__?sysvec_\w+|\w*apic_timer_interrupt|common_interrupt|ret_from_intr|error_entry|"
    r"__?irq_exit\w*|handle_(?:edge|level|fasteoi)_irq|__?handle_irq_event\w*|handle_irq\w*|do_IRQ|"
    r"__?do_softirq\w*|invoke_softirq|page_fault_oops|kernelmode_fixup_or_oops|__?bad_area\w*|"
    r"do_(?:user|kern)_addr_fault|handle_page_fault|no_context|do_page_fault|page_fault|do_mem_abort|"
    r"do_translation_fault|do_el1_\w+|el1h?_\w+|gic_handle_irq|\w*handle_domain_irq|call_on_irq_stack|"
    r"do_interrupt_handler|fixup_exception|ex_handler_\w+|handle_stack_overflow|do_general_protection|"
    r"do_divide_error|do_invalid_op|invalid_op|divide_error|general_protection|double_fault|"
    r"nmi_handle|default_do_nmi|do_nmi|nmi|end_repeat_nmi|repeat_nmi|first_nmi|nmi_restore|"
    r"nmi_cpu_backtrace\w*|\w*trigger_\w*backtrace\w*|perf_event_nmi_handler|__?perf_event_overflow|"
    r"\w+_pmu_handle_irq|handle_pmi_common|"
    # watchdogs, timers, ticks, RCU's stall checks
    r"watchdog(?:_\w+)?|softlockup_fn|check_hung_\w+|__?hrtimer_\w+|hrtimer_interrupt|tick_\w+|"
    r"update_process_times|scheduler_tick|__?run_timers?\w*|run_timer_softirq|call_timer_fn|expire_timers|"
    r"timer_interrupt|arch_timer_handler_\w+|print_(?:other_)?cpu_stall\w*|check_cpu_stall|"
    r"rcu_(?:sched_clock_irq|pending|check_callbacks|dump_cpu_stacks|core|core_si|do_batch)|dump_cpu_task|"
    # printing the report
    r"dump_stack\w*|show_(?:stack|regs|trace_log_lvl|fault_oops|opcodes|iret_regs|ip)\w*|__show_regs|"
    r"_?printk\w*|vprintk\w*|console_\w+|dump_backtrace|print_modules|dump_header|dump_tasks|"
    # locks, their debugging, and spinning on them
    r"lock_(?:acquire|release|acquired|contended)|__lock_acquire\w*|lockdep_\w+|mark_lock\w*|"
    r"validate_chain|check_prev_add|debug_lockdep_\w+|do_raw_(?:spin|read|write)_\w+|"
    r"_?_?raw_(?:spin|read|write)_\w+|\w*queued_(?:spin|read|write)_lock\w*|\w*pv_\w*spin_lock\w*|"
    r"arch_spin_\w+|debug_spin_lock\w*|"
    # the scheduler and waiting
    r"__schedule|schedule|schedule_(?:timeout\w*|preempt_disabled|hrtimeout\w*|idle)|io_schedule\w*|"
    r"preempt_schedule\w*|_?_?cond_resched\w*|__schedule_bug|context_switch|__switch_to\w*|"
    r"finish_task_switch\w*|__?mutex_lock\w*|mutex_lock\w*|__mutex_\w+|__?down\w*|"
    r"down(?:_read|_write)?(?:_\w+)?|rwsem_down_\w+|\w*percpu_down_\w+|wait_for_completion\w*|"
    r"__?wait_for_common\w*|do_wait_for_common|\w*wait_on_bit\w*|bit_wait\w*|wait_on_page_bit\w*|"
    r"folio_wait_bit\w*|__?folio_lock\w*|__lock_page\w*|msleep\w*|usleep_range\w*|ssleep|"
    r"__?u?delay|__const_udelay|delay_tsc|delay_halt\w*|rt_mutex\w*|__rt_mutex\w*|rt_spin_lock\w*|"
    r"prepare_to_wait\w*|finish_wait|__?might_(?:sleep|resched|fault)|might_(?:sleep|fault|resched)\w*|"
    r"___might_sleep|synchronize_\w+|__synchronize_\w+|__?wait_rcu_gp|"
    # sanitizers and checkers
    r"kasan_\w+|__kasan_\w+|__asan_\w+|check_memory_region\w*|print_address_description\w*|print_report|"
    r"describe_object\w*|__ubsan_handle_\w+|ubsan_\w+|kmsan_\w+|__msan_\w+|__sanitizer_\w+|"
    r"__?check_object_size|__check_heap_object|usercopy_abort|"
    r"__list_(?:add|del)\w*_valid\w*|__list_del_entry\w*|refcount_warn_saturate|"
    # the allocator's entry points, and memory and string primitives
    r"kfree|kvfree|vfree|kfree_sensitive|kmem_cache_free\w*|__kmem_cache_free\w*|slab_free\w*|__slab_free|"
    r"kmem_cache_alloc\w*|__kmem_cache_alloc\w*|__?kmalloc\w*|kmalloc_trace|slab_alloc\w*|___slab_alloc|"
    r"out_of_memory|oom_kill_process|__alloc_pages_may_oom|__alloc_pages_slowpath\w*|pagefault_out_of_memory|"
    r"__?mem(?:cpy|set|move|cmp|chr|scan)\w*|str(?:n?cpy|scpy|lcpy|n?cat|n?len|n?cmp|r?chr|n?str|sep)|"
    r"kstrdup|kmemdup|_?copy_(?:to|from)_user\w*|__copy_user\w*|copy_user_\w+|rep_movs_alternative|"
    r"__get_user_\w+|__put_user_\w+|raw_copy_\w+|clear_user\w*|"
    # retpolines
    r"__x86_indirect_\w+|__x86_return_thunk"
    r")"
)
# Where a stack leaves the kernel's own work: below these, frames say nothing about the bug.
BOUNDARY = re.compile(
    r"ret_from_fork\w*|entry_SYSCALL\w*|entry_INT80\w*|entry_SYSENTER\w*|do_syscall_(?:64|x64|32_irqs_on)|"
    r"__?do_fast_syscall_32|do_int80_syscall_32|el0t_\w+|el0_svc\w*|do_el0_svc\w*|invoke_syscall\w*|"
    r"start_kernel|x86_64_start_\w+|secondary_startup_64\w*|start_secondary|secondary_start_kernel|"
    r"cpu_startup_entry|do_idle|rest_init|arch_call_rest_init|kernel_init|"
    # the idle loop: a CPU idling is no culprit
    r"default_idle\w*|arch_cpu_idle\w*|native_safe_halt|\w*mwait_idle\w*|acpi_idle_\w+|intel_idle\w*|"
    r"cpuidle_enter\w*|poll_idle|cpu_idle_poll\w*"
)
_generic_cache: Dict[str, bool] = {}


def generic(fn: str) -> bool:
    """Whether a frame says how the kernel died (or waited), not why."""
    known = _generic_cache.get(fn)
    if known is None:
        known = _generic_cache[fn] = bool(GENERIC.fullmatch(name(fn)))
    return known


# -- one report: its extent, culprit and title ---------------------------------------------------

NO_RIP = "No RIP or pc line survived: the culprit is the innermost frame of the stack instead."
NO_SYMBOL = "The RIP is in no known function (a call through a bad pointer?): the culprit is the frame below it."
GARBLED = "The culprit's line is garbled: its name is what is left of it, its module unknown."
NOTHING = (
    "No kernel crash report found: looked for BUG:, kernel BUG at, WARNING:, the Oops/die line "
    "('...: 0000 [#1]'), INFO: task ... blocked, INFO: rcu ... stall, hard LOCKUP, UBSAN:, "
    "Unable to handle kernel, PANIC: double fault and Kernel panic - not syncing lines."
)
# Lines another CPU's report would leave inside this one (its frames, registers, headers).
REPORTISH = ("frame", "rip", "reg", "header", "trace", "open", "close")
LIST_MESSAGE = 3  # lines from a list corruption message to its "kernel BUG at" (a "cut here" between)
AFTER_DONE = 400  # lines kept after a report's stack ended: its panic and the panic's stack


class Report(NamedTuple):
    events: List[Event]  # the first report's lines, its printk context only when caller ids are logged
    head: List[Header]  # its header and the lines continuing it (a die line, a panic)
    done: bool  # its stack was printed to the end
    interleaved: bool


def _analyse(lines: List[Line], start: int, whole: bool) -> Oops:
    """The title of the first report at or after lines[start]."""
    first = max(0, start - LIST_MESSAGE)  # the lines before are context only: no need to classify them
    events = [Event("other", index) for index in range(first)]
    events += [_event(index, lines[index].body) for index in range(first, len(lines))]
    start = next((event.line for event in events[start:] if event.type == "header"), len(lines))
    if start == len(lines):
        return _empty([NOTHING])
    start = _message_before(events, start)
    others = _later(events, start)
    report = _extent(lines, events, start)
    head = _head(report.head)
    result = _empty([])
    result["oopses"] = 1 + len(others)
    result["interleaved"] = report.interleaved
    result["truncated"] = whole and not report.done
    result["taint"] = _taint(lines, start)
    _culprit(result, lines, start, report, head)
    _notes(result, head, others, lines[start].ctx)
    return result


def _message_before(events: List[Event], start: int) -> int:
    """A list corruption message printed just before the BUG() it causes starts that report."""
    for event in reversed(events[max(0, start - LIST_MESSAGE) : start]):
        if event.found is not None and event.found.kind.endswith(" corruption"):
            return event.line
    return start


def _empty(notes: List[str]) -> Oops:
    return Oops(
        title=None,
        kind=None,
        culprit=None,
        culprit_module=None,
        frames=[],
        modules=[],
        taint=None,
        detail=None,
        oopses=0,
        truncated=False,
        interleaved=False,
        notes=notes,
        evidence=[],
        span=None,
    )


def _continues(found: Header, stacked: bool) -> bool:
    """Whether a header continues the report before it: a panic line always does; a fault's die
    line ("Oops: 0002 [#1]") or a list-corruption message does until that report prints a stack."""
    return found.family == "panic" or (found.family in ("pre", "die") and not stacked)


def _later(events: List[Event], start: int) -> List[Header]:
    """The reports after the first one (every printk context's)."""
    later: List[Header] = []
    stacked = False
    for event in events[start + 1 :]:
        if event.type in ("frame", "rip"):
            stacked = True
        elif event.found is not None and not _continues(event.found, stacked):
            later.append(event.found)
            stacked = False
    return later


def _extent(lines: List[Line], events: List[Event], start: int) -> Report:
    """The first report's events, from its header to the next report that starts after its stack
    ended (AFTER_DONE lines at most: a panic's stack may follow)."""
    first = events[start].found
    assert first is not None
    ctx = lines[start].ctx
    stall = first.kind in ("INFO: rcu detected stall", "hard LOCKUP")
    kept: List[Event] = []
    head = [first]
    framed = done = interleaved = False
    left = AFTER_DONE
    for event in events[start + 1 :]:
        line = lines[event.line]
        if ctx and line.ctx and line.ctx != ctx and not (stall and line.ctx.startswith("C")):
            interleaved = interleaved or (not done and event.type in REPORTISH)
            continue  # another task's or CPU's line (printk caller ids tell them apart)
        if event.found is not None:
            if _continues(event.found, framed):
                head.append(event.found)
            elif done:
                break
            else:
                interleaved = True  # another report starts inside this one
        kept.append(event)
        framed = framed or event.type in ("frame", "rip")
        done = done or (_ends(event, framed) and (event.type != "other" or event.line < len(lines) - 1))
        left -= done
        if not left:
            break
    return Report(kept, head, done, interleaved)


def _ends(event: Event, framed: bool) -> bool:
    """Whether this line shows the report's stack was printed to its end."""
    if event.type == "end":
        return True
    if event.type == "frame" and event.fn and BOUNDARY.fullmatch(name(event.fn)):
        return True
    return framed and (event.type == "other" or (event.type == "close" and event.fn == "TASK"))


class Head(NamedTuple):
    kind: str
    strategy: str
    detail: Optional[str]
    func: Optional[str]
    module: Optional[str]
    named: bool
    lost: bool


def _head(head: List[Header]) -> Head:
    """One kind from a header and the lines continuing it: a list corruption message is the news
    in a BUG() or WARN() of lib/list_debug.c; a kernel BUG's file may come from its arm64 die line."""
    first = head[0]
    extra = [found for found in head[1:] if found.family != "panic"]
    for found in [first, *extra]:
        if found.kind.endswith(" corruption"):
            return Head(found.kind, "rip", found.detail, None, None, True, False)
    detail = first.detail or next((found.detail for found in extra if found.kind == first.kind), None)
    # A die line makes any report a fault: its culprit is the faulting RIP.
    strategy = "rip" if any(found.family == "die" for found in extra) else first.strategy
    return Head(first.kind, strategy, detail, first.func, first.module, first.named, first.lost)


def _culprit(result: Oops, lines: List[Line], start: int, report: Report, head: Head) -> None:
    """Fill kind, detail, culprit, frames, modules, title and evidence."""
    kind, detail, named = head.kind, head.detail, head.named
    evidence = [start]
    if head.strategy == "oom":
        comm, row = _oom(lines, start)
        result["culprit"] = comm
        result["title"] = "%s: %s" % (kind, comm) if comm else kind
        evidence += [row] if row is not None else []
        frames = _pick(_stack(report.events))[0]
    else:
        if kind.startswith("KASAN: "):
            access = _kasan_access(report.events, lines)
            kind, detail = (kind + " " + access.split()[0], access) if access else (kind, detail)
        candidates, ripped = (
            _rip(report.events)
            if head.strategy == "rip"
            else (_stack(report.events) if head.strategy == "stack" else [], True)
        )
        frames, unreliable = _pick(candidates)
        if not ripped and frames and not head.func:
            result["notes"].append(NO_RIP)
        rips = [event for event in candidates[:1] if event.type == "rip"]
        if ripped and head.strategy == "rip" and not rips and frames and not head.func:
            result["notes"].append(NO_SYMBOL)
        if unreliable:
            result["notes"].append("Only unreliable ('?') stack entries were printed; the culprit comes from them.")
        if head.func and not generic(head.func):  # the function the header line names
            named_by = Event("frame", start, head.func, head.module or _module_of(head.func, candidates))
            frames = [named_by] + [frame for frame in frames if name(frame.fn or "") != name(head.func)]
        if frames and frames[0].fn:
            if name(frames[0].fn) == "sysrq_handle_crash":  # older kernels oops there instead of panicking
                kind, named = "sysrq-triggered crash", False
            result["culprit"] = name(frames[0].fn)
            result["culprit_module"] = frames[0].module or _module_of(frames[0].fn, candidates)
            evidence.append(frames[0].line)
            if frames[0].garbled:
                result["notes"].append(GARBLED)
        result["title"] = _title(kind, result["culprit"], result["culprit_module"], named, detail)
    result["kind"], result["detail"] = kind, detail
    frames = frames[:MAX_FRAMES]
    result["frames"] = [name(frame.fn or "") for frame in frames]
    modules = [frame.module for frame in frames if frame.module]
    result["modules"] = sorted(set(modules), key=modules.index)
    result["evidence"] = [lines[index].raw[:LINE_CHARS] for index in sorted(set(evidence), key=evidence.index)]


def _title(kind: str, culprit: Optional[str], module: Optional[str], named: bool, detail: Optional[str]) -> str:
    if not named:
        return kind
    if culprit is None:
        if kind == "kernel BUG" and detail:
            return "kernel BUG at " + detail.rsplit(":", 1)[0]  # the file stays, the line goes
        return kind
    return "%s in %s%s" % (kind, culprit, " [%s]" % module if module else "")


def _module_of(fn: str, frames: Sequence[Event]) -> Optional[str]:
    """The module a function is in, from any frame naming it (crash's exception RIP names none)."""
    for frame in frames:
        if frame.fn and name(frame.fn) == name(fn) and frame.module:
            return frame.module
    return None


def _rip(events: List[Event]) -> Tuple[List[Event], bool]:
    """The running code: the first kernel RIP and the frames after it; without one (False), the
    frames after the first stack's last </IRQ> or </NMI> (the context the interrupt stopped)."""
    for index, event in enumerate(events):
        if event.type == "rip":
            return ([event] if event.fn else []) + _frames(events, index + 1), True
    stack = _frames(events, _stack_start(events), whole=True)
    exits = [i for i, event in enumerate(stack) if event.type == "close" and event.fn != "TASK"]
    return ([event for event in stack[exits[-1] + 1 :] if event.type == "frame"] if exits else _only(stack)), False


def _stack(events: List[Event]) -> List[Event]:
    """The frames of the report's first stack (a lone frame line before it, such as "Preemption
    disabled at:"'s, is not its stack)."""
    return _frames(events, _stack_start(events))


def _stack_start(events: List[Event]) -> int:
    """Where the first stack starts: its "Call Trace:" line, or its first two frames in a row when
    that line is lost."""
    for index, event in enumerate(events):
        if event.type == "trace" or (
            event.type == "frame" and index + 1 < len(events) and events[index + 1].type == "frame"
        ):
            return index
    return next((index for index, event in enumerate(events) if event.type == "frame"), len(events))


def _only(events: List[Event]) -> List[Event]:
    return [event for event in events if event.type == "frame"]


def _frames(events: List[Event], index: int, whole: bool = False) -> List[Event]:
    """The frames from events[index] to the end of that stack (markers too when `whole`): a stack
    ends at the end marker, a user-mode RIP, or a line that is not part of a stack after a frame;
    unless `whole`, also at a context's closing marker or at the next kernel RIP (nested regs)."""
    found: List[Event] = []
    framed = False
    for event in events[index:]:
        if event.type in ("end", "urip") or (framed and event.type in ("other", "header", "trace")):
            break
        if framed and not whole and (event.type == "rip" or event.type == "close"):
            break
        if event.type == "frame":
            framed = True
            found.append(event)
        elif whole and event.type in ("open", "close"):
            found.append(event)
    return found if whole else _only(found)


def _pick(candidates: List[Event]) -> Tuple[List[Event], bool]:
    """The frames that say why, innermost first: generic ones and '?' entries skipped, stopped at
    the stack's boundary; the '?' entries only when nothing else was printed."""
    picked = _keep(candidates, reliable=True)
    if picked or not any(event.unreliable for event in candidates):
        return picked, False
    return _keep(candidates, reliable=False), True


def _keep(candidates: List[Event], reliable: bool) -> List[Event]:
    picked: List[Event] = []
    for event in candidates:
        if not event.fn or (reliable and event.unreliable):
            continue
        if BOUNDARY.fullmatch(name(event.fn)):
            break
        if generic(event.fn) or (picked and name(picked[-1].fn or "") == name(event.fn)):
            continue
        picked.append(event)
    return picked


def _kasan_access(events: List[Event], lines: List[Line]) -> Optional[str]:
    """The access a KASAN report caught, from the line after its header: "Read of size 8"."""
    for event in events[:3]:
        access = re.match(r"\s*((?:Read|Write) of size \d+)", lines[event.line].body)
        if access:
            return access.group(1)
    return None


OOM_ROW = r"^\s*\[\s*\d+\]((?:\s+-?\d+){%d})\s+(.+)$"  # the columns between pid and name: %d
OOM_TABLE = re.compile(r"^\s*\[\s*pid\s*\]\s+(.*)\bname\s*$")
OOM_INVOKED = re.compile(r"^\s*(.+?) invoked oom-killer: ")


def _oom(lines: List[Line], start: int) -> Tuple[Optional[str], Optional[int]]:
    """The comm using the most memory in the OOM task table before the panic (the line it is on),
    or the task that invoked the OOM killer when no table was printed."""
    invoked = next((i for i in range(start - 1, -1, -1) if OOM_INVOKED.match(lines[i].body)), None)
    if invoked is None:
        return None, None
    best: Tuple[int, Optional[str], Optional[int]] = (-1, None, None)
    row: Optional[Pattern[str]] = None
    for index in range(invoked, start):
        body = lines[index].body
        table = OOM_TABLE.match(body)
        if table:  # 7 columns between pid and name since 4.19, 8 before (nr_ptes, nr_pmds)
            row = re.compile(OOM_ROW % len(table.group(1).split()))
            continue
        match = row.match(body) if row else None
        if match:
            rss = int(match.group(1).split()[3])
            if rss > best[0]:
                best = (rss, match.group(2), index)
    if best[1] is not None:
        return _comm(best[1]), best[2]
    found = OOM_INVOKED.match(lines[invoked].body)
    assert found is not None
    return _comm(found.group(1)), invoked


def _taint(lines: List[Line], start: int) -> Optional[str]:
    """The taint letters of the report's first CPU line (or hung-task line), spaces dropped."""
    for index in range(start, min(len(lines), start + 60)):
        match = TAINT.search(lines[index].body)
        if match and (CPU_LINE.match(lines[index].body) or lines[index].body.lstrip().startswith(("Tainted", "Not"))):
            return (match.group("flags") or "").replace(" ", "")
    return None


def _notes(result: Oops, head: Head, others: List[Header], ctx: str) -> None:
    notes = result["notes"]
    if result["oopses"] > 1:
        kinds = ", ".join(sorted({other.kind for other in others}, key=[other.kind for other in others].index))
        notes.append(
            "The log holds %d reports; the first (%s) is taken as the cause, later: %s."
            % (result["oopses"], result["kind"], kinds)
        )
    if result["truncated"]:
        missing = "" if result["culprit"] or not head.named else " before its culprit was printed"
        notes.append("The report is cut off%s: the title comes from what survived." % missing)
    elif head.named and result["culprit"] is None:
        notes.append(
            "No OOM task table or 'invoked oom-killer' line names a task: the title is the kind alone."
            if head.strategy == "oom"
            else "No frame names a culprit: the title is the kind alone."
        )
    if head.kind in ("Oops", "Internal error: Oops"):
        notes.append(
            "The line naming the fault, printed before the Oops line, is missing: the kind is the Oops line's."
        )
    if result["interleaved"]:
        if ctx:
            notes.append(
                "Another CPU's or task's lines are mixed into this report; its printk caller id set them aside."
            )
        else:
            notes.append(
                "Another report is interleaved with this one and the log has no printk caller ids: "
                "the culprit may come from the other report's lines."
            )
    if head.lost:
        notes.append("Only the panic survived of this report: its own lines are missing, the kind is the panic's.")
    if head.kind.startswith("panic: ") and "Fatal exception" in head.kind:
        notes.append("Only the panic survived: the report before it is missing from the text.")


def main(argv: Sequence[str]) -> int:
    """`python -m crashfleet.agent.dumps.oops FILE...`: each file's answer as JSON."""
    import json

    for path in argv:
        print(json.dumps({"path": path, **scan(path)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
