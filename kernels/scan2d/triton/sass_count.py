"""The static SASS instruction count of a kernel in a cubin, read from the cubin's ELF section headers.

Since Volta every SASS instruction is 16 bytes, and ptxas puts each kernel's code in its own ``.text.<kernel>``
section, so the section's size over 16 is the count that ``cuobjdump -sass`` lists (padding NOPs included).  Reading
two headers takes microseconds; disassembling a 5,000-instruction kernel with cuobjdump took a second of the CI
machine's time, a third of each compile_check build.  tests/test_sass_count.py checks the two against each other.
``sass_listing`` gives that listing, for tools that read the instructions themselves.
"""

from __future__ import annotations

import struct
import subprocess
import tempfile
from pathlib import Path

INSTRUCTION_BYTES = 16  # sm_70 and later
_ELF_MAGIC = b"\x7fELF"
_ELFCLASS64, _LITTLE_ENDIAN = 2, 1


def _sections(elf: bytes) -> dict:
    """{section name: size in bytes} of a 64-bit little-endian ELF image (cubins are)."""
    if elf[:4] != _ELF_MAGIC or elf[4] != _ELFCLASS64 or elf[5] != _LITTLE_ENDIAN:
        raise ValueError("not a 64-bit little-endian ELF image: expected a cubin from ptxas for sm_70 or later")
    (table,) = struct.unpack_from("<Q", elf, 0x28)  # e_shoff
    entry_size, count, names_index = struct.unpack_from("<HHH", elf, 0x3A)  # e_shentsize, e_shnum, e_shstrndx
    # Each header: sh_name (offset into the names section), ..., sh_offset at byte 24, sh_size at byte 32.
    headers = [struct.unpack_from("<I20xQQ", elf, table + i * entry_size) for i in range(count)]
    names_start = headers[names_index][1]

    def name(offset: int) -> str:
        start = names_start + offset
        return elf[start:elf.index(b"\0", start)].decode()

    return {name(name_offset): size for name_offset, _, size in headers}


def sass_instruction_count(cubin: bytes, kernel: str) -> int:
    """Instructions in ``kernel``'s code (its ``.text.<kernel>`` section) in ``cubin``, as ptxas wrote them: loops
    once, padding at the end included."""
    sections = _sections(cubin)
    size = sections.get(f".text.{kernel}")
    if size is None:
        found = sorted(n[len(".text."):] for n in sections if n.startswith(".text."))
        raise KeyError(f"no kernel {kernel!r} in the cubin; it holds {found}")
    return size // INSTRUCTION_BYTES


def sass_listing(cubin: bytes) -> str:
    """``cuobjdump -sass`` of ``cubin`` ("/*0a50*/  FFMA R4, ..." lines under a "Function : <kernel>" header for
    each kernel), with the cuobjdump that ships beside Triton's ptxas."""
    from triton.backends.nvidia.compiler import get_ptxas

    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        return subprocess.run([str(Path(get_ptxas(90).path).with_name("cuobjdump")), "-sass", f.name],
                              check=True, capture_output=True, text=True).stdout
