"""TLS ClientHello: server name (SNI) and the highest version offered."""

from __future__ import annotations

import struct
from typing import Optional, Tuple

VERSIONS = {0x0300: "SSL3", 0x0301: "TLS1.0", 0x0302: "TLS1.1", 0x0303: "TLS1.2", 0x0304: "TLS1.3"}
_H = struct.Struct("!H").unpack_from


def client_hello(payload: bytes) -> Optional[Tuple[str, str]]:
    """(sni, version) of a ClientHello at the start of the payload; sni '' when absent or not captured."""
    if len(payload) < 11 or payload[0] != 0x16 or payload[5] != 0x01:
        return None
    version = _H(payload, 9)[0]
    sni = ""
    try:
        pos = 43  # record 5 + handshake 4 + version 2 + random 32
        pos += 1 + payload[pos]  # session id
        pos += 2 + _H(payload, pos)[0]  # cipher suites
        pos += 1 + payload[pos]  # compression methods
        end = min(len(payload), pos + 2 + _H(payload, pos)[0])
        pos += 2
        while pos + 4 <= end:
            kind, size = _H(payload, pos)[0], _H(payload, pos + 2)[0]
            body = payload[pos + 4 : pos + 4 + size]
            if kind == 0 and len(body) >= 5:
                sni = body[5 : 5 + _H(body, 3)[0]].decode("ascii", "replace")
            elif kind == 43 and body:  # supported_versions: the best one offered
                offered = [_H(body, i)[0] for i in range(1, 1 + body[0], 2) if i + 2 <= len(body)]
                known = [v for v in offered if v in VERSIONS]
                version = max(known) if known else version
            pos += 4 + size
    except (IndexError, struct.error):
        pass  # snaplen cut the hello: keep what was read
    return sni, VERSIONS.get(version, hex(version))
