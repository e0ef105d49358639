"""Gluon kernels run in CI's interpreter through ``gluon_lang``'s layout-free stand-in for Gluon's language."""

import pytest
import torch
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from scan2d._backend import triton_interpreted
from scan2d.triton.gluon_lang import gl, jit

pytestmark = pytest.mark.skipif(not triton_interpreted(), reason="gluon_lang's stand-in serves only the interpreter; "
                                "on a GPU the kernels are Gluon's own")


@jit
def _transpose_sum_kernel(x_ptr, y_ptr, M: tl.constexpr, N: tl.constexpr, A: tl.constexpr, B: tl.constexpr):
    # x (M, N) read in layout A, moved to layout B, summed over its rows: y (N,) = x.sum(0).
    rows = gl.arange(0, M, layout=gl.SliceLayout(1, A))
    cols = gl.arange(0, N, layout=gl.SliceLayout(0, A))
    x = gl.load(x_ptr + rows[:, None] * N + cols[None, :])
    moved = gl.convert_layout(x, B)
    total = gl.sum(moved, axis=0) + gl.zeros([N], gl.float32, gl.SliceLayout(0, B))
    gl.store(y_ptr + gl.arange(0, N, layout=gl.SliceLayout(0, B)), total)


def test_a_gluon_kernel_computes_the_same_values_with_its_layouts_dropped():
    x = torch.randn(8, 16)
    y = torch.empty(16)
    a = gl.BlockedLayout([1, 4], [8, 4], [1, 1], [1, 0])
    b = gl.BlockedLayout([8, 1], [1, 32], [1, 1], [0, 1])
    _transpose_sum_kernel[(1,)](x, y, M=8, N=16, A=a, B=b, num_warps=1)
    assert torch.allclose(y, x.sum(0), rtol=1e-6, atol=1e-6)


def test_a_gluon_name_the_stand_in_lacks_fails_loudly():
    # Shared-memory descriptors have no meaning without a GPU: a kernel using them cannot pass as interpreted.
    assert gl.__name__ == "InterpretedGluon" and isinstance(_transpose_sum_kernel, InterpretedFunction)
    with pytest.raises(AttributeError):
        gl.allocate_shared_memory
