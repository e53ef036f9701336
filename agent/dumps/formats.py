"""Recognise a dump from its first bytes and read its VMCOREINFO, without crash or drgn.

ELF vmcores (kdump's /proc/vmcore, QEMU's dump-guest-memory) carry VMCOREINFO as
a note; makedumpfile's kdump-compressed files carry it at an offset given in the
sub-header, and the kernel release in the header's utsname; the flattened form
is the same file cut into (offset, size) records for streaming.
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Tuple

ELF_MAGIC = b"\x7fELF"
KDUMP_MAGIC = b"KDUMP   "
DISKDUMP_MAGIC = b"DISKDUMP"
FLAT_MAGIC = b"makedumpfile\0"
FLAT_HEADER = 4096
PT_NOTE = 4
SHT_NOTE = 7
NT_GNU_BUILD_ID = 3
MACHINES = {
    3: "x86",
    62: "x86_64",
    183: "arm64",
    40: "arm",
    21: "ppc64",
    22: "s390x",
    243: "riscv64",
    8: "mips",
    258: "loongarch64",
}
UNAME_MACHINE = {"aarch64": "arm64", "i686": "x86", "i386": "x86", "ppc64le": "ppc64", "s390": "s390x"}
MAX_NOTES = 4 << 20
MAX_FLAT_RECORDS = 256


class NotADump(Exception):
    """The file is not a dump format we know."""


def canonical_arch(machine: str) -> str:
    """`uname -m` spelling to the dump's (and crash's) spelling: aarch64 -> arm64."""
    return UNAME_MACHINE.get(machine, machine)


def identify(path: str) -> Dict[str, Any]:
    """format, arch, release, build_id (None when unknown) and the raw VMCOREINFO keys we use."""
    with open(path, "rb") as f:
        head = f.read(16)
        if head.startswith(ELF_MAGIC):
            info = _elf_dump(f)
        elif head.startswith(KDUMP_MAGIC) or head.startswith(DISKDUMP_MAGIC):
            info = _kdump(f, _FileReader(f))
        elif head.startswith(FLAT_MAGIC):
            info = _kdump(f, _FlatReader(f))
            info["format"] = "flattened"
        else:
            raise NotADump("unknown magic %r" % head[:8])
    return info


def parse_vmcoreinfo(text: str) -> Dict[str, str]:
    fields: Dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return fields


def _summary(fmt: str, arch: Optional[str], vmcoreinfo: Optional[str], release: Optional[str] = None) -> Dict[str, Any]:
    fields = parse_vmcoreinfo(vmcoreinfo or "")
    return {
        "format": fmt,
        "arch": arch,
        "release": fields.get("OSRELEASE") or release,
        "build_id": fields.get("BUILD-ID"),
        "vmcoreinfo": vmcoreinfo is not None,
        "page_size": fields.get("PAGESIZE"),
        "crashtime": fields.get("CRASHTIME"),
    }


# ---------------------------------------------------------------- ELF

# Where the ELF header keeps (table offset, entry size + count) of the program and section
# headers, by class: (offset field, its format, entsize/num position).
_TABLES = {
    ("64", "ph"): (32, "Q", 54),
    ("64", "sh"): (40, "Q", 58),
    ("32", "ph"): (28, "I", 42),
    ("32", "sh"): (32, "I", 46),
}


def _table(head: bytes, endian: str, bits: str, which: str) -> Tuple[int, int, int]:
    """(offset, entry size, entry count) of the header's program ("ph") or section ("sh") table."""
    at, fmt, sizes = _TABLES[(bits, which)]
    (offset,) = struct.unpack_from(endian + fmt, head, at)
    entsize, num = struct.unpack_from(endian + "HH", head, sizes)
    return offset, entsize, num


def _elf_header(f: BinaryIO) -> Tuple[str, str, int, int, int, int]:
    """(endian, class, e_machine, e_phoff, e_phentsize, e_phnum)."""
    f.seek(0)
    ident = f.read(64)
    if len(ident) < 52:
        raise NotADump("truncated ELF header")
    bits = {1: "32", 2: "64"}.get(ident[4])
    endian = {1: "<", 2: ">"}.get(ident[5])
    if bits is None or endian is None:
        raise NotADump("bad ELF class or byte order")
    machine = struct.unpack_from(endian + "H", ident, 18)[0]
    return (endian, bits, machine) + _table(ident, endian, bits, "ph")


def _segments(
    f: BinaryIO, endian: str, bits: str, phoff: int, phentsize: int, phnum: int
) -> Iterator[Tuple[int, int, int]]:
    """(type, file offset, file size) of each program header."""
    for i in range(min(phnum, 65535)):
        f.seek(phoff + i * phentsize)
        ph = f.read(phentsize)
        if bits == "64":
            p_type, _flags, offset, _va, _pa, filesz = struct.unpack_from(endian + "IIQQQQ", ph)
        else:
            p_type, offset, _va, _pa, filesz = struct.unpack_from(endian + "IIIII", ph)
        yield p_type, offset, filesz


def elf_notes(f: BinaryIO) -> Iterator[Tuple[bytes, int, bytes]]:
    """(name, type, desc) of every note in the PT_NOTE segments."""
    endian, bits, _machine, phoff, phentsize, phnum = _elf_header(f)
    for p_type, offset, filesz in list(_segments(f, endian, bits, phoff, phentsize, phnum)):
        if p_type == PT_NOTE and filesz:
            f.seek(offset)
            yield from _walk_notes(f.read(min(filesz, MAX_NOTES)), endian)


def _walk_notes(data: bytes, endian: str) -> Iterator[Tuple[bytes, int, bytes]]:
    pos = 0
    while pos + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from(endian + "III", data, pos)
        pos += 12
        name = data[pos : pos + namesz].rstrip(b"\0")
        pos += (namesz + 3) & ~3
        desc = data[pos : pos + descsz]
        pos += (descsz + 3) & ~3
        yield name, ntype, desc


def _elf_dump(f: BinaryIO) -> Dict[str, Any]:
    endian, bits, machine, phoff, phentsize, phnum = _elf_header(f)
    vmcoreinfo = None
    for name, _type, desc in elf_notes(f):
        if name == b"VMCOREINFO":
            vmcoreinfo = desc.rstrip(b"\0").decode("utf-8", "replace")
            break
    info = _summary("elf", MACHINES.get(machine, "machine-%d" % machine), vmcoreinfo)
    info["expected_size"] = _segments_end(f, endian, bits, phoff, phentsize, phnum)
    return info


def _segments_end(f: BinaryIO, endian: str, bits: str, phoff: int, phentsize: int, phnum: int) -> int:
    """Where the last segment's data ends: a smaller file was cut short (an interrupted write)."""
    return max(
        (offset + filesz for _type, offset, filesz in _segments(f, endian, bits, phoff, phentsize, phnum)), default=0
    )


def elf_build_id(path: str) -> Optional[str]:
    """The GNU build id of an ELF file (a vmlinux; a module's .ko, which has sections only), or None."""
    with open(path, "rb") as f:
        if f.read(4) != ELF_MAGIC:
            raise NotADump("not an ELF file")
        for notes in (elf_notes, _section_notes):
            for name, ntype, desc in notes(f):
                if name == b"GNU" and ntype == NT_GNU_BUILD_ID:
                    return desc.hex()
    return None


def _section_notes(f: BinaryIO) -> Iterator[Tuple[bytes, int, bytes]]:
    """(name, type, desc) of every note in the SHT_NOTE sections (a relocatable ELF has no PT_NOTE)."""
    endian, bits = _elf_header(f)[:2]
    f.seek(0)
    shoff, shentsize, shnum = _table(f.read(64), endian, bits, "sh")
    for i in range(min(shnum, 65535) if shoff else 0):
        f.seek(shoff + i * shentsize)
        sh = f.read(shentsize)
        fields = struct.unpack_from(endian + ("IIQQQQ" if bits == "64" else "IIIIII"), sh)
        sh_type, offset, size = fields[1], fields[4], fields[5]
        if sh_type == SHT_NOTE and size:
            f.seek(offset)
            yield from _walk_notes(f.read(min(size, MAX_NOTES)), endian)


# ---------------------------------------------------------------- kdump-compressed / flattened


class _FileReader:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f

    def read(self, offset: int, size: int) -> bytes:
        self.f.seek(offset)
        return self.f.read(size)


class _FlatReader:
    """Reads logical offsets of a flattened file from its first records (headers come first)."""

    def __init__(self, f: BinaryIO) -> None:
        self.records: List[Tuple[int, int, int]] = []  # (logical offset, size, file position)
        pos = FLAT_HEADER
        f.seek(pos)
        for _ in range(MAX_FLAT_RECORDS):
            head = f.read(16)
            if len(head) < 16:
                break
            offset, size = struct.unpack(">qq", head)
            if offset < 0 or size < 0:  # the end marker
                break
            self.records.append((offset, size, pos + 16))
            pos += 16 + size
            f.seek(pos)
        self.f = f

    def read(self, offset: int, size: int) -> bytes:
        """Up to size bytes from the record holding offset (headers sit in one record each)."""
        for start, length, where in self.records:
            if start <= offset < start + length:
                self.f.seek(where + offset - start)
                return self.f.read(min(size, start + length - offset))
        return b""


def _kdump(f: BinaryIO, reader: Any) -> Dict[str, Any]:
    header = reader.read(0, 512)
    if len(header) < 432 or not (header.startswith(KDUMP_MAGIC) or header.startswith(DISKDUMP_MAGIC)):
        raise NotADump("no kdump header")
    (version,) = struct.unpack_from("<i", header, 8)
    release = _cstr(header[12 + 2 * 65 : 12 + 3 * 65])
    machine = _cstr(header[12 + 4 * 65 : 12 + 5 * 65])
    (block_size,) = struct.unpack_from("<i", header, 428)
    vmcoreinfo = None
    if version >= 3 and 0 < block_size <= 1 << 20:
        sub = reader.read(block_size, 48)
        if len(sub) == 48:
            offset, size = struct.unpack_from("<qQ", sub, 32)
            if 0 < size <= MAX_NOTES:
                vmcoreinfo = reader.read(offset, size).rstrip(b"\0").decode("utf-8", "replace") or None
    return _summary("kdump-compressed", canonical_arch(machine) or None, vmcoreinfo, release or None)


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")
