"""compile_check's SASS instruction counts, read from the cubin's section headers (scan2d.triton.sass_count), equal
what ``cuobjdump -sass`` lists for each kernel, for cubins that Triton's own ptxas builds for sm_80 and sm_90 here
(no GPU needed)."""

import re
import subprocess

import pytest
from triton.backends.nvidia.compiler import get_ptxas

from scan2d.triton.sass_count import sass_instruction_count, sass_listing

# Two kernels of different lengths in one module: a loop over n elements adding 1, and one store.
PTX = """
.version 7.8
.target sm_{arch}
.address_size 64

.visible .entry add_one(.param .u64 p, .param .u32 n)
{{
    .reg .pred %done;
    .reg .b32 %i, %n;
    .reg .f32 %x;
    .reg .b64 %ptr, %offset, %at;
    ld.param.u64 %ptr, [p];
    ld.param.u32 %n, [n];
    cvta.to.global.u64 %ptr, %ptr;
    mov.u32 %i, 0;
LOOP:
    setp.ge.u32 %done, %i, %n;
    @%done bra END;
    mul.wide.u32 %offset, %i, 4;
    add.s64 %at, %ptr, %offset;
    ld.global.f32 %x, [%at];
    add.f32 %x, %x, 0f3F800000;
    st.global.f32 [%at], %x;
    add.u32 %i, %i, 1;
    bra LOOP;
END:
    ret;
}}

.visible .entry store_zero(.param .u64 p)
{{
    .reg .b64 %ptr;
    ld.param.u64 %ptr, [p];
    cvta.to.global.u64 %ptr, %ptr;
    st.global.u32 [%ptr], 0;
    ret;
}}
"""


def cuobjdump_counts(cubin):
    """{kernel: instructions} as ``cuobjdump -sass`` lists them ("/*0a50*/  FFMA R4, ..." lines per function)."""
    counts = {}
    for block in re.split(r"Function : ", sass_listing(cubin))[1:]:
        name = block.split(maxsplit=1)[0]
        counts[name] = len(re.findall(r"^\s+/\*[0-9a-f]{4,}\*/\s+\S", block, re.MULTILINE))
    return counts


@pytest.mark.parametrize("arch", [80, 90])
def test_section_sizes_count_the_instructions_cuobjdump_lists(tmp_path, arch):
    ptx, cubin = tmp_path / "kernels.ptx", tmp_path / "kernels.cubin"
    ptx.write_text(PTX.format(arch=arch))
    subprocess.run([get_ptxas(arch).path, f"-arch=sm_{arch}", str(ptx), "-o", str(cubin)], check=True,
                   capture_output=True)
    data = cubin.read_bytes()
    listed = cuobjdump_counts(data)
    assert set(listed) == {"add_one", "store_zero"}
    assert listed["add_one"] > listed["store_zero"] > 0
    assert {name: sass_instruction_count(data, name) for name in listed} == listed
    with pytest.raises(KeyError, match=r"no kernel 'scan'.*\['add_one', 'store_zero'\]"):
        sass_instruction_count(data, "scan")


def test_a_file_that_is_not_a_cubin_is_named_as_such():
    with pytest.raises(ValueError, match="not a 64-bit little-endian ELF image"):
        sass_instruction_count(b"// PTX, not a cubin\n.version 7.8\n", "add_one")
