"""Choosing between the PyTorch path and the Triton kernels."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import warnings
from typing import Optional

import torch

BACKENDS = ("auto", "torch", "triton")


def triton_interpreted() -> bool:
    """True when Triton runs kernels on the CPU (``TRITON_INTERPRET=1``, set before Triton is imported)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


# Found without importing it, once: torch.compile traces ``resolve_backend``, and a cached import would warn there.
_TRITON_INSTALLED = importlib.util.find_spec("triton") is not None


def triton_available() -> bool:
    """Whether the triton package is installed."""
    return _TRITON_INSTALLED


def autograd_records(*tensors) -> bool:
    """True when autograd records an op on these inputs: grad mode is on and one of them requires grad.  Only then
    do the Triton forwards keep what a backward needs (one state per short chunk); ``ctx.needs_input_grad`` alone
    is True under ``torch.no_grad()`` as well, which made inference run with the training chunks."""
    return torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)


def triton_unsupported(n_state: int, dtype: torch.dtype) -> Optional[str]:
    """Why the Triton kernels cannot run a scan with ``n_state`` states on ``dtype`` inputs, or None."""
    if n_state & (n_state - 1):
        return f"the Triton scan needs a power-of-two state size N, got N={n_state}"
    if dtype == torch.float64:
        return "the Triton scan computes in float32 and takes float32, bfloat16 or float16 inputs, not float64"
    return None


def resolve_backend(backend: str, tensor: torch.Tensor, unsupported: Optional[str] = None) -> str:
    """Map ``backend`` ("auto" | "torch" | "triton") to the path that runs for ``tensor``.

    "auto" takes the Triton kernels for CUDA tensors and the PyTorch path everywhere else, so the same model runs
    on a laptop, in CI and on a GPU without a config change.  ``unsupported`` (``triton_unsupported``'s reason):
    "auto" then takes the PyTorch path with a warning, and "triton" refuses.  An empty ``tensor`` (a batch, channel
    count or length of 0) has nothing to launch: the PyTorch path gives its empty output, zero last state and zero
    gradients on any device.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
    if backend == "auto":
        if not (tensor.is_cuda and triton_available()):
            return "torch"
        if unsupported:
            warnings.warn(f"backend='auto' runs the PyTorch path: {unsupported}.", stacklevel=3)
            return "torch"
    elif backend == "triton":
        if unsupported:
            raise ValueError(f"backend='triton': {unsupported}; use backend='torch' (or 'auto', which falls back to "
                             "it).")
        if not triton_available():
            raise RuntimeError("backend='triton' needs the triton package; install it or use backend='torch'.")
        if not tensor.is_cuda and not triton_interpreted():
            raise ValueError(
                f"backend='triton' needs CUDA tensors (got {tensor.device}); move the inputs to a GPU, use "
                "backend='torch', or set TRITON_INTERPRET=1 before importing triton to run the kernels on the CPU."
            )
    else:
        return "torch"
    return "triton" if tensor.numel() else "torch"


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool = True):
    """``torch.use_deterministic_algorithms(enabled)`` inside the block, the previous setting after it.  The Triton
    scan reads the setting when an op runs (``operands.ScanOperands.deterministic``)."""
    saved = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(enabled, warn_only=saved[1])
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
