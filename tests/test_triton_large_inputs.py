"""The drop-in scan at the sizes where 32-bit offsets and CUDA's grid limit would break it, on a GPU.

On the CPU, ``test_triton_int64_offsets.py`` checks every pointer offset's type and the chunk-launch tests lower the
grid limit; these run the real sizes, which the interpreter cannot: a tensor past 2^31 elements and a backward over
more than 65,535 chunks.
"""

import pytest
import torch

from scan2d import selective_scan
from scan2d.triton import launch, operands
from test_selective_scan import make_inputs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: the interpreter would take hours "
                                "over 2^31 elements or a million steps")


def test_tensors_past_2_to_the_31_elements():
    # u, delta, z and the output (1, 2048, 2^20 + 64) in bfloat16: 2.15e9 elements, the last channels' offsets past
    # 2^31.  Channels scan independently, so the last 16 channels must equal the same scan run on them alone (a
    # small tensor, 32-bit offsets): wrong offsets would read other elements, far outside bfloat16's rounding.
    dim, length = 2048, 2 ** 20 + 64
    g = torch.Generator(device="cuda").manual_seed(0)
    u = torch.randn(1, dim, length, device="cuda", dtype=torch.bfloat16, generator=g)
    delta = torch.rand(1, dim, length, device="cuda", dtype=torch.bfloat16, generator=g) * 0.1
    z = torch.randn(1, dim, length, device="cuda", dtype=torch.bfloat16, generator=g)
    A = -torch.rand(dim, 16, device="cuda", generator=g) - 0.5
    B = torch.randn(1, 16, length, device="cuda", dtype=torch.bfloat16, generator=g)
    C = torch.randn(1, 16, length, device="cuda", dtype=torch.bfloat16, generator=g)
    D = torch.randn(dim, device="cuda", generator=g)
    assert u.numel() > 2 ** 31
    with torch.no_grad():
        out = selective_scan(u, delta, A, B, C, D, z, None, True, backend="triton")
        last = slice(dim - 16, dim)
        alone = selective_scan(u[:, last].contiguous(), delta[:, last].contiguous(), A[last], B, C, D[last],
                               z[:, last].contiguous(), None, True, backend="triton")
    torch.testing.assert_close(out[:, last], alone, rtol=1e-2, atol=1e-2)
    assert torch.isfinite(out[:, :16]).all()


def test_backward_over_more_chunks_than_a_grid_holds(monkeypatch):
    # 2^20 + 80 steps in 16-step training chunks: 65,541 chunks, past the 65,535 a grid holds along z.  The default
    # split (65,535 + 6) and another (40,000 + 25,541) must give the same output and gradients: the chunks are
    # computed alike whichever launch runs them, and a launch that skipped or repeated chunks would differ.
    inp = make_inputs(1, 4, 2 ** 20 + 80, 4, 0, dtype=torch.float32)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]

    def run():
        leaves = {k: v.cuda().requires_grad_() for k, v in inp.items()}
        out = selective_scan(*(leaves[n] for n in names), delta_softplus=True, backend="triton")
        grads = torch.autograd.grad(out.square().mean(), [leaves[n] for n in names])
        return [out.detach()] + list(grads)

    assert operands.cdiv(2 ** 20 + 80, 16) > launch.MAX_GRID_CHUNKS
    default = run()
    monkeypatch.setattr(launch, "MAX_GRID_CHUNKS", 40_000)
    other = run()
    for name, a, b in zip(["out"] + names, default, other):
        assert torch.isfinite(a).all(), name
        torch.testing.assert_close(a, b, msg=name)
