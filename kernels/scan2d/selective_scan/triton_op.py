"""Autograd wrappers of the Triton kernels for the drop-in ``selective_scan`` (mamba-ssm's ``selective_scan_fn``).

Eager calls run ``_SelectiveScanTriton``, a ``torch.autograd.Function``. Under ``torch.compile`` the same forward
and backward run as two custom ops, ``scan2d::selective_scan_fwd`` and ``scan2d::selective_scan_bwd``, whose fake
implementations give their outputs' shapes, so a compiled model traces through the scan without a graph break
(``fullgraph=True``). Eager calls keep the Function: dispatching a custom op with its autograd formula cost 6 us
more per call without gradients and 21 us with them on the 2-core CI machine (torch 2.13), against the op's 125-350
us of host work per call there (bench/JOURNAL.md, "The host's share of a layer call").
"""

from __future__ import annotations

from typing import Optional

import torch

from .._backend import autograd_records
from ..directions import ScanDirection
from ..triton import launch, operands
from ..triton.tiles import TileConfig, current_tiles


def _operands(u, delta, A, B, C, D, z, delta_bias, delta_softplus, tiles=None,
              for_backward=True) -> operands.ScanOperands:
    batch, dim, length = u.shape
    grouped = B.dim() == 4
    B4 = B if grouped else B.unsqueeze(1)
    C4 = C if grouped else C.unsqueeze(1)
    return operands.ScanOperands(
        u=u, u_strides=(u.stride(0), u.stride(2), u.stride(1)), u_low=u, u_low_batch_stride=0,
        x=u, x_strides=(0, 0, 0, 0), x_low=u, x_low_batch_stride=0,
        delta=delta, delta_strides=(delta.stride(0), delta.stride(2), delta.stride(1)),
        B=B4, C=C4, B_strides=(B4.stride(0), B4.stride(1), B4.stride(2), B4.stride(3)),
        C_strides=(C4.stride(0), C4.stride(1), C4.stride(2), C4.stride(3)),
        per_group=dim // B4.shape[1], dt_weight=u, dt_bias=delta_bias if delta_bias is not None else u,
        A=A, D=D, z=z, z_strides=(z.stride(0), z.stride(2), z.stride(1)) if z is not None else (0, 0, 0),
        directions=(ScanDirection(None),), height=1, width=length,  # one row-first scan of a 1 x L map
        batch=batch, K=1, dim=dim, n_state=A.shape[1], rank=1, order=0, lowrank=False,
        grouped=grouped and B4.shape[1] > 1, has_bias=delta_bias is not None, softplus=bool(delta_softplus),
        tiles=tiles or current_tiles(),
        for_backward=for_backward,
    )


def _states_adjacent(bc: torch.Tensor) -> torch.Tensor:
    """B or C (batch, [G,] N, L) as given, or, where state n lies n x L elements from state 0 and that reaches
    ``operands.INT32_OFFSET_LIMIT`` (2^31), the same values with each step's N states adjacent (strides (..., 1, N)).
    The kernels add n times the state stride in 32-bit arithmetic: in 64-bit it cost the state loops 39-75 registers
    (compile_check, sm_90).  The copy is N / dim of u's size."""
    if (bc.shape[-2] - 1) * bc.stride(-2) < operands.INT32_OFFSET_LIMIT:
        return bc
    return bc.transpose(-1, -2).contiguous().transpose(-1, -2)


def _prepare(u, delta, A, B, C, D, z, delta_bias) -> tuple:
    """The inputs as the kernels read them: contiguous, A in float32, B and C with adjacent states past 2^31."""
    u, delta, A, B, C, D, z, delta_bias = (t.contiguous() if t is not None else None
                                           for t in (u, delta, A, B, C, D, z, delta_bias))
    return u, delta, A.float(), _states_adjacent(B), _states_adjacent(C), D, z, delta_bias


def _forward(prepared: tuple, delta_softplus: bool, for_backward: bool, tiles: TileConfig):
    """out (batch, dim, L) in u's dtype, the last state (batch, dim, N) fp32, and for the backward the state entering
    every chunk (batch, chunks, dim, N) and the chunks' delta sums (batch, chunks, dim), both fp32."""
    u = prepared[0]
    ops = _operands(*prepared, delta_softplus, tiles, for_backward)
    out = torch.empty_like(u)
    entry, dsum, final = launch.forward(ops, out, (out.stride(0), 0, out.stride(2), out.stride(1)), False, None)
    return out, final.view(u.shape[0], u.shape[1], -1), entry, dsum


def _backward(prepared: tuple, entry, dsum, dout, delta_softplus: bool, tiles: TileConfig, A_dtype) -> tuple:
    """Gradients of (u, delta, A, B, C, D, z, delta_bias) in their dtypes (A's: ``A_dtype``), None for absent
    inputs."""
    u, delta, A, B, C, D, z, bias = prepared
    ops = _operands(u, delta, A, B, C, D, z, bias, delta_softplus, tiles)
    dout = dout.contiguous()
    if dout.data_ptr() % 16:  # a view into another tensor: the kernels' 4-step vectors need 16-byte alignment
        dout = dout.clone()
    f32 = dict(dtype=torch.float32, device=u.device)
    # dB and dC laid out like B and C (the kernels address them with B's and C's strides).
    buffers = dict(du=torch.zeros(u.shape, **f32), ddelta=torch.zeros(delta.shape, **f32),
                   dB=torch.zeros_like(B, dtype=torch.float32), dC=torch.zeros_like(C, dtype=torch.float32),
                   dz=torch.zeros(z.shape, **f32) if z is not None else None)
    if B.dim() == 3:  # kernels address B as (batch, G=1, N, L)
        buffers["dB"], buffers["dC"] = buffers["dB"].unsqueeze(1), buffers["dC"].unsqueeze(1)
    grads = launch.backward(ops, dout, (dout.stride(0), 0, dout.stride(2), dout.stride(1)), False, None, entry,
                            dsum, buffers)
    dB, dC = grads.dB.view(B.shape), grads.dC.view(C.shape)
    return (grads.du.to(u.dtype), grads.ddelta.to(delta.dtype), grads.dA[0].to(A_dtype), dB.to(B.dtype),
            dC.to(C.dtype), grads.dD[0].to(D.dtype) if D is not None else None,
            grads.dz.to(z.dtype) if z is not None else None,
            grads.dbias[0].to(bias.dtype) if bias is not None else None)


class _SelectiveScanTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, for_backward):
        prepared = _prepare(u, delta, A, B, C, D, z, delta_bias)
        tiles = current_tiles()
        out, final, entry, dsum = _forward(prepared, delta_softplus, for_backward, tiles)
        ctx.save_for_backward(*prepared, entry, dsum)
        ctx.delta_softplus, ctx.tiles, ctx.A_dtype = delta_softplus, tiles, A.dtype
        ctx.mark_non_differentiable(final)
        return out, final

    @staticmethod
    def backward(ctx, dout, _dlast):
        *prepared, entry, dsum = ctx.saved_tensors
        return (*_backward(prepared, entry, dsum, dout, ctx.delta_softplus, ctx.tiles, ctx.A_dtype), None, None)


# The custom ops (torch.compile).  ``tiles`` is TileConfig.key: the backward must run with the forward's tiles.

@torch.library.custom_op("scan2d::selective_scan_fwd", mutates_args=())
def _forward_op(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                D: Optional[torch.Tensor], z: Optional[torch.Tensor], delta_bias: Optional[torch.Tensor],
                delta_softplus: bool, for_backward: bool, tiles: str
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(out, last state, entry states, delta sums) as ``_forward`` gives them; without ``for_backward`` the last two
    hold no chunks (the kernels may have used their memory)."""
    out, final, entry, dsum = _forward(_prepare(u, delta, A, B, C, D, z, delta_bias), delta_softplus, for_backward,
                                       TileConfig.from_key(tiles))
    expected = _forward_shapes(u, A, for_backward, tiles)
    if not for_backward:
        entry, dsum = entry.new_empty(expected[2]), dsum.new_empty(expected[3])
    if (tuple(entry.shape), tuple(dsum.shape)) != expected[2:]:  # the fake below would have lied to the compiler
        raise RuntimeError(f"internal error: chunk states {tuple(entry.shape)}, expected {expected[2]}")
    return out, final, entry, dsum


def _forward_shapes(u, A, for_backward: bool, tiles: str) -> tuple:
    """Shapes of ``_forward_op``'s outputs: a training forward keeps one state per tile of block_t steps."""
    batch, dim, length = u.shape
    n_state = A.shape[1]
    chunks = operands.cdiv(length, TileConfig.from_key(tiles).block_t) if for_backward else 0
    return (batch, dim, length), (batch, dim, n_state), (batch, chunks, dim, n_state), (batch, chunks, dim)


@_forward_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, delta_softplus, for_backward, tiles):
    out, final, entry, dsum = _forward_shapes(u, A, for_backward, tiles)
    f32 = torch.float32
    return u.new_empty(out), u.new_empty(final, dtype=f32), u.new_empty(entry, dtype=f32), u.new_empty(dsum, dtype=f32)


@torch.library.custom_op("scan2d::selective_scan_bwd", mutates_args=())
def _backward_op(dout: torch.Tensor, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                 C: torch.Tensor, D: Optional[torch.Tensor], z: Optional[torch.Tensor],
                 delta_bias: Optional[torch.Tensor], entry: torch.Tensor, dsum: torch.Tensor, delta_softplus: bool,
                 tiles: str) -> list[torch.Tensor]:
    """Gradients of (u, delta, A, B, C, D, z, delta_bias), contiguous, empty for absent inputs."""
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    grads = _backward(_prepare(*inputs), entry, dsum, dout, delta_softplus, TileConfig.from_key(tiles), A.dtype)
    return [g.contiguous() if g is not None else u.new_empty(0) for g in grads]


@_backward_op.register_fake
def _(dout, u, delta, A, B, C, D, z, delta_bias, entry, dsum, delta_softplus, tiles):
    return [t.new_empty(t.shape) if t is not None else u.new_empty(0) for t in (u, delta, A, B, C, D, z, delta_bias)]


def _setup_context(ctx, inputs, output):
    u, delta, A, B, C, D, z, delta_bias, delta_softplus, _, tiles = inputs
    _, final, entry, dsum = output
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, entry, dsum)
    ctx.delta_softplus, ctx.tiles = delta_softplus, tiles
    ctx.mark_non_differentiable(final, entry, dsum)


def _backward_of_op(ctx, dout, _dfinal, _dentry, _ddsum):
    *inputs, entry, dsum = ctx.saved_tensors
    grads = _backward_op(dout, *inputs, entry, dsum, ctx.delta_softplus, ctx.tiles)
    return (*(g if t is not None else None for g, t in zip(grads, inputs)), None, None, None)


_forward_op.register_autograd(_backward_of_op, setup_context=_setup_context)


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          return_last_state=False):
    """Triton path of :func:`scan2d.selective_scan` (arguments already validated)."""
    for_backward = autograd_records(u, delta, A, B, C, D, z, delta_bias)
    if torch.compiler.is_compiling():
        out, last, _, _ = _forward_op(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus), for_backward,
                                      current_tiles().key)
    else:
        out, last = _SelectiveScanTriton.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, for_backward)
    return (out, last) if return_last_state else out
