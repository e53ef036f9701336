"""The debuginfod download child: `PYTHON -I -S -c SOURCE BUILD_ID PART ROOM URL...`.

Run by the agent inside its sandbox (write: only the build id's cache dir; TCP
connect: only the servers' ports). Tries each server in turn, streams the file
to PART, prints JSON progress lines on stdout and one error line on stderr.
The agent verifies the build id and renames PART; this child never does.
Exit status 2: every server answered 404 (none has the build id), 1: another failure.
"""

import http.client
import json
import os
import socket
import sys
import time
import urllib.parse
from typing import Dict

CONNECT_TIMEOUT = 10.0  # a server that does not accept is skipped quickly
READ_TIMEOUT = 600.0  # but one extracting a vmlinux from a package may think for minutes first
CHUNK = 1 << 20
PROGRESS_EVERY = 0.5
MAX_REDIRECTS = 3


class Unreachable(Exception):
    pass


class HTTPStatus(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__("HTTP %d %s" % (code, reason))
        self.code = code


def open_url(address: str) -> http.client.HTTPResponse:
    """GET with a short connect timeout and a long read timeout (urllib has one for both)."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(address)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = kind(parts.hostname or "", parts.port, timeout=CONNECT_TIMEOUT)
        try:
            conn.connect()
        except socket.timeout:
            raise Unreachable("no connection within %gs" % CONNECT_TIMEOUT) from None
        except OSError as exc:
            raise Unreachable(exc.strerror or str(exc)) from None
        assert conn.sock is not None
        conn.sock.settimeout(READ_TIMEOUT)
        conn.request(
            "GET", parts.path + ("?" + parts.query if parts.query else ""), headers={"User-Agent": "crashfleet-agent"}
        )
        answer = conn.getresponse()
        if answer.status in (301, 302, 303, 307, 308) and answer.getheader("Location"):
            address = urllib.parse.urljoin(address, answer.getheader("Location") or "")
            conn.close()
            continue
        if answer.status != 200:
            raise HTTPStatus(answer.status, answer.reason)
        return answer
    raise HTTPStatus(310, "too many redirects")


def fetch(url: str, build_id: str, part: str, room: int) -> int:
    """Download one server's debuginfo for build_id into part; the bytes written."""
    answer = open_url("%s/buildid/%s/debuginfo" % (url.rstrip("/"), build_id))
    with answer:
        total = int(answer.getheader("Content-Length") or 0)
        if total > room:
            raise OverflowError("the file is %d bytes, the debuginfo cache has room for %d" % (total, room))
        say({"url": url, "total": total})
        got, last = 0, 0.0
        with open(part, "wb") as out:
            for chunk in iter(lambda: answer.read(CHUNK), b""):
                got += len(chunk)
                if got > room:
                    raise OverflowError("the file grew past the %d bytes the cache has room for" % room)
                out.write(chunk)
                if time.monotonic() - last >= PROGRESS_EVERY:
                    last = time.monotonic()
                    say({"got": got, "total": total})
        if total and got != total:
            raise OSError("the server sent %d of %d bytes" % (got, total))
    return got


def say(message: Dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def reason(exc: BaseException) -> str:
    if isinstance(exc, HTTPStatus):
        return "%s%s" % (exc, " (the server has no such build id)" if exc.code == 404 else "")
    if isinstance(exc, Unreachable):
        return "unreachable: %s" % exc
    if isinstance(exc, socket.timeout):
        return "the server sent nothing for %gs" % READ_TIMEOUT
    return "%s: %s" % (type(exc).__name__, exc)


def main() -> int:
    build_id, part, room, urls = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    failures = []
    absent = 0  # servers that answered 404
    for url in urls:
        try:
            got = fetch(url, build_id, part, room)
        except BaseException as exc:
            failures.append("%s: %s" % (url, reason(exc)))
            absent += isinstance(exc, HTTPStatus) and exc.code == 404
            try:
                os.unlink(part)
            except OSError:
                pass
            if isinstance(exc, KeyboardInterrupt):
                break
            continue
        say({"done": True, "url": url, "bytes": got})
        return 0
    sys.stderr.write("no debuginfod server gave build id %s: %s\n" % (build_id, "; ".join(failures)))
    return 2 if urls and absent == len(urls) else 1


if __name__ == "__main__":
    sys.exit(main())
