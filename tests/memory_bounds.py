"""Every memory access of an interpreted kernel checked against the tensors of its launch.

Triton's interpreter reads and writes through raw host addresses: an unmasked load past a tensor's end returns
whatever lies there, and CI passes, while on a GPU the same load reads another allocation or faults ("illegal
memory access") and costs a lease.  The kernels load without masks on purpose in several places (an invalid step
reads position 0, "always in bounds"; x_proj's columns, B and C rows): this checks that claim on every fuzzed shape.

Installed (``install``), each launch records the byte ranges of the storages its tensor arguments view (tuples of
arguments included); every masked-in element of a load, store or atomic must then lie, whole, inside one of them,
or the launch fails with what was read where.  A storage, not the view: a GPU faults only outside an allocation, and
the kernels read views through strides that stay inside their storage (x_proj's columns, the low-resolution tokens).
"""

import numpy as np
from triton.runtime import interpreter

INIT_ARGS = interpreter.GridExecutor._init_args_hst
LOAD = interpreter.InterpreterBuilder.create_masked_load
STORE = interpreter.InterpreterBuilder.create_masked_store
ATOMIC_RMW = interpreter.InterpreterBuilder.create_atomic_rmw
ATOMIC_CAS = interpreter.InterpreterBuilder.create_atomic_cas

_launch = {"kernel": None, "starts": np.zeros(0, np.uint64), "ends": np.zeros(0, np.uint64), "tensors": []}


def _tensors(names, values, found):
    """(name, its elements' first byte and end, its storage's first byte and end) of each tensor among ``values``,
    tuples walked (their items named name[i])."""
    for name, value in zip(names, values):
        if isinstance(value, (tuple, list)):
            _tensors([f"{name}[{i}]" for i in range(len(value))], value, found)
        elif hasattr(value, "base") and hasattr(value.base, "untyped_storage"):  # a TensorDescriptor
            _tensors([name], [value.base], found)
        elif hasattr(value, "untyped_storage"):
            storage, start = value.untyped_storage(), value.data_ptr()
            found.append((name, start, start + value.numel() * value.element_size(), storage.data_ptr(),
                          storage.data_ptr() + storage.nbytes()))


def init_args_recording_bounds(self, args_dev, kwargs):
    """``GridExecutor._init_args_hst``, which gives the launch's host tensors, and the launch's tensors."""
    args_hst, kwargs_hst = INIT_ARGS(self, args_dev, kwargs)
    found = []
    _tensors(list(self.arg_names[:len(args_hst)]) + list(kwargs_hst), list(args_hst) + list(kwargs_hst.values()),
             found)
    ranges = sorted({(start, end) for *_, start, end in found if end > start})
    _launch["kernel"] = getattr(self.fn, "__name__", str(self.fn))
    _launch["starts"] = np.array([r[0] for r in ranges], dtype=np.uint64)
    _launch["ends"] = np.array([r[1] for r in ranges], dtype=np.uint64)
    _launch["tensors"] = found
    return args_hst, kwargs_hst


def argument_at(address):
    """The name of the running launch's tensor argument whose elements' span holds ``address``, or 'a tensor'."""
    names = [name for name, start, end, *_ in _launch["tensors"] if start <= address < end]
    return " / ".join(names) if names else "a tensor"


def check(what, addresses, mask, itemsize):
    """Raise unless every masked-in address (an array of uint64) and its ``itemsize`` bytes lie in one storage."""
    addresses = np.asarray(addresses, dtype=np.uint64).ravel()
    active = addresses if mask is None else addresses[np.asarray(mask, dtype=bool).ravel()]
    if active.size == 0:
        return
    starts, ends = _launch["starts"], _launch["ends"]
    at = np.searchsorted(starts, active, side="right").astype(np.int64) - 1  # the last storage starting at or before
    inside = at >= 0
    inside[inside] = active[inside] + np.uint64(itemsize) <= ends[at[inside]]
    if inside.all():
        return
    bad = active[~inside]
    first = int(bad[0])
    near = min(((first - int(s), int(s), int(e)) for s, e in zip(starts, ends)), key=lambda x: abs(x[0]),
               default=None)
    where = (f"{near[0]:+d} bytes from the start of the storage at 0x{near[1]:x} of {near[2] - near[1]} bytes"
             if near else "no tensor in the launch")
    raise AssertionError(f"{_launch['kernel']}: {bad.size} of {active.size} masked-in elements of {what} lie "
                         f"outside every tensor of the launch; the first at 0x{first:x}, {where}")


def _itemsize(handle):
    return np.dtype(interpreter._get_np_dtype(handle.get_element_ty())).itemsize


def checked_load(self, ptrs, mask, other, cache_modifier, eviction_policy, is_volatile):
    check("a load", ptrs.data, mask.data, _itemsize(ptrs))
    return LOAD(self, ptrs, mask, other, cache_modifier, eviction_policy, is_volatile)


def checked_store(self, ptrs, value, mask, cache_modifier, eviction_policy):
    check("a store", ptrs.data, mask.data, _itemsize(ptrs))
    return STORE(self, ptrs, value, mask, cache_modifier, eviction_policy)


def checked_atomic_rmw(self, rmwOp, ptr, val, mask, sem, scope):
    check("an atomic", ptr.data, mask.data, _itemsize(ptr))
    return ATOMIC_RMW(self, rmwOp, ptr, val, mask, sem, scope)


def checked_atomic_cas(self, ptr, cmp, val, sem, scope):
    check("an atomic", ptr.data, None, _itemsize(ptr))
    return ATOMIC_CAS(self, ptr, cmp, val, sem, scope)


CHECKS = ((interpreter.GridExecutor, "_init_args_hst", init_args_recording_bounds),
          (interpreter.InterpreterBuilder, "create_masked_load", checked_load),
          (interpreter.InterpreterBuilder, "create_masked_store", checked_store),
          (interpreter.InterpreterBuilder, "create_atomic_rmw", checked_atomic_rmw),
          (interpreter.InterpreterBuilder, "create_atomic_cas", checked_atomic_cas))


_installed = []


def install():
    for owner, name, patched in CHECKS:
        setattr(owner, name, patched)
    _installed.append(True)


def installed():
    """Whether ``install`` ran (other checks may wrap these functions in turn: tests/program_races.py)."""
    return bool(_installed)
