"""The interpreter's tl.reduce combines each element before the accumulator (tests/reduce_order.py, installed by
conftest.py), so a kernel that reduces with a non-commutative operator fails in CI as it could on a GPU."""

import os

import pytest
import torch
import triton
import triton.language as tl

from scan2d.triton.recurrence import combine


@triton.jit
def _recurrence_end_state(a_ptr, b_ptr, out_ptr, N: tl.constexpr):
    steps = tl.arange(0, N)
    end = tl.reduce((tl.load(a_ptr + steps), tl.load(b_ptr + steps)), 0, combine)[1]
    tl.store(out_ptr, end)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                    reason="checks the interpreter's reduction order; a GPU reduces in its own order")
def test_reduce_with_the_recurrence_combine_is_not_the_recurrence():
    decay = torch.tensor([0.5, 2.0, 0.25, 3.0])
    inputs = torch.tensor([1.0, -1.0, 2.0, 0.5])
    out = torch.zeros(1)
    _recurrence_end_state[(1,)](decay, inputs, out, N=4)
    in_order = element_first = (1.0, 0.0)
    for a, b in zip(decay.tolist(), inputs.tolist()):
        in_order = (in_order[0] * a, a * in_order[1] + b)  # h -> a h + b, step by step: the recurrence
        element_first = (a * element_first[0], element_first[0] * b + element_first[1])
    assert in_order[1] == 7.25 and element_first[1] == 2.625
    assert out.item() == element_first[1]
