"""Atomic writes (checkpoints, weights, restored images, tables) leave whole files with the permissions that a plain
``open(path, "w")`` would give them, and nothing else behind."""

import contextlib
import os
import stat

import numpy as np
import pytest

from mambacsr.data.io import write_image
from mambacsr.utils.atomic import atomic_path


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002], ids=oct)
def test_a_new_file_gets_the_umasks_permissions(tmp_path, mask):
    with umask(mask):
        with atomic_path(tmp_path / "atomic.bin") as tmp:
            tmp.write_bytes(b"weights")
        with open(tmp_path / "plain.bin", "w"):
            pass
        write_image(tmp_path / "restored.png", np.zeros((4, 5, 3), np.uint8))
    assert mode(tmp_path / "atomic.bin") == mode(tmp_path / "plain.bin") == 0o666 & ~mask
    assert mode(tmp_path / "restored.png") == 0o666 & ~mask
    assert (tmp_path / "atomic.bin").read_bytes() == b"weights"


@pytest.mark.parametrize("kept", [0o600, 0o640, 0o664], ids=oct)
def test_a_replaced_file_keeps_its_permissions(tmp_path, kept):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old")
    target.chmod(kept)
    with umask(0o022):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and mode(target) == kept


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "iter_00000100.pt"
    target.write_bytes(b"good checkpoint")
    with pytest.raises(OSError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise OSError("disk full")
    assert target.read_bytes() == b"good checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
