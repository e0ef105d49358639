"""Two programs of one launch touching the same element, one of them with a plain store, fail the launch.

On a GPU a launch's programs run concurrently: a plain store to an element that another program of the same launch
also stores, or loads, is a race (which value lands, or whether the load sees it, depends on timing).  The
interpreter runs the programs one after another, so such a kernel gives one fixed answer and CI passes it.  Here
each launch records which program stored and loaded which addresses (masked-in elements; atomics are the kernels'
way to share an element and are left out), and at its end any address that one program stored and another stored
or loaded fails it, naming the kernel and the programs.
"""

import numpy as np
from memory_bounds import argument_at
from triton.runtime import interpreter

_accesses = {"store": [], "load": []}  # per kind: (addresses, linear program id) arrays of the running launch


def _program(builder):
    x, y, z = builder.grid_idx
    _, ny, nz = builder.grid_dim
    return (x * ny + y) * nz + z


def _record(kind, builder, ptrs, mask):
    addresses = np.asarray(ptrs.data, dtype=np.uint64).ravel()
    if mask is not None:
        addresses = addresses[np.asarray(mask.data, dtype=bool).ravel()]
    if addresses.size:
        _accesses[kind].append((np.unique(addresses), _program(builder)))


def _gathered(kind):
    parts = _accesses[kind]
    if not parts:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    return (np.concatenate([a for a, _ in parts]),
            np.concatenate([np.full(a.size, p, dtype=np.int64) for a, p in parts]))


def races(kernel):
    """The running launch's first conflict as a message, or None."""
    stored, by = _gathered("store")
    loaded, read_by = _gathered("load")
    if stored.size == 0:
        return None
    # One program per stored address, or a store-store race.
    pairs = np.unique(np.stack([stored, by.astype(np.uint64)], axis=1), axis=0)
    addresses, first, counts = np.unique(pairs[:, 0], return_index=True, return_counts=True)
    if (counts > 1).any():
        at = addresses[counts > 1][0]
        programs = sorted(int(p) for p in pairs[pairs[:, 0] == at][:, 1])
        return (f"{kernel}: programs {programs[:4]} of one launch all store to the element at 0x{int(at):x} "
                f"of {argument_at(int(at))} ({int((counts > 1).sum())} such elements): a race on a GPU")
    owner = pairs[first, 1].astype(np.int64)  # the one program that stores each address, addresses sorted
    where = np.searchsorted(addresses, loaded)
    hit = where < addresses.size
    hit[hit] = addresses[where[hit]] == loaded[hit]
    foreign = hit.copy()
    foreign[hit] = owner[where[hit]] != read_by[hit]
    if foreign.any():
        i = int(np.flatnonzero(foreign)[0])
        return (f"{kernel}: program {int(read_by[i])} loads the element at 0x{int(loaded[i]):x} of "
                f"{argument_at(int(loaded[i]))}, which program {int(owner[where[i]])} of the same launch stores "
                f"({int(foreign.sum())} such loads): a race on a GPU")
    return None


def install():
    """After ``memory_bounds.install``, whose record of the launch's tensors names the argument of a conflict."""
    load, store = interpreter.InterpreterBuilder.create_masked_load, interpreter.InterpreterBuilder.create_masked_store
    launch = interpreter.GridExecutor.__call__

    def recording_load(self, ptrs, mask, other, *args):
        _record("load", self, ptrs, mask)
        return load(self, ptrs, mask, other, *args)

    def recording_store(self, ptrs, value, mask, *args):
        _record("store", self, ptrs, mask)
        return store(self, ptrs, value, mask, *args)

    def launch_checking_races(self, *args, **kwargs):
        try:
            launch(self, *args, **kwargs)
            found = races(getattr(self.fn, "__name__", str(self.fn)))
            if found:
                raise AssertionError(found)
        finally:  # a launch that raised leaves nothing for the next
            _accesses["store"].clear()
            _accesses["load"].clear()

    interpreter.InterpreterBuilder.create_masked_load = recording_load
    interpreter.InterpreterBuilder.create_masked_store = recording_store
    interpreter.GridExecutor.__call__ = launch_checking_races
    install.patched = (recording_load, recording_store, launch_checking_races)


def installed():
    patched = getattr(install, "patched", None)
    return patched is not None and (interpreter.InterpreterBuilder.create_masked_load,
                                    interpreter.InterpreterBuilder.create_masked_store,
                                    interpreter.GridExecutor.__call__) == patched
