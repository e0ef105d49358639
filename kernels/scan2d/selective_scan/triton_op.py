"""Autograd wrapper of the Triton kernels for the drop-in ``selective_scan`` (mamba-ssm's ``selective_scan_fn``)."""

from __future__ import annotations

import torch

from .._backend import autograd_records
from ..directions import ScanDirection
from ..triton import launch, operands
from ..triton.tiles import current_tiles


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


class _SelectiveScanTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, for_backward):
        tensors = [t.contiguous() if t is not None else None for t in (u, delta, A, B, C, D, z, delta_bias)]
        u_, delta_, A_, B_, C_, D_, z_, bias_ = tensors
        A_ = A_.float()
        B_, C_ = _states_adjacent(B_), _states_adjacent(C_)
        ops = _operands(u_, delta_, A_, B_, C_, D_, z_, bias_, delta_softplus, for_backward=for_backward)
        out = torch.empty_like(u_)
        entry, dsum, final = launch.forward(ops, out, (out.stride(0), 0, out.stride(2), out.stride(1)), False, None)
        ctx.save_for_backward(u_, delta_, A_, B_, C_, D_, z_, bias_, entry, dsum)
        ctx.delta_softplus = delta_softplus
        ctx.tiles = ops.tiles
        ctx.A_dtype = A.dtype
        ctx.mark_non_differentiable(final)
        return out, final.view(u.shape[0], u.shape[1], -1)

    @staticmethod
    def backward(ctx, dout, _dlast):
        u, delta, A, B, C, D, z, bias, entry, dsum = ctx.saved_tensors
        ops = _operands(u, delta, A, B, C, D, z, bias, ctx.delta_softplus, ctx.tiles)
        dout = dout.contiguous()
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
        return (grads.du.to(u.dtype), grads.ddelta.to(delta.dtype), grads.dA[0].to(ctx.A_dtype), dB.to(B.dtype),
                dC.to(C.dtype), grads.dD[0].to(D.dtype) if D is not None else None,
                grads.dz.to(z.dtype) if z is not None else None,
                grads.dbias[0].to(bias.dtype) if bias is not None else None, None, None)


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          return_last_state=False):
    """Triton path of :func:`scan2d.selective_scan` (arguments already validated)."""
    out, last = _SelectiveScanTriton.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                           autograd_records(u, delta, A, B, C, D, z, delta_bias))
    return (out, last) if return_last_state else out
