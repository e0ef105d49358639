"""A stand-in for a Triton kernel that records how the host launched it (which kernel ran where)."""

# The kernels of the 2D layer that run the state loops (and take its per-layer compile-time choices).
STATE_LOOP_KERNELS = ("chunk_end_state_kernel", "forward_output_kernel", "chunk_adjoint_kernel",
                      "backward_grads_kernel")


def _default_record(name, grid, meta):
    """(name, STATE_LOOP, BLOCK_D, grid, (DX_COPIES, DU_OWNED, LANE_SUMS))."""
    return (name, meta.get("STATE_LOOP", False), meta["BLOCK_D"], grid,
            tuple(meta.get(key, False) for key in ("DX_COPIES", "DU_OWNED", "LANE_SUMS")))


class LaunchSpy:
    """Stands in for a Triton kernel: appends ``record(name, grid, meta)`` of each launch to ``seen`` (by default the
    kernel's name, STATE_LOOP, BLOCK_D, grid and (DX_COPIES, DU_OWNED, LANE_SUMS)), then launches the real one.
    ``with_args``: ``record(name, grid, meta, args)``, with the launch's positional arguments."""

    def __init__(self, kernel, seen, record=_default_record, with_args=False):
        self.kernel, self.seen, self.record, self.with_args = kernel, seen, record, with_args

    def __getitem__(self, grid):
        def launch(*args, **meta):
            extra = (args,) if self.with_args else ()
            self.seen.append(self.record(self.kernel.fn.__name__, tuple(grid), meta, *extra))
            return self.kernel[grid](*args, **meta)
        return launch


def spy_on_launches(monkeypatch, names, record=_default_record, with_args=False) -> list:
    """Puts a :class:`LaunchSpy` in place of each of the kernels ``names`` (for the test's duration) and returns the
    list their launches' records go to."""
    from scan2d.triton import (
        backward_kernels, chunk_carry, forward_kernels, one_pass, one_pass_gluon, one_pass_gluon_backward,
        one_pass_lanes, one_pass_lanes_backward,
    )

    seen = []
    for name in names:
        # The launcher reads each kernel from its module at every launch.
        module = next(m for m in (forward_kernels, chunk_carry, backward_kernels, one_pass, one_pass_lanes,
                                  one_pass_gluon, one_pass_lanes_backward, one_pass_gluon_backward)
                      if hasattr(m, name))
        monkeypatch.setattr(module, name, LaunchSpy(getattr(module, name), seen, record, with_args))
    return seen
