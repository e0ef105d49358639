"""``torch.empty`` and its kin start as NaN (-1 for integers) in the tests (tests/poisoned_empty.py)."""

import os

import pytest
import torch

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                                reason="installed with the interpreter's checks, under TRITON_INTERPRET=1")


def test_the_poison_is_installed():
    import poisoned_empty

    assert poisoned_empty.installed()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_empty_floats_are_nan(dtype):
    like = torch.ones(3, dtype=dtype)
    for t in (torch.empty(2, 3, dtype=dtype), torch.empty_like(like), like.new_empty((4,)),
              torch.empty((2,), dtype=dtype, device="cpu")):
        assert t.dtype == dtype and t.numel() > 0 and bool(t.isnan().all())


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.int8])
def test_empty_integers_are_minus_one(dtype):
    assert torch.empty(3, dtype=dtype).tolist() == [-1, -1, -1]
    assert torch.zeros(2, dtype=dtype).new_empty(2).tolist() == [-1, -1]


def test_what_is_written_before_it_is_read_is_unchanged():
    out = torch.empty(4)
    out.copy_(torch.arange(4.0))
    assert out.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert torch.empty(2, dtype=torch.bool).dtype == torch.bool  # booleans are left as allocated
