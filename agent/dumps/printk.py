"""The kernel log of an ELF vmcore, read from its printk ring buffer with VMCOREINFO alone.

Since 5.10 the kernel writes the layout of its lockless printk ring buffer into VMCOREINFO
(SYMBOL(prb), SIZE/OFFSET of printk_ringbuffer, prb_desc_ring, prb_desc, printk_info...), so the
log can be read without a vmlinux or any debugger, as makedumpfile --dump-dmesg does (which cannot
read QEMU's ELF dumps). x86_64 only: virtual addresses are translated through the kernel image
mapping, else by walking the page tables from init_top_pgt. Everything read comes from a dump,
possibly hostile: every count, size and pointer is bounded before it is used.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Dict, Iterator, List, Optional, Tuple

from . import formats

START_KERNEL_MAP = 0xFFFFFFFF80000000
KERNEL_MAP_END = 0xFFFFFFFFFF000000
PAGE = 4096
MAX_RECORDS = 1 << 21  # a log buffer holds a few thousand records; a bigger count is damage
MAX_DATA = 1 << 26  # 64 MiB: the largest log_buf_len the kernel accepts is 32 MiB
MAX_TEXT = 1 << 16  # one record's text
SV_BITS = 64
FLAGS_SHIFT = SV_BITS - 2
ID_MASK = (1 << FLAGS_SHIFT) - 1
COMMITTED, FINALIZED = 1, 2
PT_LOAD = 1


class Unreadable(Exception):
    """This dump's log cannot be read this way (say why)."""


class Memory:
    """Physical and kernel-virtual reads from an ELF vmcore's PT_LOAD segments."""

    def __init__(self, f: BinaryIO, fields: Dict[str, str]) -> None:
        self.f = f
        self.loads = sorted(_loads(f))
        if not self.loads:
            raise Unreadable("the dump has no memory segments")
        self.phys_base = _number(fields, "NUMBER(phys_base)", 0)
        top = _hex(fields, "SYMBOL(init_top_pgt)")
        self.top = top - START_KERNEL_MAP + self.phys_base if top else None
        self.levels = 5 if _number(fields, "NUMBER(pgtable_l5_enabled)", 0) else 4
        self._pages: Dict[int, int] = {}

    def phys(self, address: int, size: int) -> bytes:
        for start, offset, length in self.loads:
            if start <= address and address + size <= start + length:
                self.f.seek(offset + address - start)
                data = self.f.read(size)
                if len(data) == size:
                    return data
        raise Unreadable("physical address %#x is not in the dump" % address)

    def read(self, vaddr: int, size: int) -> bytes:
        """`size` bytes at a kernel virtual address, page by page."""
        out = []
        while size > 0:
            chunk = min(size, PAGE - vaddr % PAGE)
            out.append(self.phys(self.to_phys(vaddr), chunk))
            vaddr, size = vaddr + chunk, size - chunk
        return b"".join(out)

    def u64(self, vaddr: int) -> int:
        return int(struct.unpack("<Q", self.read(vaddr, 8))[0])

    def u32(self, vaddr: int) -> int:
        return int(struct.unpack("<I", self.read(vaddr, 4))[0])

    def to_phys(self, vaddr: int) -> int:
        if START_KERNEL_MAP <= vaddr < KERNEL_MAP_END:
            return vaddr - START_KERNEL_MAP + self.phys_base
        page = vaddr & ~(PAGE - 1)
        if page not in self._pages:
            self._pages[page] = self._walk(page)
        return self._pages[page] + vaddr % PAGE

    def _walk(self, vaddr: int) -> int:
        """x86_64 4- or 5-level page tables; 1 GiB and 2 MiB pages included."""
        if self.top is None:
            raise Unreadable("no init_top_pgt in VMCOREINFO to translate %#x" % vaddr)
        table = self.top
        shifts = (48, 39, 30, 21, 12)[5 - self.levels :]
        for level, shift in enumerate(shifts):
            entry = int(struct.unpack("<Q", self.phys(table + ((vaddr >> shift) & 0x1FF) * 8, 8))[0])
            if not entry & 1:
                raise Unreadable("%#x is not mapped" % vaddr)
            frame = entry & 0x000FFFFFFFFFF000
            if shift in (30, 21) and entry & 0x80:  # a huge page ends the walk
                return (frame & ~((1 << shift) - 1)) + (vaddr & ((1 << shift) - 1) & ~(PAGE - 1))
            table = frame
            if level == len(shifts) - 1:
                return frame
        raise Unreadable("bad page walk for %#x" % vaddr)


def dmesg(path: str, limit: int = MAX_DATA) -> bytes:
    """The dump's kernel log as dmesg prints it ("[   12.345678] text"), oldest record first."""
    with open(path, "rb") as f:
        if f.read(4) != formats.ELF_MAGIC:
            raise Unreadable("not an ELF dump")
        fields = formats.parse_vmcoreinfo(_vmcoreinfo(f))
        if fields.get("OFFSET(prb_desc_ring.descs)") is None:
            raise Unreadable("no printk ring buffer in VMCOREINFO (a kernel before 5.10?)")
        memory = Memory(f, fields)
        lines: List[bytes] = []
        size = 0
        for ts_nsec, text in _records(memory, fields):
            stamp = b"[%5d.%06d] " % (ts_nsec // 1000000000, ts_nsec % 1000000000 // 1000)
            for line in text.split(b"\n"):
                lines.append(stamp + line + b"\n")
                size += len(lines[-1])
            if size > limit:
                break
        return b"".join(lines)


class Layout:
    """The ring buffer's structure offsets and sizes, as VMCOREINFO gives them."""

    def __init__(self, fields: Dict[str, str]) -> None:
        self.fields = fields

    def off(self, name: str) -> int:
        return _number(self.fields, "OFFSET(%s)" % name, None)

    def size(self, name: str) -> int:
        return _number(self.fields, "SIZE(%s)" % name, None)


def _records(memory: Memory, fields: Dict[str, str]) -> Iterator[Tuple[int, bytes]]:
    """(ts_nsec, text) of each finalized record from the tail to the head of the ring."""
    at = Layout(fields)
    rb = memory.u64(_hex(fields, "SYMBOL(prb)") or 0)
    descs_ring = rb + at.off("printk_ringbuffer.desc_ring")
    data_ring = rb + at.off("printk_ringbuffer.text_data_ring")
    count = 1 << min(memory.u32(descs_ring + at.off("prb_desc_ring.count_bits")), 24)
    descs = memory.u64(descs_ring + at.off("prb_desc_ring.descs"))
    infos = memory.u64(descs_ring + at.off("prb_desc_ring.infos"))
    head = memory.u64(descs_ring + at.off("prb_desc_ring.head_id")) & ID_MASK
    tail = memory.u64(descs_ring + at.off("prb_desc_ring.tail_id")) & ID_MASK
    data_size = 1 << min(memory.u32(data_ring + at.off("prb_data_ring.size_bits")), 26)
    data = memory.u64(data_ring + at.off("prb_data_ring.data"))
    desc_size, info_size = at.size("prb_desc"), at.size("printk_info")
    if (head - tail) & ID_MASK >= min(count, MAX_RECORDS):
        raise Unreadable("the ring's head and tail ids are inconsistent")
    record = tail
    while True:
        index = record % count
        desc = descs + index * desc_size
        state_var = memory.u64(desc + at.off("prb_desc.state_var"))
        if state_var & ID_MASK == record and state_var >> FLAGS_SHIFT in (COMMITTED, FINALIZED):
            lpos = desc + at.off("prb_desc.text_blk_lpos")
            begin = memory.u64(lpos + at.off("prb_data_blk_lpos.begin"))
            after = memory.u64(lpos + at.off("prb_data_blk_lpos.next"))
            info = infos + index * info_size
            text_len = int(struct.unpack("<H", memory.read(info + at.off("printk_info.text_len"), 2))[0])
            ts_nsec = memory.u64(info + at.off("printk_info.ts_nsec"))
            text = _text(memory, data, data_size, begin, after, min(text_len, MAX_TEXT))
            if text is not None:
                yield ts_nsec, text
        if record == head:
            return
        record = (record + 1) & ID_MASK


def _text(memory: Memory, data: int, size: int, begin: int, after: int, length: int) -> Optional[bytes]:
    """A record's text: its data block, past the block's id (a block that wraps lies at the start)."""
    if begin & 1 or begin == after:  # a record without text (lpos flags in the low bits)
        return None
    if begin // size == after // size:
        start = begin % size
    elif begin // size + 1 == after // size:
        start = 0
    else:
        return None
    return memory.read(data + start + 8, length)


def _vmcoreinfo(f: BinaryIO) -> str:
    for name, _type, desc in formats.elf_notes(f):
        if name == b"VMCOREINFO":
            return desc.rstrip(b"\0").decode("utf-8", "replace")
    raise Unreadable("the dump has no VMCOREINFO")


def _loads(f: BinaryIO) -> Iterator[Tuple[int, int, int]]:
    """(physical address, file offset, size) of each PT_LOAD segment."""
    endian, bits, _machine, phoff, phentsize, phnum = formats._elf_header(f)
    if bits != "64" or endian != "<":
        raise Unreadable("x86_64 dumps only")
    for i in range(min(phnum, 65535)):
        f.seek(phoff + i * phentsize)
        p_type, _flags, offset, _vaddr, paddr, filesz = struct.unpack("<IIQQQQ", f.read(40))
        if p_type == PT_LOAD and filesz:
            yield paddr, offset, filesz


def _hex(fields: Dict[str, str], key: str) -> Optional[int]:
    try:
        return int(fields[key], 16)
    except (KeyError, ValueError):
        return None


def _number(fields: Dict[str, str], key: str, default: Optional[int]) -> int:
    try:
        return int(fields[key])
    except (KeyError, ValueError):
        if default is None:
            raise Unreadable("VMCOREINFO lacks %s" % key) from None
        return int(default)
