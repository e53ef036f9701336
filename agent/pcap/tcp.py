"""TCP health of one conversation: handshake, retransmissions, dup ACKs, windows, how it ended.

Sequence numbers compare modulo 2**32. Like Wireshark, a segment below the highest
sequence seen is out-of-order when it comes within one handshake RTT (3 ms when
unknown) of that highest segment, and a retransmission otherwise.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from .decode import ACK, FIN, RST, SYN

MOD = 0xFFFFFFFF
HALF = 0x80000000
DEFAULT_REORDER = 0.003
EVIDENCE = 5  # packet numbers kept per kind of trouble and conversation


class TcpState:
    __slots__ = (
        "ack_ts",
        "adv_ts",
        "counts",
        "evidence",
        "fins",
        "last_ack",
        "last_win",
        "nxt",
        "requests",
        "rst_dir",
        "rst_num",
        "rtt",
        "syn_num",
        "syn_ts",
        "synack_ts",
        "syns",
    )

    def __init__(self) -> None:
        self.nxt: List[Optional[int]] = [None, None]
        self.adv_ts = [0.0, 0.0]
        self.last_ack = [-1, -1]
        self.last_win = [-1, -1]
        self.syn_ts: Optional[float] = None
        self.syn_num = 0
        self.syns = 0
        self.synack_ts: Optional[float] = None
        self.rtt: Optional[float] = None  # SYN -> SYN/ACK as seen here
        self.ack_ts: Optional[float] = None
        self.rst_dir = -1
        self.rst_num = 0
        self.fins = [0, 0]
        self.counts: Dict[str, int] = {}
        self.evidence: Dict[str, List[int]] = {}
        self.requests: List[tuple] = []  # type: ignore[type-arg]  # HTTP requests awaiting a status

    def note(self, kind: str, num: int) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        nums = self.evidence.setdefault(kind, [])
        if len(nums) < EVIDENCE:
            nums.append(num)

    def ended(self) -> str:
        if self.syns and self.synack_ts is None:
            return "refused" if self.rst_dir == 1 else "syn-unanswered"
        if self.rst_dir >= 0:
            return "reset-by-" + ("client" if self.rst_dir == 0 else "server")
        if self.fins[0] and self.fins[1]:
            return "closed"
        if self.fins[0] or self.fins[1]:
            return "half-closed"
        return "open"


def update(st: TcpState, d: int, num: int, ts: float, flags: int, seq: int, ack: int, win: int, plen: int) -> bool:
    """Account one segment sent in direction d (0 = client to server); True if it carries new data."""
    if flags & SYN:
        if flags & ACK:
            if st.synack_ts is None:
                st.synack_ts = ts
                if st.syn_ts is not None:
                    st.rtt = ts - st.syn_ts
        else:
            st.syns += 1
            if st.syn_ts is None:
                st.syn_ts, st.syn_num = ts, num
    elif st.ack_ts is None and st.synack_ts is not None and d == 0 and flags & ACK:
        st.ack_ts = ts
    if flags & RST:
        if st.rst_dir < 0:
            st.rst_dir, st.rst_num = d, num
        st.note("resets", num)
        return False
    if flags & FIN:
        st.fins[d] += 1
    seglen = plen + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
    fresh = False
    nxt = st.nxt[d]
    if seglen > 0:
        end = (seq + seglen) & MOD
        if nxt is None:
            st.nxt[d], st.adv_ts[d], fresh = end, ts, True
        else:
            delta = (seq - nxt) & MOD
            if delta < HALF:  # at or beyond what we had: new data (a gap means segments we never saw)
                if delta:
                    st.note("gaps", num)
                st.nxt[d], st.adv_ts[d], fresh = end, ts, True
            else:
                if ts - st.adv_ts[d] < (st.rtt if st.rtt else DEFAULT_REORDER):
                    st.note("out_of_order", num)
                else:
                    st.note("retransmissions", num)
                if ((end - nxt) & MOD) < HALF and end != nxt:
                    st.nxt[d], st.adv_ts[d] = end, ts
    elif flags & ACK and not flags & (SYN | FIN):
        other = st.nxt[1 - d]
        if ack == st.last_ack[d] and win == st.last_win[d] and other is not None and ack != other:
            st.note("dup_acks", num)
    if win == 0 and not flags & SYN:
        st.note("zero_windows", num)
    st.last_ack[d], st.last_win[d] = ack, win
    return fresh
