"""The backward's tile adjoint, both ways it can run, against the recurrence it solves, for every power-of-two
tile length (the property tests of the ops run the default tiles only)."""

import pytest
import torch
import triton
import triton.language as tl

from scan2d.triton.recurrence import reverse_steps, tile_adjoint

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@triton.jit
def _adjoint_kernel(delta_next_ptr, A_ptr, dy_ptr, C_ptr, g_end_ptr, g_ptr, rev_ptr, BY_REGISTERS: tl.constexpr,
                    T: tl.constexpr, D: tl.constexpr, N: tl.constexpr):
    t = tl.arange(0, T)
    d = tl.arange(0, D)
    n = tl.arange(0, N)
    td = t[:, None] * D + d[None, :]
    dn = d[:, None] * N + n[None, :]
    tdn = (t[:, None, None] * D + d[None, :, None]) * N + n[None, None, :]
    Cm = tl.load(C_ptr + t[:, None] * N + n[None, :])[:, None, :]
    g = tile_adjoint(tl.load(delta_next_ptr + td), tl.load(A_ptr + dn), tl.load(dy_ptr + td), Cm,
                      tl.load(g_end_ptr + dn), t, BY_REGISTERS)
    tl.store(g_ptr + tdn, g)
    tl.store(rev_ptr + tdn, reverse_steps(tdn.to(tl.float32)))


@pytest.mark.parametrize("by_registers", [True, False], ids=["reversed-steps", "reverse-scan"])
@pytest.mark.parametrize("steps", [1, 2, 4, 16, 32])
def test_tile_adjoint_solves_the_backward_recurrence(steps, by_registers):
    D, N = 4, 8
    delta_next = torch.rand(steps, D, dtype=torch.float64)
    A = -torch.rand(D, N, dtype=torch.float64) * 4
    dy, C = torch.randn(steps, D, dtype=torch.float64), torch.randn(steps, N, dtype=torch.float64)
    g_end = torch.randn(D, N, dtype=torch.float64)
    # g_t = C_t dy_t + exp(delta_{t+1} A) g_{t+1}; g_end arrives after the last step, through no decay of this tile.
    expected = torch.empty(steps, D, N, dtype=torch.float64)
    for t in reversed(range(steps)):
        later = g_end if t == steps - 1 else torch.exp(delta_next[t, :, None] * A) * expected[t + 1]
        expected[t] = dy[t, :, None] * C[t, None, :] + later
    g, rev = (torch.zeros(steps, D, N, device=DEVICE) for _ in range(2))
    args = [x.float().to(DEVICE) for x in (delta_next, A, dy, C, g_end)]
    _adjoint_kernel[(1,)](*args, g, rev, BY_REGISTERS=by_registers, T=steps, D=D, N=N)
    torch.testing.assert_close(g.double().cpu(), expected, rtol=1e-5, atol=1e-5)
    # reverse_steps itself: an exact permutation of the steps, nothing else moved.
    index = torch.arange(steps * D * N, dtype=torch.float32).reshape(steps, D, N)
    assert torch.equal(rev.cpu(), index.flip(0))
