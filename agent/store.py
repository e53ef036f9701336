"""Disk-backed store of command outputs on the target machine.

Each output lives in ROOT/<id>/ as ``data`` (raw bytes), ``index`` (8-byte
little-endian start offsets of lines) and ``meta.json``.  Outputs survive
agent restarts, and readers touch only the slice they return, so paging or
searching a huge output costs memory proportional to the reply.

Concurrency: one writer per output appends to ``data``, then to ``index``,
and only then publishes the new sizes under the output's lock.  Readers
snapshot those sizes and read strictly below them, so they never see a line
whose index entry is missing.  Lock order: writer lock -> store lock ->
output lock.

Standard library only, Python >= 3.8 (the agent runs on old targets).
"""

from __future__ import annotations

import array
import collections
import functools
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import sys
import threading
import time
from typing import Any, BinaryIO, Callable, Deque, Dict, Iterator, List, NamedTuple, Optional, Pattern, Tuple

from . import blocksearch, protocol

ID_LEN = 10
MAX_PAGE_BYTES = 8 << 20
MAX_PAGE_LINES = 100000
MAX_CONTEXT = 20
MAX_MATCHES = 1000
TEXT_CAP = 2000  # chars of a matched/context line returned by search
ELLIPSIS = "\u2026"

_ID_RE = re.compile(r"[0-9a-f]{%d}\Z" % ID_LEN)
_CURSOR_RE = re.compile(r"(\d{1,15})\.(\d{1,15})\.([0-9a-f]{8})\Z", re.ASCII)
_CHUNK = 1 << 20  # writer processes input in slices of this size
_BLOCK = 1 << 20  # search reads this much at a time; longer lines are segmented
_META_EVERY = 1.0  # seconds between meta.json refreshes while writing
_TIME_CHECK_EVERY = 256  # lines between time-budget checks in search
_RESTART_HINT = "call page without a cursor to start over"

Isolate = Callable[[Callable[[], Dict[str, Any]], List[int]], Dict[str, Any]]
_PAGE = "p"
_SEARCH = "s"

assert array.array("Q").itemsize == 8


class StoreError(Exception):
    """Error with a machine-readable code the controller can act on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return "%s: %s" % (self.code, self.message)


class _Snap(NamedTuple):
    """Consistent view of an output's published state."""

    size: int
    n_complete: int
    last_start: int
    finished: bool
    truncated: bool

    @property
    def total_lines(self) -> int:
        return self.n_complete + (1 if self.size > self.last_start else 0)


class _Output:
    """In-memory state of one output.

    ``lock`` guards the published fields; ``wlock`` serialises the writer
    side (write/close/delete) so file handles are never used concurrently;
    ``disk_bytes`` is guarded by the store lock.
    """

    def __init__(self, oid: str, path: str, kind: str, created: float, caller_meta: Dict[str, Any], seq: int) -> None:
        self.id = oid
        self.path = path
        self.kind = kind
        self.created = created
        self.caller_meta = caller_meta
        self.seq = seq
        self.lock = threading.Lock()
        self.wlock = threading.Lock()
        self.size = 0
        self.n_complete = 0
        self.last_start = 0
        self.finished = False
        self.finished_at: Optional[float] = None
        self.truncated = False
        self.bytes_seen = 0
        self.sha256: Optional[str] = None
        self.exit_status: Optional[int] = None
        self.error: Optional[str] = None
        self.write_error: Optional[str] = None
        self.interrupted = False
        self.deleted = False
        self.disk_bytes = 0

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def snapshot(self) -> _Snap:
        with self.lock:
            return _Snap(self.size, self.n_complete, self.last_start, self.finished, self.truncated)

    def meta(self) -> Dict[str, Any]:
        """The meta.json document, built from live state."""
        with self.lock:
            return {
                "output_id": self.id,
                "kind": self.kind,
                "created": self.created,
                "finished": self.finished,
                "finished_at": self.finished_at,
                "lines": self.n_complete + (1 if self.size > self.last_start else 0),
                "bytes": self.size,
                "bytes_seen": self.bytes_seen,
                "truncated": self.truncated,
                "sha256": self.sha256,
                "exit_status": self.exit_status,
                "error": self.error,
                "write_error": self.write_error,
                "interrupted": self.interrupted,
                "meta": json.loads(json.dumps(self.caller_meta)),
            }


# ---------------------------------------------------------------- helpers


def _bad(message: str) -> StoreError:
    return StoreError(protocol.BAD_ARGUMENT, message)


def _gone(oid: str) -> StoreError:
    return StoreError(
        protocol.UNKNOWN_OUTPUT,
        "no output %s (evicted, deleted or never existed); "
        "it was evicted or never existed; run the command again" % oid,
    )


def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _bad("%s must be an integer in %d..%d, got %r" % (name, lo, hi, value))
    return value


def _write_all(f: BinaryIO, data: bytes) -> None:
    """Raw files may write short; loop so data and index never diverge."""
    view = memoryview(data)
    while view:
        n = f.write(view)
        if not n:
            raise OSError("short write")
        view = view[n:]


def _read_at(f: BinaryIO, offset: int, length: int) -> bytes:
    f.seek(offset)
    parts = []
    while length > 0:
        chunk = f.read(length)
        if not chunk:
            break
        parts.append(chunk)
        length -= len(chunk)
    return b"".join(parts)


def _pack(offsets: List[int]) -> bytes:
    arr = array.array("Q", offsets)
    if sys.byteorder == "big":
        arr.byteswap()
    return arr.tobytes()


def _read_entries(f: BinaryIO, first: int, count: int) -> List[int]:
    """Index entries [first, first+count): one seek, no full-index read."""
    raw = _read_at(f, first * 8, count * 8)
    if len(raw) != count * 8:
        raise OSError("index shorter than published state")
    arr = array.array("Q")
    arr.frombytes(raw)
    if sys.byteorder == "big":
        arr.byteswap()
    return arr.tolist()


def _line_at(xf: BinaryIO, low: int, high: int, pos: int) -> int:
    """The number of the line (within [low, high]) that starts at byte pos: a binary search of the index."""
    a, b = low - 1, high - 1  # index entry k is where line k + 1 starts
    while a < b:
        mid = (a + b + 1) // 2
        if _read_entries(xf, mid, 1)[0] <= pos:
            a = mid
        else:
            b = mid - 1
    return a + 1


def _line_starts(chunk: bytes, base: int) -> List[int]:
    """Offsets of the lines that begin after each newline in chunk."""
    out = []
    find = chunk.find
    i = find(b"\n")
    while i >= 0:
        out.append(base + i + 1)
        i = find(b"\n", i + 1)
    return out


def _utf8_cut(buf: bytes) -> int:
    """Length of buf without a trailing incomplete UTF-8 sequence.

    Splitting a long line must not cut a character in two, or the pages
    would not concatenate back to the original text.
    """
    n = len(buf)
    for back in range(1, min(4, n) + 1):
        b = buf[n - back]
        if b & 0xC0 == 0x80:
            continue
        if b < 0x80:
            return n
        need = 2 if b >> 5 == 0b110 else 3 if b >> 4 == 0b1110 else 4 if b >> 3 == 0b11110 else 1
        return n if back >= need or back == n else n - back
    return n


def _clip(text: str, at: int = 0) -> str:
    """Cap a line for a reply, keeping the part around position `at` visible."""
    if len(text) <= TEXT_CAP:
        return text
    start = max(0, min(at - TEXT_CAP // 4, len(text) - TEXT_CAP))
    out = text[start : start + TEXT_CAP]
    if start > 0:
        out = ELLIPSIS + out
    if start + TEXT_CAP < len(text):
        out = out + ELLIPSIS
    return out


def _lines(f: BinaryIO, lineno: int, pos: int, end: int) -> Iterator[Tuple[int, str, bool]]:
    """Yield (line number, text, is first segment of its line) up to byte `end`.

    Reads blocks and splits them in C, several times faster than readline.
    A line longer than a block comes in several segments, so one huge line
    cannot pull the whole output into memory.  Line endings are stripped.
    """
    carry = b""
    first = True
    while pos < end:
        block = f.read(min(_BLOCK, end - pos))
        if not block:
            return
        pos += len(block)
        if carry:
            block, carry = carry + block, b""
        cut = block.rfind(b"\n") + 1
        if cut:
            body = block[:cut]
            if b"\r" in body:
                body = body.replace(b"\r\n", b"\n")
            for text in body[:-1].decode("utf-8", "replace").split("\n"):
                yield lineno, text, first
                lineno += 1
                first = True
            block = block[cut:]
        if len(block) >= _BLOCK or (block and pos >= end):
            yield lineno, block.decode("utf-8", "replace"), first
            first = False
        else:
            carry = block


def _write_json(path: str, obj: Dict[str, Any]) -> None:
    """Atomic replace so a crash never leaves a half-written meta.json."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _repair_index(index_path: str, data_path: str, size: int) -> Tuple[int, int]:
    """Make the index match the data after a crash; return (n_complete, last_start).

    The writer appends data before index, so the index can only lag: drop
    torn or out-of-range entries, then index the unindexed tail of data.
    """
    with open(index_path, "r+b") as xf:
        isz = os.fstat(xf.fileno()).st_size // 8 * 8
        xf.truncate(isz)
        last = -1
        while isz > 0:
            last = _read_entries(xf, isz // 8 - 1, 1)[0]
            if last <= size:
                break
            isz -= 8
            xf.truncate(isz)
            last = -1
        if last < 0:
            last = 0
            xf.seek(0)
            _write_all(xf, _pack([0]))
            isz = 8
        xf.seek(isz)
        with open(data_path, "rb") as df:
            df.seek(last)
            pos = last
            while pos < size:
                chunk = df.read(min(_CHUNK, size - pos))
                if not chunk:
                    break
                starts = _line_starts(chunk, pos)
                if starts:
                    _write_all(xf, _pack(starts))
                    isz += 8 * len(starts)
                    last = starts[-1]
                pos += len(chunk)
    return isz // 8 - 1, last


# ---------------------------------------------------------------- writer


class OutputWriter:
    """Append-only writer for one output; use from a single producer."""

    def __init__(self, store: Store, out: _Output) -> None:
        self._store = store
        self._out = out
        self.output_id = out.id
        self._data = open(out.file("data"), "ab", buffering=0)
        self._index = open(out.file("index"), "ab", buffering=0)
        self._hash = hashlib.sha256()
        self._closed = False
        self._last_meta = time.monotonic()

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(error=None if exc is None else "%s: %s" % (exc_type.__name__, exc))

    def write(self, data: bytes) -> None:
        """Append bytes; past a cap they are only counted (see module doc)."""
        if not isinstance(data, bytes):
            data = bytes(data)
        out = self._out
        with out.wlock:
            if self._closed:
                raise ValueError("write to closed output %s" % out.id)
            with out.lock:
                out.bytes_seen += len(data)
                stopped = out.truncated or out.deleted
            if stopped or not data:
                return
            for pos in range(0, len(data), _CHUNK):
                if not self._store_chunk(data[pos : pos + _CHUNK]):
                    break
            if time.monotonic() - self._last_meta >= _META_EVERY:
                self._flush_meta()

    def close(self, exit_status: Optional[int] = None, error: Optional[str] = None) -> Dict[str, Any]:
        """Finish the output and return its meta; a second call is a no-op."""
        out = self._out
        with out.wlock:
            if not self._closed:
                self._closed = True
                self._close_files()
                with out.lock:
                    out.finished = True
                    out.finished_at = time.time()
                    out.exit_status = exit_status
                    out.error = error
                    out.sha256 = self._hash.hexdigest()
                self._flush_meta()
        return out.meta()

    # -- internals (called with wlock held)

    def _close_files(self) -> None:
        for f in (self._data, self._index):
            try:
                f.close()
            except OSError:
                pass

    def _flush_meta(self) -> None:
        self._last_meta = time.monotonic()
        if self._out.deleted:
            return
        try:
            _write_json(self._out.file("meta.json"), self._out.meta())
        except OSError as e:
            with self._out.lock:
                self._out.write_error = "meta.json: %s" % e

    def _store_chunk(self, chunk: bytes) -> bool:
        """Store what fits under both caps; False once storing has stopped."""
        out = self._out
        room = self._store.max_output_bytes - out.size
        reason = None
        if len(chunk) > room:
            chunk, reason = chunk[: max(0, room)], "max_output_bytes"
        if chunk:
            want = len(chunk) + 8 * chunk.count(b"\n")
            granted = self._store._reserve(out, want)
            if granted is None:
                return False
            if granted < want:
                part = chunk[:granted]
                chunk = part[: max(0, granted - 8 * part.count(b"\n"))]
                self._store._release(out, granted - len(chunk) - 8 * chunk.count(b"\n"))
                reason = "max_total_bytes"
            try:
                self._append(chunk)
            except OSError as e:
                self._fail(e)
                return False
        if reason is not None:
            self._truncate(reason)
            return False
        return True

    def _append(self, chunk: bytes) -> None:
        """Data first, then index, then publish: readers never run ahead."""
        if not chunk:
            return
        out = self._out
        base = out.size
        _write_all(self._data, chunk)
        starts = _line_starts(chunk, base)
        if starts:
            _write_all(self._index, _pack(starts))
        self._hash.update(chunk)
        with out.lock:
            out.size = base + len(chunk)
            out.n_complete += len(starts)
            if starts:
                out.last_start = starts[-1]

    def _truncate(self, reason: str) -> None:
        out = self._out
        text = "[crashfleet: output truncated at %d bytes (%s)]\n" % (out.size, reason)
        marker = (b"\n" if out.size > out.last_start else b"") + text.encode()
        self._store._force_reserve(out, len(marker) + 16)
        try:
            self._append(marker)
        except OSError as e:
            self._fail(e)
        with out.lock:
            out.truncated = True

    def _fail(self, e: OSError) -> None:
        """Disk trouble: stop storing rather than crash the producer."""
        with self._out.lock:
            self._out.truncated = True
            self._out.write_error = str(e)


# ---------------------------------------------------------------- store


class Store:
    """All outputs under one root directory; safe to share between threads."""

    def __init__(self, root: str, max_output_bytes: int = 64 << 20, max_total_bytes: int = 1 << 30) -> None:
        if max_output_bytes < 1 or max_total_bytes < 1:
            raise ValueError("caps must be positive")
        self.root = os.path.abspath(root)
        self.max_output_bytes = max_output_bytes
        self.max_total_bytes = max_total_bytes
        self._lock = threading.Lock()
        self._outputs: Dict[str, _Output] = {}
        self._total = 0
        self._seq = 0
        if not os.path.isdir(self.root):
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            os.chmod(self.root, 0o700)
        self._reload()

    # -- public API

    def create(self, kind: str, meta: Optional[Dict[str, Any]] = None) -> OutputWriter:
        """New output; first evicts old finished outputs if over the total cap."""
        if not isinstance(kind, str) or not kind:
            raise _bad("kind must be a non-empty string")
        try:
            caller_meta = json.loads(json.dumps(meta if meta is not None else {}))
        except (TypeError, ValueError) as e:
            raise _bad("meta must be JSON-serialisable: %s" % e) from None
        if not isinstance(caller_meta, dict):
            raise _bad("meta must be a dict")
        with self._lock:
            self._evict_locked(0, None)
            oid = self._new_id_locked()
            path = os.path.join(self.root, oid)
            os.mkdir(path, 0o700)
            self._seq += 1
            out = _Output(oid, path, kind, time.time(), caller_meta, self._seq)
            with open(out.file("data"), "wb"):
                pass
            with open(out.file("index"), "wb") as xf:
                xf.write(_pack([0]))
            _write_json(out.file("meta.json"), out.meta())
            out.disk_bytes = 8
            self._total += 8
            self._outputs[oid] = out
            return OutputWriter(self, out)

    def page(
        self,
        output_id: str,
        cursor: Optional[str] = None,
        max_bytes: int = 16000,
        max_lines: int = 500,
        *,
        line: Optional[int] = None,
    ) -> Dict[str, Any]:
        """One page of text; reads only its index slice and byte range.

        ``line`` (extension) starts at a 1-based line, or counts from the end
        when negative (-1 = last line); it excludes ``cursor``.
        """
        out = self._get(output_id)
        _check_int("max_bytes", max_bytes, 1, MAX_PAGE_BYTES)
        _check_int("max_lines", max_lines, 1, MAX_PAGE_LINES)
        snap = out.snapshot()
        if cursor is not None and line is not None:
            raise _bad("pass either cursor or line, not both")
        ln, off = 1, 0
        if cursor is not None:
            ln, off = self._parse_cursor(out, _PAGE, cursor)
        elif line is not None:
            ln = self._line_arg(line, snap)
        try:
            with open(out.file("data"), "rb", buffering=0) as df, open(out.file("index"), "rb", buffering=0) as xf:
                return self._page(out, snap, df, xf, ln, off, max_bytes, max_lines)
        except FileNotFoundError:
            raise _gone(out.id) from None

    def search(
        self,
        output_id: str,
        pattern: str,
        context: int = 0,
        max_matches: int = 50,
        ignore_case: bool = False,
        cursor: Optional[str] = None,
        time_budget: float = 10.0,
        isolate: Optional[Isolate] = None,
    ) -> Dict[str, Any]:
        """Regex search streaming line by line; resumable through next_cursor.

        `isolate(scan, fds)` runs the scan elsewhere (a sandboxed child with a CPU limit):
        everything that takes the store's lock happens before, here.

        While the output is still being written only complete lines are
        searched, so a resumed search never reports a line twice.
        """
        out = self._get(output_id)
        _check_int("context", context, 0, MAX_CONTEXT)
        _check_int("max_matches", max_matches, 1, MAX_MATCHES)
        if isinstance(time_budget, bool) or not isinstance(time_budget, (int, float)) or not 0 < time_budget <= 3600:
            raise _bad("time_budget must be a number of seconds in (0, 3600]")
        if not isinstance(pattern, str):
            raise _bad("pattern must be a string")
        try:
            rx = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
        except re.error as e:
            raise StoreError(protocol.BAD_REGEX, "invalid regular expression %r: %s" % (pattern[:200], e)) from None
        snap = out.snapshot()
        start = 1
        if cursor is not None:
            start = self._parse_cursor(out, _SEARCH, cursor)[0]
        try:
            with open(out.file("data"), "rb", buffering=0) as df, open(out.file("index"), "rb", buffering=0) as xf:

                def scan() -> Dict[str, Any]:
                    return self._search(
                        out, snap, df, xf, rx, start, context, max_matches, time.monotonic() + time_budget
                    )

                return isolate(scan, [df.fileno(), xf.fileno()]) if isolate else scan()
        except FileNotFoundError:
            raise _gone(out.id) from None

    def info(self, output_id: str) -> Dict[str, Any]:
        return self._get(output_id).meta()

    def list(self) -> List[Dict[str, Any]]:
        """Metas, newest first."""
        with self._lock:
            outs = sorted(self._outputs.values(), key=lambda o: (o.created, o.seq), reverse=True)
        return [o.meta() for o in outs]

    def delete(self, output_id: str) -> None:
        """Remove an output; a live writer's later writes are only counted."""
        out = self._get(output_id)
        with self._lock:
            if self._outputs.get(out.id) is not out:
                raise _gone(out.id)
            del self._outputs[out.id]
        with out.wlock:
            with out.lock:
                out.deleted = True
        with self._lock:
            self._total -= out.disk_bytes
            out.disk_bytes = 0
        shutil.rmtree(out.path, ignore_errors=True)

    def total_bytes(self) -> int:
        """Bytes of data plus index files of all stored outputs."""
        with self._lock:
            return self._total

    # -- quota (called by writers)

    def _reserve(self, out: _Output, want: int) -> Optional[int]:
        """Grant up to `want` bytes, evicting finished outputs; None if deleted."""
        with self._lock:
            if self._outputs.get(out.id) is not out:
                return None
            self._evict_locked(want, out)
            granted = max(0, min(want, self.max_total_bytes - self._total))
            self._total += granted
            out.disk_bytes += granted
            return granted

    def _release(self, out: _Output, unused: int) -> None:
        with self._lock:
            self._total -= unused
            out.disk_bytes -= unused

    def _force_reserve(self, out: _Output, n: int) -> None:
        """The truncation marker is always stored, even past the cap."""
        with self._lock:
            self._total += n
            out.disk_bytes += n

    def _evict_locked(self, extra: int, keep: Optional[_Output]) -> None:
        """Drop oldest finished outputs until `extra` more bytes fit; live ones stay."""
        while self._total + extra > self.max_total_bytes:
            victims = [o for o in self._outputs.values() if o is not keep and o.snapshot().finished]
            if not victims:
                return
            victim = min(victims, key=lambda o: (o.created, o.seq))
            del self._outputs[victim.id]
            self._total -= victim.disk_bytes
            victim.disk_bytes = 0
            with victim.lock:
                victim.deleted = True
            shutil.rmtree(victim.path, ignore_errors=True)

    # -- lookup and cursors

    def _new_id_locked(self) -> str:
        while True:
            oid = secrets.token_hex(ID_LEN // 2)
            if oid not in self._outputs and not os.path.exists(os.path.join(self.root, oid)):
                return oid

    def _get(self, output_id: Any) -> _Output:
        """Validate the id before it gets anywhere near a path."""
        if not isinstance(output_id, str) or not _ID_RE.match(output_id):
            raise _bad("invalid output id %r: expected %d lowercase hex characters" % (str(output_id)[:40], ID_LEN))
        with self._lock:
            out = self._outputs.get(output_id)
        if out is None:
            raise _gone(output_id)
        return out

    @staticmethod
    def _tag(kind: str, oid: str, line: int, off: int) -> str:
        return hashlib.sha256(("%s:%s:%d.%d" % (kind, oid, line, off)).encode()).hexdigest()[:8]

    def _cursor(self, out: _Output, kind: str, line: int, off: int = 0) -> str:
        return "%d.%d.%s" % (line, off, self._tag(kind, out.id, line, off))

    def _parse_cursor(self, out: _Output, kind: str, cursor: Any) -> Tuple[int, int]:
        m = _CURSOR_RE.match(cursor) if isinstance(cursor, str) else None
        if m is None or int(m.group(1)) < 1:
            raise StoreError(protocol.BAD_CURSOR, "malformed cursor %r; %s" % (str(cursor)[:40], _RESTART_HINT))
        line, off, tag = int(m.group(1)), int(m.group(2)), m.group(3)
        if tag != self._tag(kind, out.id, line, off):
            other = _SEARCH if kind == _PAGE else _PAGE
            if tag == self._tag(other, out.id, line, off):
                what = "a %s cursor" % ("search" if other == _SEARCH else "page")
                raise StoreError(protocol.BAD_CURSOR, "this is %s; pass it back to the call that returned it" % what)
            raise StoreError(protocol.BAD_CURSOR, "cursor does not belong to output %s; %s" % (out.id, _RESTART_HINT))
        return line, off

    @staticmethod
    def _stale(out: _Output, snap: _Snap) -> StoreError:
        return StoreError(
            protocol.STALE_CURSOR,
            "cursor is past the end of output %s (%d lines); %s" % (out.id, snap.total_lines, _RESTART_HINT),
        )

    @staticmethod
    def _line_arg(line: Any, snap: _Snap) -> int:
        total = snap.total_lines
        if isinstance(line, bool) or not isinstance(line, int) or line == 0:
            raise _bad("line must be a non-zero integer (negative counts from the end)")
        if line < 0:
            return max(1, total + 1 + line)
        if line > total + 1:
            raise _bad("line %d is past the end of the output (%d lines)" % (line, total))
        return line

    # -- paging

    def _page(
        self, out: _Output, snap: _Snap, df: BinaryIO, xf: BinaryIO, ln: int, off: int, max_bytes: int, max_lines: int
    ) -> Dict[str, Any]:
        n, size, total = snap.n_complete, snap.size, snap.total_lines
        if ln > total + 1 or (ln == total + 1 and off):
            raise self._stale(out, snap)
        if ln == total + 1:
            return self._page_result(out, snap, "", ln, ln - 1, None if snap.finished else self._cursor(out, _PAGE, ln))
        ents = _read_entries(xf, ln - 1, min(ln - 1 + max_lines, n) - ln + 2)

        def bounds(k: int) -> Tuple[int, int]:
            return ents[k - ln], ents[k - ln + 1] if k <= n else size

        first_start, first_end = bounds(ln)
        if off > first_end - first_start:
            raise self._stale(out, snap)
        if off and off == first_end - first_start:
            if ln <= n:  # cursor sits on a newline: continue at the next line
                return self._page(out, snap, df, xf, ln + 1, 0, max_bytes, max_lines)
            return self._page_result(
                out, snap, "", ln, ln - 1, None if snap.finished else self._cursor(out, _PAGE, ln, off)
            )
        start = first_start + off
        cur, k, count, inside = start, ln, 0, False
        while k <= total and count < max_lines:
            end = bounds(k)[1]
            if end - start > max_bytes:
                inside = count == 0  # a single over-long line: split it
                break
            cur, count = end, count + 1
            if k > n:
                inside = True  # consumed the unterminated last line
                break
            k += 1
        if inside and cur == start:
            buf = _read_at(df, start, max_bytes)
            buf = buf[: _utf8_cut(buf)]
            cur = start + len(buf)
        else:
            buf = _read_at(df, start, cur - start)
        text = buf.decode("utf-8", "replace")
        if inside:  # stopped inside (or at the growing end of) line k
            at_end = cur == size
            nxt = None if at_end and snap.finished else self._cursor(out, _PAGE, k, cur - bounds(k)[0])
            return self._page_result(out, snap, text, ln, k, nxt)
        at_end = k > total
        nxt = None if at_end and snap.finished else self._cursor(out, _PAGE, k)
        return self._page_result(out, snap, text, ln, k - 1, nxt)

    def _page_result(
        self, out: _Output, snap: _Snap, text: str, first: int, last: int, nxt: Optional[str]
    ) -> Dict[str, Any]:
        return {
            "output_id": out.id,
            "text": text,
            "start_line": first,
            "end_line": last,
            "total_lines": snap.total_lines,
            "bytes": snap.size,
            "next_cursor": nxt,
            "finished": snap.finished,
            "truncated": snap.truncated,
        }

    # -- searching

    def _search(
        self,
        out: _Output,
        snap: _Snap,
        df: io.FileIO,
        xf: BinaryIO,
        rx: Pattern[str],
        start: int,
        context: int,
        max_matches: int,
        deadline: float,
        blocks: bool = True,
    ) -> Dict[str, Any]:
        last_line = snap.total_lines if snap.finished else snap.n_complete
        end_byte = snap.size if snap.finished else snap.last_start
        if start > last_line + 1:
            raise self._stale(out, snap)
        block_rx = blocksearch.block_pattern(rx) if blocks and not context else None
        if block_rx is not None and start <= last_line:
            return self._search_blocks(out, snap, df, xf, rx, block_rx, start, max_matches, deadline)
        prime = max(1, start - context)
        matches: List[Dict[str, Any]] = []
        pending: List[Dict[str, Any]] = []
        before: Deque[str] = collections.deque(maxlen=context)
        scanned = 0
        resume: Optional[int] = None
        tail_end = 0
        matched_line = 0
        if prime <= last_line:
            pos = _read_entries(xf, prime - 1, 1)[0]
            df.seek(pos)
            held: Optional[str] = None  # current line, joins `before` once it is complete
            for ln, text, first in _lines(df, prime, pos, end_byte):
                if first and held is not None:
                    before.append(held)
                    held = None
                if ln < start:  # re-reading lines only to prime the before-context
                    if first and context:
                        held = _clip(text)
                    continue
                if tail_end:  # max_matches reached: only finishing after-context
                    if ln > tail_end:
                        break
                    if first:
                        self._add_after(pending, text, context)
                    continue
                if first:
                    if scanned and scanned % _TIME_CHECK_EVERY == 0 and time.monotonic() > deadline:
                        resume = ln
                        break
                    scanned += 1
                    if pending:
                        self._add_after(pending, text, context)
                if matched_line != ln:
                    mo = rx.search(text)
                    if mo is not None:
                        matched_line = ln
                        shown = _clip(text, mo.start())
                        if not first and not shown.startswith(ELLIPSIS):
                            shown = ELLIPSIS + shown  # a later segment of a huge line
                        rec = {"line": ln, "text": shown, "before": list(before), "after": []}
                        matches.append(rec)
                        if context:
                            pending.append(rec)
                        if len(matches) >= max_matches:
                            resume, tail_end = ln + 1, ln + context
                            if not context:
                                break
                if first and context:
                    held = _clip(text)
        return self._search_result(out, snap, rx, matches, scanned, resume, last_line)

    def _search_blocks(
        self,
        out: _Output,
        snap: _Snap,
        df: io.FileIO,
        xf: BinaryIO,
        rx: Pattern[str],
        block_rx: Pattern[str],
        start: int,
        max_matches: int,
        deadline: float,
    ) -> Dict[str, Any]:
        """The context-free search, scanning whole blocks (see blocksearch)."""
        last_line = snap.total_lines if snap.finished else snap.n_complete
        end_byte = snap.size if snap.finished else snap.last_start
        pos = _read_entries(xf, start - 1, 1)[0]
        matches: List[Dict[str, Any]] = []
        resume: Optional[int] = None
        line_at = functools.partial(_line_at, xf, start, last_line)
        for ln, text, mo in blocksearch.matching_lines(df, pos, end_byte, rx, block_rx, deadline, line_at):
            if text is None or mo is None:  # stopped early
                if time.monotonic() > deadline:
                    resume = ln
                    break
                rest = self._search(
                    out, snap, df, xf, rx, ln, 0, max_matches - len(matches), deadline, blocks=False
                )  # a line too long for a block: the line loop segments it
                rest["matches"][:0] = matches
                rest["scanned_lines"] += ln - start
                return rest
            matches.append({"line": ln, "text": _clip(text, mo.start()), "before": [], "after": []})
            if len(matches) >= max_matches:
                resume = ln + 1
                break
        scanned = (last_line + 1 if resume is None else resume) - start
        return self._search_result(out, snap, rx, matches, scanned, resume, last_line)

    def _search_result(
        self,
        out: _Output,
        snap: _Snap,
        rx: Pattern[str],
        matches: List[Dict[str, Any]],
        scanned: int,
        resume: Optional[int],
        last_line: int,
    ) -> Dict[str, Any]:
        more = resume is not None and resume <= last_line
        if more and resume is not None:
            nxt: Optional[str] = self._cursor(out, _SEARCH, resume)
        else:
            nxt = None if snap.finished else self._cursor(out, _SEARCH, last_line + 1)
        return {
            "output_id": out.id,
            "pattern": rx.pattern,
            "matches": matches,
            "scanned_lines": scanned,
            "total_lines": snap.total_lines,
            "more": more,
            "next_cursor": nxt,
            "finished": snap.finished,
        }

    @staticmethod
    def _add_after(pending: List[Dict[str, Any]], text: str, context: int) -> None:
        """Feed one line to the after-context of matches still collecting it."""
        clipped = _clip(text)
        for rec in pending:
            rec["after"].append(clipped)
        pending[:] = [r for r in pending if len(r["after"]) < context]

    # -- restart

    def _reload(self) -> None:
        """Adopt outputs left by a previous agent; unfinished ones become interrupted."""
        loaded = []
        for name in os.listdir(self.root):
            if _ID_RE.match(name) and os.path.isdir(os.path.join(self.root, name)):
                out = self._load_one(name)
                if out is not None:
                    loaded.append(out)
        loaded.sort(key=lambda o: o.created)
        for out in loaded:
            self._seq += 1
            out.seq = self._seq
            self._outputs[out.id] = out
            self._total += out.disk_bytes

    def _load_one(self, oid: str) -> Optional[_Output]:
        path = os.path.join(self.root, oid)
        try:
            with open(os.path.join(path, "meta.json"), encoding="utf-8") as f:
                m = json.load(f)
            if not isinstance(m, dict) or m.get("output_id") != oid:
                return None
            caller_meta = m.get("meta")
            out = _Output(
                oid,
                path,
                str(m.get("kind", "")),
                float(m.get("created", 0.0)),
                caller_meta if isinstance(caller_meta, dict) else {},
                0,
            )
            size = os.path.getsize(out.file("data"))
            isz = os.path.getsize(out.file("index"))
            last = self._last_entry(out) if isz >= 8 and isz % 8 == 0 else -1
            n = isz // 8 - 1
            finished = bool(m.get("finished"))
            consistent = (
                0 <= last <= size and m.get("bytes") == size and m.get("lines") == n + (1 if size > last else 0)
            )
            if not (finished and consistent):
                n, last = _repair_index(out.file("index"), out.file("data"), size)
            out.size, out.n_complete, out.last_start = size, n, last
            out.bytes_seen = max(int(m.get("bytes_seen") or 0), size)
            out.truncated = bool(m.get("truncated"))
            out.exit_status = m.get("exit_status")
            out.error = m.get("error")
            out.write_error = m.get("write_error")
            out.interrupted = bool(m.get("interrupted"))
            out.finished = True
            out.finished_at = m.get("finished_at")
            out.sha256 = m.get("sha256") if finished and consistent else None
            if not finished:
                out.interrupted = True
                out.finished_at = time.time()
            if out.sha256 is None:
                out.sha256 = _sha256_file(out.file("data"))
            if not (finished and consistent):
                _write_json(out.file("meta.json"), out.meta())
            out.disk_bytes = size + os.path.getsize(out.file("index"))
            return out
        except (OSError, ValueError, TypeError):
            return None

    @staticmethod
    def _last_entry(out: _Output) -> int:
        with open(out.file("index"), "rb") as xf:
            isz = os.fstat(xf.fileno()).st_size
            return _read_entries(xf, isz // 8 - 1, 1)[0]
