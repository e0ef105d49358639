"""The interpreter runs a launch's programs last to first (tests/program_order.py), each program once.  (A kernel
that passes a value from one program to the next in place fails before its order matters: tests/program_races.py.)"""

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


def test_the_reversal_is_installed():
    import program_order

    assert program_order.installed()


def test_every_program_runs_once_from_the_grids_far_corner():
    counts, order = torch.zeros(24, dtype=torch.int32), torch.zeros(24, dtype=torch.int32)
    ticket = torch.zeros(1, dtype=torch.int32)
    _count_programs[(2, 3, 4)](counts, order, ticket)
    assert counts.tolist() == [1] * 24
    assert order.tolist() == list(range(23, -1, -1))
