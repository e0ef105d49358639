"""A stand-in for a Triton kernel that records how the host launched it (which kernel ran where)."""


class LaunchSpy:
    """Stands in for a Triton kernel: records each launch's name, STATE_LOOP, BLOCK_D, grid and (DX_COPIES,
    DU_OWNED, LANE_SUMS), then launches the real one."""

    def __init__(self, kernel, seen):
        self.kernel, self.seen = kernel, seen

    def __getitem__(self, grid):
        def launch(*args, **meta):
            self.seen.append((self.kernel.fn.__name__, meta.get("STATE_LOOP", False), meta["BLOCK_D"], tuple(grid),
                              tuple(meta.get(key, False) for key in ("DX_COPIES", "DU_OWNED", "LANE_SUMS"))))
            return self.kernel[grid](*args, **meta)
        return launch
