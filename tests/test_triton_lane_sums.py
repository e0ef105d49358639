"""``lane_sums.lane_sums``: sums over a warp's lanes, reduce-scattered so that lane l holds step l // (32 / T)."""

import pytest
import torch
import triton
import triton.language as tl

from scan2d.triton.lane_sums import lane_sums

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@triton.jit
def _lane_sums_kernel(x_ptr, out_ptr, T: tl.constexpr):
    t = tl.arange(0, T)
    lane = tl.arange(0, 32)
    v = lane_sums(tl.load(x_ptr + t[:, None] * 32 + lane[None, :]), lane, T, 32)
    tl.store(out_ptr + lane, v)


@pytest.mark.parametrize("steps", [2, 4, 8, 16, 32])
def test_every_lane_holds_its_steps_sum(steps):
    # Integers, so that any order of the additions gives the exact sum.
    x = torch.randint(-50, 50, (steps, 32), generator=torch.Generator().manual_seed(steps)).float()
    out = torch.full((32,), float("nan"), device=DEVICE)
    _lane_sums_kernel[(1,)](x.to(DEVICE), out, steps, num_warps=1)
    lanes_per_step = 32 // steps
    assert torch.equal(out.cpu(), x.sum(1).repeat_interleave(lanes_per_step))
