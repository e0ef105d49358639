"""The ops' real host code with Triton's kernel launches replaced: for tools that need no GPU to run.

``compile_check`` compiles each launch's specialization for a GPU architecture instead of launching it;
``bench/host_overhead.py`` binds each launch's arguments as Triton's launcher does and times the host code around
it.  Both need what Triton's launcher does first: bind the call's arguments to the kernel's signature and specialize
them for a target (``binder``).

Uses Triton internals (``JITFunction.run``, ``create_function_from_signature``) that are stable across triton 3.6-3.7.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable, Iterator


@contextlib.contextmanager
def instead_of_launch(run: Callable) -> Iterator[None]:
    """Within the block, every ``kernel[grid](*args, **kwargs)`` calls ``run(kernel, args, kwargs, grid)`` (kernel:
    the ``JITFunction``; grid: a tuple, or a callable of the bound arguments) instead of launching, and returns what
    it returns."""
    from triton.runtime.jit import JITFunction

    original = JITFunction.run

    def replaced(self, *args, grid, warmup, **kwargs):
        return run(self, args, kwargs, grid)

    JITFunction.run = replaced
    try:
        yield
    finally:
        JITFunction.run = original


@functools.lru_cache(maxsize=None)
def backend(arch: int):
    """Triton's compiler backend for CUDA compute capability ``arch`` x10 (90: H100/H200)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend

    return make_backend(GPUTarget("cuda", arch, 32))


def binder(kernel, arch: int) -> Callable:
    """Triton's generated argument binder of ``kernel`` (a ``JITFunction``) for CUDA compute capability ``arch`` x10:
    ``binder(*args, **kwargs)`` returns (bound arguments, their specialization, compile options), as the launcher
    computes them before every launch.  ``kwargs`` must carry the options the launcher adds (``debug``, and for
    Triton 3.7 ``instrumentation_mode``)."""
    return _binder(kernel, arch)


@functools.lru_cache(maxsize=None)
def _binder(kernel, arch: int) -> Callable:
    from triton.runtime.jit import create_function_from_signature

    return create_function_from_signature(kernel.signature, kernel.params, backend(arch))
