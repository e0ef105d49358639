"""Two programs of one launch sharing an element through a plain store fail the launch (tests/program_races.py);
programs that keep to their own elements, or share them through atomics, do not."""

import os

import pytest
import torch
import triton
import triton.language as tl

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                                reason="checks Triton's interpreter, which runs only under TRITON_INTERPRET=1")


@triton.jit
def _chain(x):
    # Program i adds one to what program i - 1 left: a running count when programs run in order, a race on a GPU.
    i = tl.program_id(0)
    previous = tl.load(x + i - 1, mask=i > 0, other=0)
    tl.store(x + i, previous + 1)


@triton.jit
def _all_to_one(x):
    tl.store(x, tl.program_id(0))


@triton.jit
def _own_then_shared(x, total):
    # Each program reads, adds to and writes back its own element, then adds it to a shared total with an atomic.
    i = tl.program_id(0)
    v = tl.load(x + i) + 1
    tl.store(x + i, v)
    tl.atomic_add(total, v, sem="relaxed")


def test_the_check_is_installed():
    import program_races

    assert program_races.installed()


def test_a_program_loading_what_another_stores_fails_the_launch():
    x = torch.zeros(5, dtype=torch.int32)
    with pytest.raises(Exception, match=r"_chain: program [0-4] loads the element at 0x[0-9a-f]+ of x, which program "
                                        r"[0-4] of the same launch stores \(4 such loads\): a race on a GPU"):
        _chain[(5,)](x)


def test_programs_storing_to_one_element_fail_the_launch():
    x = torch.zeros(1, dtype=torch.int32)
    with pytest.raises(Exception, match=r"_all_to_one: programs \[0, 1, 2\] of one launch all store to the element "
                                        r"at 0x[0-9a-f]+ of x \(1 such elements\): a race on a GPU"):
        _all_to_one[(3,)](x)


def test_own_elements_and_atomics_pass_and_the_next_launch_starts_clean():
    x, total = torch.arange(4, dtype=torch.int32), torch.zeros(1, dtype=torch.int32)
    with pytest.raises(Exception, match="race"):
        _all_to_one[(2,)](x)  # a failed launch leaves nothing recorded for the next
    _own_then_shared[(4,)](x, total)
    assert x.tolist()[1:] == [2, 3, 4] and total.item() == sum(x.tolist())
