"""The ``train`` and ``data`` values of a run, checked before it starts.

Hydra's YAML has no types or ranges, so a bad value would otherwise surface mid-run as a traceback (``log_every=0``
divides by zero after the first step), or not at all (``train.device=gpu`` trained on the CPU, ``iterations=-5``
trained nothing).  Each check says which value was wrong and what to pass.
"""

from __future__ import annotations

from numbers import Real
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from ..data.degrade import check_codec, pick_quality

DEVICES = ("auto", "cuda", "cpu")


def check_options(cfg: DictConfig) -> None:
    """Raise ValueError naming the first value of ``cfg.train`` or ``cfg.data`` a run cannot use."""
    t, d = cfg.train, cfg.data
    for key in ("iterations", "batch_size", "accumulate", "log_every", "ckpt_every", "keep_last"):
        _check("train", key, t[key], _whole(1), "a whole number, at least 1")
    for key in ("val_every", "val_images"):  # val_every=0: no validation
        _check("train", key, t[key], _whole(0), "a whole number, at least 0")
    _check("train", "seed", t.seed, _whole(0), "a whole number, at least 0")
    for key in ("lr", "gamma"):
        _check("train", key, t[key], lambda v: _real(v) and v > 0, "a number above 0")
    _check("train", "betas", _plain(t.betas),
           lambda v: isinstance(v, list) and len(v) == 2 and all(_real(b) and 0 <= b < 1 for b in v),
           "two numbers in [0, 1), e.g. [0.9, 0.99]")
    _check("train", "milestones", _plain(t.milestones), lambda v: isinstance(v, list) and all(_whole(1)(m) for m in v),
           "a list of iterations (whole numbers, at least 1), e.g. [150000, 250000]")
    _check("train", "ema_decay", t.ema_decay, lambda v: _real(v) and 0 <= v <= 1, "a number in [0, 1]")
    _check("train", "grad_clip", t.grad_clip, lambda v: v is None or (_real(v) and v > 0),
           "null (no clipping) or a norm above 0")
    _check("train", "val_tile", t.val_tile, lambda v: v is None or _whole(1)(v),
           "null (whole images) or a tile side of at least 1")
    for key in ("bf16", "deterministic", "resume"):
        _check("train", key, t[key], lambda v: isinstance(v, bool), "true or false")
    _check("train", "device", t.device, lambda v: v in DEVICES, " or ".join(DEVICES))
    _check("train", "init_weights", t.get("init_weights"), lambda v: v is None or isinstance(v, str),
           "null (a fresh network) or the path of the weights to start from")
    _check("data", "scale", d.scale, lambda v: v == cfg.model.upscale,
           f"the model's upscale factor (model.upscale={cfg.model.upscale})")
    _check("data", "patch_size", d.patch_size, _whole(1), "a whole number of LR pixels, at least 1")
    _check("data", "num_workers", d.num_workers, _whole(0), "a whole number, at least 0")
    _check("data", "val_limit", d.get("val_limit"), lambda v: v is None or _whole(1)(v),
           "null (every validation image) or at least 1")
    for split in ("train", "val"):  # LR images pair with an HR folder's by stem: without one they were ignored
        _check("data", f"{split}_lr", d.get(f"{split}_lr"), lambda v: v is None or d.get(f"{split}_hr") is not None,
               f"null while data.{split}_hr is null (the embedded photographs, degraded on the fly); set "
               f"data.{split}_hr to the HR folder these LR images pair with")
    try:
        check_codec(_plain(d.get("codec")), lists=True)
    except ValueError as err:
        raise ValueError(f"data.{err} (override: data.codec=VALUE).") from None
    try:
        pick_quality(_plain(d.quality))
    except (TypeError, ValueError):
        _check("data", "quality", _plain(d.quality), lambda v: False,
               "a quality from 1 to 100, or a list of them, e.g. [10, 20, 30]")
    for key in ("quality", "codec"):  # drawn per image where LR images are made; given ones would be read instead
        value = _plain(d.get(key))
        _check("data", "train_lr", d.get("train_lr"),
               lambda v: v is None or not (isinstance(value, list) and len(value) > 1),
               f"null while data.{key}={value} is drawn per image, which needs the LR images made on the fly")


def _check(section: str, key: str, value: Any, ok: Callable[[Any], bool], expected: str) -> None:
    if not ok(value):
        raise ValueError(f"{section}.{key}={value!r}: expected {expected} (override: {section}.{key}=VALUE).")


def _whole(low: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def _real(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


def _plain(value: Any) -> Any:
    """A list node as a Python list (OmegaConf's ListConfig is not a list)."""
    return OmegaConf.to_object(value) if OmegaConf.is_config(value) else value
