"""``directional_scan``: one call for a whole 2D scan layer (permute + selective scan + merge).

    reference.py    the PyTorch path (gathers, scans, scatters back)
    triton_op.py    fused Triton kernels: scan positions computed in-kernel, directions summed in-kernel; their
                    autograd wrappers and custom ops (torch.compile)
    gate.py         the per-direction channel gate spec
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from .._backend import resolve_backend, triton_unsupported
from .._validate import FLOAT_DTYPES, check_positive_int, check_same_device, check_shape, check_tensor
from ..directions import ScanDirection
from .gate import ChannelGate
from .reference import directional_scan_torch

__all__ = ["directional_scan", "directional_scan_torch", "ChannelGate", "check_directional_args"]


def check_directional_args(u, xdbl, dt_weight, dt_bias, A, D, directions, height, width, u_low, xdbl_low):
    check_positive_int("height", height)
    check_positive_int("width", width)
    if not directions or not all(isinstance(d, ScanDirection) for d in directions):
        raise ValueError(f"directions must be a non-empty sequence of ScanDirection, got {directions!r}.")
    modes = {d.cross_scale for d in directions}
    if len(modes) > 1:
        raise ValueError(
            f"directions mix cross-scale modes {sorted(map(str, modes))}; one call scans sequences of one length, "
            "so use all plain or all cross-scale directions."
        )
    K = len(directions)
    check_tensor("u", u, (3,), "(batch, height * width, dim)", FLOAT_DTYPES)
    batch, length, dim = u.shape
    if length != height * width:
        raise ValueError(
            f"u has {length} tokens (shape {tuple(u.shape)}) but height * width = {height} * {width} = "
            f"{height * width}; pass tokens in raster order, channels last."
        )
    check_tensor("dt_weight", dt_weight, (3,), "(K, dim, rank)", FLOAT_DTYPES)
    rank = dt_weight.shape[-1]
    check_shape("dt_weight", dt_weight, (K, dim, rank), "(K, dim, rank)")
    check_tensor("A", A, (3,), "(K, dim, N)", FLOAT_DTYPES)
    n_state = A.shape[-1]
    check_shape("A", A, (K, dim, n_state), "(K, dim, N)")
    check_tensor("dt_bias", dt_bias, (2,), "(K, dim)", FLOAT_DTYPES)
    check_shape("dt_bias", dt_bias, (K, dim), "(K, dim)")
    check_tensor("D", D, (2,), "(K, dim)", FLOAT_DTYPES)
    check_shape("D", D, (K, dim), "(K, dim)")
    check_tensor("xdbl", xdbl, (4,), "(batch, height * width, K, rank + 2N)", FLOAT_DTYPES)
    check_shape("xdbl", xdbl, (batch, length, K, rank + 2 * n_state), "(batch, height * width, K, rank + 2N)")
    if directions[0].cross_scale is not None:
        if u_low is None or xdbl_low is None:
            raise ValueError(
                f"cross-scale directions ({directions[0].cross_scale}) need u_low and xdbl_low, the half-resolution "
                "tokens and their projections."
            )
        low = ((height + 1) // 2) * ((width + 1) // 2)
        check_tensor("u_low", u_low, (3,), "(batch, ceil(height/2) * ceil(width/2), dim)", FLOAT_DTYPES)
        check_shape("u_low", u_low, (batch, low, dim), "(batch, ceil(height/2) * ceil(width/2), dim)")
        check_tensor("xdbl_low", xdbl_low, (4,), "(batch, low tokens, K, rank + 2N)", FLOAT_DTYPES)
        check_shape("xdbl_low", xdbl_low, (batch, low, K, rank + 2 * n_state), "(batch, low tokens, K, rank + 2N)")
    elif u_low is not None or xdbl_low is not None:
        raise ValueError("u_low / xdbl_low were given but no direction is cross-scale; drop them or set cross_scale.")
    check_same_device("u", u, xdbl=xdbl, dt_weight=dt_weight, dt_bias=dt_bias, A=A, D=D, u_low=u_low,
                      xdbl_low=xdbl_low)


def directional_scan(
    u: torch.Tensor,
    xdbl: torch.Tensor,
    dt_weight: torch.Tensor,
    dt_bias: torch.Tensor,
    A: torch.Tensor,
    D: torch.Tensor,
    directions: Sequence[ScanDirection],
    height: int,
    width: int,
    *,
    u_low: Optional[torch.Tensor] = None,
    xdbl_low: Optional[torch.Tensor] = None,
    gate: Optional[ChannelGate] = None,
    direction_weights: Optional[torch.Tensor] = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Scan a 2D map in K directions and return the (gated) sum of the directions in raster order.

    Channels-last throughout: a token's channels are contiguous, so a kernel reading tokens in any scan order
    still makes coalesced loads, and the result feeds LayerNorm and Linear layers without a transpose.

    Args:
        u: (batch, height * width, dim) scanned features, raster order.
        xdbl: (batch, height * width, K, rank + 2N) per-pixel x_proj outputs ``[dt_low_rank | B | C]`` for every
            direction (x_proj is per-token, so it is computed once in raster order).
        dt_weight: (K, dim, rank) dt projection.  dt_bias: (K, dim), softplus is always applied.
        A: (K, dim, N) state matrix (``-exp(A_log)``).  D: (K, dim) skip.
        directions: K :class:`ScanDirection`, all plain or all cross-scale.
        u_low, xdbl_low: for cross-scale directions, the half-resolution tokens (batch, ceil(h/2)*ceil(w/2), dim)
            and their projections (batch, ceil(h/2)*ceil(w/2), K, rank + 2N); they are scanned, never output.
        gate: optional :class:`ChannelGate` applied to each direction before the sum.
        direction_weights: optional (batch, K, dim) per-direction channel weights of the sum
            (``out = sum_k direction_weights[:, k] * y_k``), multiplied with the gate's when both are given.
        backend: "auto" | "torch" | "triton".
    Returns:
        (batch, height * width, dim) in u's dtype.
    """
    check_directional_args(u, xdbl, dt_weight, dt_bias, A, D, directions, height, width, u_low, xdbl_low)
    if direction_weights is not None:
        check_tensor("direction_weights", direction_weights, (3,), "(batch, K, dim)", FLOAT_DTYPES)
        check_shape("direction_weights", direction_weights, (u.shape[0], len(directions), u.shape[2]),
                    "(batch, K, dim)")
    if resolve_backend(backend, u, triton_unsupported(A.shape[-1], u.dtype)) == "triton":
        from .triton_op import directional_scan_triton

        return directional_scan_triton(u, xdbl, dt_weight, dt_bias, A, D, tuple(directions), height, width,
                                       u_low, xdbl_low, gate, direction_weights)
    return directional_scan_torch(u, xdbl, dt_weight, dt_bias, A, D, directions, height, width, u_low, xdbl_low,
                                  gate, direction_weights)
