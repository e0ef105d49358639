"""``torch.empty`` and its kin return NaN-filled tensors in the tests, so that a kernel or host path that reads memory
nobody wrote fails in CI.

On a GPU, PyTorch's caching allocator hands back blocks that earlier tensors used: an "empty" buffer holds old
values, and a kernel that reads one before writing it (adds atomics into it, accumulates across launches, reads a
padding row) computes with them.  On a CPU a fresh allocation is often zeroed pages, so the same bug passes.  Here
every floating-point tensor from ``torch.empty``, ``torch.empty_like`` and ``Tensor.new_empty`` starts as NaN and
every integer one as -1 (an index that is no position), whoever allocates it; code that writes before it reads
cannot tell.
"""

import torch

EMPTY, EMPTY_LIKE, NEW_EMPTY = torch.empty, torch.empty_like, torch.Tensor.new_empty


def _poison(t):
    if t.dtype.is_floating_point or t.dtype.is_complex:
        t.fill_(float("nan"))
    elif t.dtype != torch.bool:
        t.fill_(-1)
    return t


def empty(*args, **kwargs):
    return _poison(EMPTY(*args, **kwargs))


def empty_like(*args, **kwargs):
    return _poison(EMPTY_LIKE(*args, **kwargs))


def new_empty(self, *args, **kwargs):
    return _poison(NEW_EMPTY(self, *args, **kwargs))


def install():
    torch.empty, torch.empty_like, torch.Tensor.new_empty = empty, empty_like, new_empty


def installed():
    return torch.empty is empty and torch.empty_like is empty_like and torch.Tensor.new_empty is new_empty
