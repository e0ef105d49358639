"""The interpreter's bounds check (tests/memory_bounds.py) catches what it claims to, and passes what a GPU allows."""

import os

import pytest
import torch
import triton
import triton.language as tl

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                                reason="checks Triton's interpreter, which runs only under TRITON_INTERPRET=1")


@triton.jit
def _copy(src, dst, n_read, n_write, MASKED: tl.constexpr, ATOMIC: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    if MASKED:
        x = tl.load(src + i, mask=i < n_read, other=0.0)
    else:
        x = tl.load(src + i)
    if ATOMIC:
        tl.atomic_add(dst + i, x, mask=i < n_write, sem="relaxed")
    else:
        tl.store(dst + i, x, mask=i < n_write)


@triton.jit
def _copy_pair(pair, dst, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    tl.store(dst + i, tl.load(pair[0] + i) + tl.load(pair[1] + i))


def test_the_check_is_installed():
    import memory_bounds

    assert memory_bounds.installed()


def test_masked_accesses_inside_the_tensors_pass():
    src, dst = torch.arange(6, dtype=torch.float32), torch.zeros(6)
    _copy[(1,)](src, dst, 6, 6, MASKED=True, ATOMIC=False, BLOCK=8)
    assert dst.tolist() == src.tolist()


@pytest.mark.parametrize("what,masked,n_write,atomic,outside", [("a load", False, 6, False, "2 of 8"),
                                                                ("a store", True, 8, False, "2 of 8"),
                                                                ("an atomic", True, 7, True, "1 of 7")])
def test_an_access_past_a_tensors_end_fails_the_launch(what, masked, n_write, atomic, outside):
    # Two separate allocations: the elements past src's end are no tensor of the launch, whatever lies there.
    src, dst = torch.arange(6, dtype=torch.float32), torch.zeros(6)
    with pytest.raises(Exception, match=f"_copy: {outside} masked-in elements of {what} lie outside every tensor of "
                                        "the launch; the first at 0x[0-9a-f]+, \\+24 bytes from the start of the "
                                        "storage at 0x[0-9a-f]+ of 24 bytes"):
        _copy[(1,)](src, dst, 6, n_write, MASKED=masked, ATOMIC=atomic, BLOCK=8)


def test_a_view_may_be_read_past_its_end_inside_its_storage():
    # A GPU faults only outside an allocation; the kernels read views (x_proj's columns) through their storage.
    storage = torch.arange(16, dtype=torch.float32)
    dst = torch.zeros(8)
    _copy[(1,)](storage[:6], dst, 6, 8, MASKED=False, ATOMIC=False, BLOCK=8)
    assert dst.tolist() == list(range(8))


def test_tensors_inside_tuple_arguments_count():
    a, b, dst = torch.ones(8), torch.full((8,), 2.0), torch.zeros(8)
    _copy_pair[(1,)]((a, b), dst, BLOCK=8)
    assert dst.tolist() == [3.0] * 8
    with pytest.raises(Exception, match="outside every tensor"):
        _copy_pair[(1,)]((a, b[:4].clone()), dst, BLOCK=8)
