"""The interpreter runs a launch's programs last to first (tests/program_order.py): each program once, and a kernel
that passes a value from one program to the next in place sees the order reversed."""

import os

import pytest
import torch
import triton
import triton.language as tl

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                                reason="checks Triton's interpreter, which runs only under TRITON_INTERPRET=1")


@triton.jit
def _count_programs(counts, order, ticket):
    pid = (tl.program_id(0) * tl.num_programs(1) + tl.program_id(1)) * tl.num_programs(2) + tl.program_id(2)
    tl.atomic_add(counts + pid, 1)
    tl.store(order + pid, tl.atomic_add(ticket, 1))  # the how-manieth program this one ran as


@triton.jit
def _chain(x):
    # Program i adds one to what program i - 1 left: a race on a GPU, a running count when programs run in order.
    i = tl.program_id(0)
    previous = tl.load(x + i - 1, mask=i > 0, other=0)
    tl.store(x + i, previous + 1)


def test_the_reversal_is_installed():
    import program_order

    assert program_order.installed()


def test_every_program_runs_once_from_the_grids_far_corner():
    counts, order = torch.zeros(24, dtype=torch.int32), torch.zeros(24, dtype=torch.int32)
    ticket = torch.zeros(1, dtype=torch.int32)
    _count_programs[(2, 3, 4)](counts, order, ticket)
    assert counts.tolist() == [1] * 24
    assert order.tolist() == list(range(23, -1, -1))


def test_a_value_passed_between_programs_in_place_is_not_there_yet():
    x = torch.zeros(5, dtype=torch.int32)
    _chain[(5,)](x)
    assert x.tolist() == [1, 1, 1, 1, 1]  # in order it would be [1, 2, 3, 4, 5]
