"""Argument checks shared by the public ops: every failure names the argument, its value and what is expected."""

from __future__ import annotations

from typing import Optional, Sequence

import torch


def check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def check_window(name: str, window) -> None:
    if window is None:
        return
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        raise ValueError(
            f"{name} must be a positive integer or None (one global scan), got {window!r}."
        )


def check_tensor(
    name: str,
    tensor,
    ndim: Sequence[int],
    layout: str,
    dtypes: Optional[Sequence[torch.dtype]] = None,
) -> None:
    """Check that ``tensor`` is a tensor of one of the ranks in ``ndim`` (described by ``layout``)."""
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {layout}, got {type(tensor).__name__}.")
    if tensor.dim() not in ndim:
        raise ValueError(
            f"{name} must have shape {layout} ({' or '.join(map(str, ndim))} dimensions), "
            f"got shape {tuple(tensor.shape)}."
        )
    if dtypes is not None and tensor.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise ValueError(f"{name} must have dtype in ({names}), got {str(tensor.dtype).replace('torch.', '')}.")


def check_shape(name: str, tensor: torch.Tensor, expected: Sequence[int], layout: str) -> None:
    if tuple(tensor.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {layout} = {tuple(expected)}, got {tuple(tensor.shape)}.")


def check_same_device(reference_name: str, reference: torch.Tensor, **others) -> None:
    for name, tensor in others.items():
        if tensor is not None and tensor.device != reference.device:
            raise ValueError(
                f"{name} is on {tensor.device} but {reference_name} is on {reference.device}; "
                "move all inputs to one device."
            )


FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
