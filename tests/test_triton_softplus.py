"""``tile_io.softplus``, which builds delta in every kernel: log(1 + exp(x)) from an exponential and a short
series instead of libdevice's logf, to float32 accuracy over the whole range."""

import torch
import triton
import triton.language as tl

from scan2d.triton.tile_io import softplus

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@triton.jit
def _softplus_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + i, softplus(tl.load(x_ptr + i, mask=i < n, other=0.0)), mask=i < n)


def test_softplus_is_accurate_to_float32_from_underflow_to_overflow():
    # Every magnitude the dt projection can produce, the crossover at 0, and the far tails: for x below -16 the old
    # log(1 + exp(x)) rounded to 0, the series keeps the relative accuracy of exp(x).
    x = torch.cat([torch.linspace(-87.0, 87.0, 20001), torch.linspace(-1e-3, 1e-3, 101),
                   torch.tensor([-30.0, -20.0, -16.0, -5.0, -2.25, -1.0, 0.0, 1.0, 20.0, 30.0])])
    out = torch.empty_like(x, device=DEVICE)
    _softplus_kernel[(triton.cdiv(x.numel(), 1024),)](x.to(DEVICE), out, x.numel(), BLOCK=1024)
    expected = torch.nn.functional.softplus(x.double(), threshold=1000.0)
    relative = ((out.cpu().double() - expected) / expected).abs()
    # float32 rounding of the exponential, the division and the series: a few ulp (GPU: ex2.approx, div.full); and
    # exp(x) = 2^(x log2 e), where rounding the float32 product shifts the power by up to |x| 2^-24 log2 e, a
    # relative error of |x| 6e-8 (on a GPU tl.exp is computed that way too).
    bound = 1e-6 + 1e-7 * x.double().abs()
    assert (relative <= bound).all(), (relative.max().item(), x[(relative / bound).argmax()].item())
    assert relative[x.abs() <= 1].max().item() < 1e-6


def test_softplus_of_infinities():
    x = torch.tensor([float("-inf"), float("inf")])
    out = torch.empty_like(x, device=DEVICE)
    _softplus_kernel[(1,)](x.to(DEVICE), out, 2, BLOCK=16)
    assert out.cpu().tolist() == [0.0, float("inf")]
