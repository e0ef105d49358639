"""``selective_scan``: a drop-in for mamba-ssm's ``selective_scan_fn`` with a PyTorch path and Triton kernels.

Layout (the pattern of flash-linear-attention and mamba-ssm's ``ops/triton``):
    reference.py   the plain step-by-step definition (tests' ground truth)
    chunked.py     the PyTorch path (CPU, and any device without Triton)
    triton_op.py   the Triton kernels' autograd wrapper and custom ops (torch.compile)
"""

from __future__ import annotations

from .._backend import resolve_backend, triton_unsupported
from .._validate import FLOAT_DTYPES, check_same_device, check_shape, check_tensor
from .chunked import selective_scan_chunked
from .reference import selective_scan_ref

__all__ = ["selective_scan", "selective_scan_ref", "selective_scan_chunked", "check_selective_scan_args"]


def check_selective_scan_args(u, delta, A, B, C, D=None, z=None, delta_bias=None) -> None:
    """Raise ValueError naming the first argument whose rank, shape, dtype or device is wrong."""
    check_tensor("u", u, (3,), "(batch, dim, L)", FLOAT_DTYPES)
    batch, dim, length = u.shape
    check_tensor("delta", delta, (3,), "(batch, dim, L)", FLOAT_DTYPES)
    check_shape("delta", delta, u.shape, "(batch, dim, L) like u")
    check_tensor("A", A, (2,), "(dim, N)", FLOAT_DTYPES)
    if A.shape[0] != dim:
        raise ValueError(f"A must have shape (dim, N) with dim={dim} (from u), got {tuple(A.shape)}.")
    n_state = A.shape[1]
    for name, BC in (("B", B), ("C", C)):
        check_tensor(name, BC, (3, 4), "(batch, N, L) or (batch, G, N, L)", FLOAT_DTYPES)
        if BC.dim() == 3:
            check_shape(name, BC, (batch, n_state, length), "(batch, N, L)")
        else:
            groups = BC.shape[1]
            if groups == 0 or dim % groups != 0:
                raise ValueError(
                    f"{name} has {groups} groups (shape {tuple(BC.shape)}) but dim={dim} is not a multiple of it; "
                    "use a group count that divides dim."
                )
            check_shape(name, BC, (batch, groups, n_state, length), "(batch, G, N, L)")
    if B.dim() != C.dim() or (B.dim() == 4 and B.shape[1] != C.shape[1]):
        raise ValueError(f"B and C must have the same grouping, got B {tuple(B.shape)} and C {tuple(C.shape)}.")
    if D is not None:
        check_tensor("D", D, (1,), "(dim,)", FLOAT_DTYPES)
        check_shape("D", D, (dim,), "(dim,)")
    if delta_bias is not None:
        check_tensor("delta_bias", delta_bias, (1,), "(dim,)", FLOAT_DTYPES)
        check_shape("delta_bias", delta_bias, (dim,), "(dim,)")
    if z is not None:
        check_tensor("z", z, (3,), "(batch, dim, L)", FLOAT_DTYPES)
        check_shape("z", z, u.shape, "(batch, dim, L) like u")
    check_same_device("u", u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias)


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, *, backend: str = "auto"):
    """Selective scan with mamba-ssm's ``selective_scan_fn`` argument order, shapes and semantics.

    Args:
        u: (batch, dim, L) input.
        delta: (batch, dim, L) step sizes before ``delta_bias`` and softplus.
        A: (dim, N) state matrix (real, usually ``-exp(A_log)``).
        B, C: (batch, N, L), or (batch, G, N, L) where each of the G groups serves ``dim // G`` channels.
        D: optional (dim,) skip.  z: optional (batch, dim, L) gate, the output is multiplied by ``silu(z)``.
        delta_bias: optional (dim,) added to delta.  delta_softplus: apply softplus to delta.
        return_last_state: also return the final state (batch, dim, N) in float32.
        backend: "auto" (Triton on CUDA, PyTorch elsewhere), "torch" or "triton".
    Returns:
        out (batch, dim, L) in ``u.dtype`` (and the last state if asked).  The state is kept in float32.
    """
    check_selective_scan_args(u, delta, A, B, C, D, z, delta_bias)
    if resolve_backend(backend, u, triton_unsupported(A.shape[1], u.dtype)) == "triton":
        from .triton_op import selective_scan_triton

        return selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    return selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
