"""crashfleet agent: runs on target hosts; stdlib-only, Python >= 3.8.

It never imports the controller. The controller ships it as a zipapp and talks
JSON-RPC 2.0 to it over the SSH channel's stdin/stdout (agent/protocol.py).
"""

from .protocol import PROTOCOL_VERSION

__all__ = ["AGENT_VERSION", "PROTOCOL_VERSION"]

AGENT_VERSION = "0.1.0"
