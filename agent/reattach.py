"""The agent's side of reattaching: serve connections, relay to an older agent, accept attaches.

See agent/lease.py for the protocol; this module wires it to the RPC server and channel.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, BinaryIO, Dict, Optional

from . import lease, protocol
from .buildinfo import build_hash
from .rpc import Channel, Server

ATTACH_TRIES = 40  # x 50 ms: how long another agent of this key may take between its lock and its listen


class Reattach:
    def __init__(self, base_dir: str, server: Server, channel: Channel, lifeline: lease.Lifeline) -> None:
        self.base_dir = base_dir
        self.server = server
        self.channel = channel
        self.lifeline = lifeline
        self.listener: Optional[lease.Listener] = None
        self._lock = threading.Lock()

    def serve_stream(self, stream: BinaryIO) -> None:
        """Serve one connection in a thread; it is the current one until another attaches."""
        generation = self.lifeline.connect()

        def run() -> None:
            try:
                self.server.serve(stream, live=lambda: self.lifeline.is_current(generation))
            finally:
                self.lifeline.ended(generation)

        threading.Thread(target=run, daemon=True, name="conn-%d" % generation).start()

    def intercept(self, request: Dict[str, Any], line: bytes, stream: BinaryIO) -> bool:
        """At `hello` from a controller that names itself: relay to its older agent if one
        lives (True: this agent is only a relay now), else listen for its later attaches."""
        key = (request.get("params") or {}).get("controller") if request.get("method") == protocol.HELLO else None
        if not isinstance(key, str) or not lease.KEY_RE.match(key) or self.lifeline.lease <= 0:
            return False
        with self._lock:
            if self.listener is not None:
                return False  # we are the agent being attached to
            older = self._older_or_listen(lease.run_dir(self.base_dir), lease.socket_name(key, build_hash()))
            if older is None:
                return False
        self.lifeline.relayed = True
        out = self.channel.out
        self.channel.closed = True  # from now on only the relay writes to our stdout
        lease.relay(older, line, stream, out)
        return True

    def _older_or_listen(self, directory: str, name: str) -> Optional[socket.socket]:
        """The live older agent of this key to relay to, else None once we listen ourselves. An
        agent of the same key starting at this instant holds the lock before it listens: wait for
        it briefly, then serve without a listener (jobs then end with this link)."""
        for _ in range(ATTACH_TRIES):
            older = lease.connect_existing(directory, name)
            if older is not None:
                return older
            try:
                self.listener = lease.Listener(directory, name, self._attached)
            except lease.Busy:
                time.sleep(0.05)
                continue
            self.lifeline.listening = True
            return None
        return None

    def _attached(self, conn: socket.socket) -> None:
        reader: Any = conn.makefile("rb")
        self.channel.replace(conn.makefile("wb"))
        self.serve_stream(reader)

    def close(self) -> None:
        with self._lock:
            if self.listener is not None:
                self.listener.close()
                self.listener = None
