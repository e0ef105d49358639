"""The training loop: the paper's recipe (Adam, MultiStepLR, L1, EMA) from Hydra config, exact resume."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import traceback
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from scan2d.triton.tiles import TileConfig, current_tiles, tile_config

from ..checkpoints import load_weights
from ..config import build_model
from ..data.datasets import ImageSource, IterationBatches, TrainPatches, validation_images
from . import distributed
from .checkpoint import checkpoint_path, latest_checkpoint, load_checkpoint, save_checkpoint
from .data_errors import TrainingDataError, error_message
from .interval import Interval, IntervalFigures, duration
from .options import check_options
from .stop_signals import StopSignals, TrainingStopped, ignore_in_data_workers
from .validation import validate


log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    pass


class WeightsNotWritten(RuntimeError):
    """A checkpoint or the exported weights could not be written (a full disk, a read-only folder)."""


def data_sources(data: DictConfig):
    for key in ("train_hr", "train_lr", "val_hr", "val_lr"):
        folder = data.get(key)
        if folder is not None and not Path(folder).is_dir():
            root = f" (data.data_root={data.data_root})" if data.get("data_root") is not None else ""
            raise FileNotFoundError(f"data.{key}={folder} is not a folder{root}: point data.data_root or data.{key} "
                                    "at your data, or make it with python -m mambacsr.prepare (README, \"Data\").")
    if data.train_hr is None:
        train = ImageSource.embedded("train")
    else:
        train = ImageSource.from_folders(data.train_hr, data.get("train_lr"))
    if data.val_hr is None:
        val = ImageSource.embedded("val")
    else:
        val = ImageSource.from_folders(data.val_hr, data.get("val_lr"))
    return train, val


def use_deterministic_algorithms() -> None:
    """``train.deterministic``: repeatable gradients on a GPU.  The scan kernels then sum over channel blocks and
    directions in a fixed order instead of with atomics (a slower backward), the cross-scale branch resizes with
    matmuls (``networks.half_resolution``), cuDNN picks deterministic convolutions and cuBLAS gets the workspace
    setting it needs.  An op without a deterministic CUDA kernel (none in these networks) warns instead of
    stopping the run."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when the first cuBLAS handle is made
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def scan_tile_changes(train: DictConfig) -> dict:
    """``train.scan_tiles`` as ``tile_config`` changes, checked before the run starts: each key a field of
    ``scan2d.triton.tiles.TileConfig``, the result a configuration it accepts (its own checks raise ValueError with
    what to choose)."""
    tiles = train.get("scan_tiles")
    if tiles is not None and not OmegaConf.is_dict(tiles):
        raise ValueError(f"train.scan_tiles = {tiles!r}: give TileConfig fields, e.g. "
                         "+train.scan_tiles.one_pass_lanes_backward=true, or {} for the defaults")
    changes = OmegaConf.to_container(tiles, resolve=True) if tiles is not None else {}
    fields = {f.name for f in dataclasses.fields(TileConfig) if f.init}
    unknown = sorted(set(changes) - fields)
    if unknown:
        raise ValueError(f"train.scan_tiles: {', '.join(unknown)} is not a field of the scan kernels' TileConfig "
                         f"(scan2d/triton/tiles.py); its fields are: {', '.join(sorted(fields))}")
    dataclasses.replace(current_tiles(), **changes)
    return changes


class Trainer:
    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        t = cfg.train
        check_options(cfg)
        self.scan_tiles = scan_tile_changes(t)
        if t.deterministic:
            use_deterministic_algorithms()
        self.dist = distributed.setup(t.device)
        if t.batch_size % self.dist.world_size:
            raise ValueError(f"train.batch_size={t.batch_size} is the total over {self.dist.world_size} processes "
                             "and must divide evenly.")
        self.per_rank_batch = t.batch_size // self.dist.world_size
        if self.per_rank_batch % t.accumulate:
            raise ValueError(f"train.accumulate={t.accumulate} must divide each process's {self.per_rank_batch} "
                             f"images of train.batch_size={t.batch_size} into passes of equal size.")
        torch.manual_seed(t.seed * 1000 + self.dist.rank)
        self.device = self.dist.device
        self.ckpt_dir = self.run_dir / "checkpoints"
        resume_from = latest_checkpoint(self.ckpt_dir)
        if resume_from is not None and not t.resume:
            # Refused before the model and data are built. A fresh run's checkpoints would mix with the earlier
            # run's: pruning by iteration would delete the new ones and keep the old, and a later resume would
            # continue the old run.
            raise ValueError(f"{self.run_dir} holds an earlier run's checkpoints (the latest: {resume_from.name}); "
                             "with train.resume=false start afresh in another run_dir=..., or delete "
                             f"{self.ckpt_dir} first.")
        resume_state = None if resume_from is None else self._checked_checkpoint(resume_from)
        self.model = build_model(cfg)
        if t.get("init_weights") is not None and resume_from is None:
            # A fresh run starts from these weights, and its EMA with them; a resumed run has its own checkpoint.
            load_weights(self.model, t.init_weights)
        self.model.to(self.device)
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(t.ema_decay), use_buffers=True)
        self.net = self.model
        if self.dist.world_size > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=t.lr, betas=tuple(t.betas))
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, list(t.milestones), t.gamma)
        self.iteration = 0
        self._batches = None  # the data loader's iterator while train() runs (_loading)
        train_source, val_source = data_sources(cfg.data)
        d = cfg.data
        quality, codec = (OmegaConf.to_object(v) if OmegaConf.is_config(v) else v for v in (d.quality, d.codec))
        self.dataset = TrainPatches(train_source, d.scale, quality, d.patch_size, d.augment, t.seed, codec)
        # Validation degrades with the first of each list, so that its figures follow one fixed degradation.
        val_quality = quality if isinstance(quality, int) else quality[0]
        val_codec = codec if isinstance(codec, str) else codec[0]
        self.val_images = (validation_images(val_source, d.scale, val_quality, t.seed, d.get("val_limit"), val_codec)
                           if self.dist.is_main else [])
        self.writer = None
        if self.dist.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        if resume_state is not None:
            self._resume(resume_from, resume_state)
        if self.dist.is_main:
            self._log_start(resume_from is None and t.get("init_weights") is not None)

    def _log_start(self, from_weights: bool) -> None:
        t = self.cfg.train
        params = sum(p.numel() for p in self.model.parameters()) / 1e6
        passes = f" in {t.accumulate} passes" if t.accumulate > 1 else ""
        log.info("%s: %.3f M parameters on %s (%d process%s), batch %d%s, iterations %d to %d; writing to %s",
                 self.cfg.name, params, self.device, self.dist.world_size, "" if self.dist.world_size == 1 else "es",
                 t.batch_size, passes, self.iteration, t.iterations, self.run_dir)
        if from_weights:
            log.info("starting from the weights in %s", t.init_weights)

    # ----------------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        rngs = [rng]
        if self.dist.world_size > 1:
            rngs = [None] * self.dist.world_size
            dist.all_gather_object(rngs, rng)
        return {
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rngs,
            "config": OmegaConf.to_yaml(self.cfg.model),
        }

    def _checked_checkpoint(self, path: Path) -> dict:
        """The checkpoint to resume from, refused before anything is built or written if this run cannot take it."""
        state = load_checkpoint(path)
        saved_model = state.get("config")
        if saved_model is not None and saved_model != OmegaConf.to_yaml(self.cfg.model):
            raise ValueError(f"{path} was written by a run with another model config; train this one in another "
                             "run_dir=..., or set the model back to resume that run.")
        if len(state["rng"]) != self.dist.world_size:
            raise ValueError(f"{path} was written by {len(state['rng'])} processes, this run has "
                             f"{self.dist.world_size}; resume with the same number of processes.")
        return state

    def _resume(self, path: Path, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.iteration = int(state["iteration"])
        rng = state["rng"][self.dist.rank]
        torch.set_rng_state(rng["cpu"])
        if rng.get("cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        if self.dist.is_main:
            log.info("resumed from %s at iteration %d", path, self.iteration)

    def save(self) -> None:
        state = self.state_dict()  # every rank joins the gather
        if self.dist.is_main:
            path = checkpoint_path(self.ckpt_dir, self.iteration)
            with self._writing(path):
                save_checkpoint(self.ckpt_dir, self.iteration, state, self.cfg.train.keep_last)
            log.info("iter %d: saved %s", self.iteration, path)
        if self.dist.world_size > 1:
            dist.barrier()

    def export_weights(self, path: Optional[Path] = None) -> Path:
        """The EMA weights (what is evaluated) as plain safetensors."""
        from safetensors.torch import save_file

        from ..utils.atomic import atomic_path

        path = Path(path or self.run_dir / "model_ema.safetensors")
        weights = {k: v.detach().cpu().contiguous() for k, v in self.ema.module.state_dict().items()}
        with self._writing(path), atomic_path(path) as tmp:
            save_file(weights, str(tmp))
        return path

    @contextlib.contextmanager
    def _writing(self, path: Path):
        """Turn an OSError while writing ``path`` into WeightsNotWritten, which says that nothing on disk was harmed
        (the writes are atomic) and how to go on."""
        try:
            yield
        except OSError as err:
            raise WeightsNotWritten(
                f"could not write {path} ({err.strerror or err}); the checkpoints already in {self.ckpt_dir} are "
                "intact (a file is only ever replaced whole): free space or fix the folder, then run the same command "
                "to resume from the last of them.") from err

    # ------------------------------------------------------------------------------------------------------ loop
    def train(self) -> dict:
        t = self.cfg.train
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=IterationBatches(self.iteration, t.iterations, self.per_rank_batch,
                                                         self.dist.rank, self.dist.world_size),
            num_workers=self.cfg.data.num_workers, pin_memory=self.device.type == "cuda",
            # Its own generator: the loader draws a base seed when it starts, which must not shift the global RNG
            # (drop-path) between an uninterrupted and a resumed run.
            generator=torch.Generator().manual_seed(t.seed), worker_init_fn=ignore_in_data_workers)
        bar = tqdm(total=t.iterations, initial=self.iteration, disable=not self.dist.is_main, dynamic_ncols=True)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bool(t.bf16) and self.device.type == "cuda")
        last = {}
        interval = Interval(self.device)
        self.net.train()
        # The scan kernels' tiles for every step and validation (an op's backward takes its forward's); log lines
        # go above the progress bar.
        with tile_config(**self.scan_tiles), StopSignals() as stop, logging_redirect_tqdm(), contextlib.closing(bar), \
                self._loading(loader):
            while (batch := self._next_batch()) is not None:
                lr_batch, hr_batch = batch
                self.optimizer.zero_grad(set_to_none=True)
                loss = self.accumulate_gradients(lr_batch, hr_batch, autocast)
                if t.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
                self.optimizer.step()
                self.scheduler.step()
                self.ema.update_parameters(self.model)
                self.iteration += 1
                if self.dist.is_main:
                    bar.update(1)
                    interval.add(loss)
                    if self.iteration % t.log_every == 0:
                        self.log_training(interval.close(), bar)
                if t.val_every and self.iteration % t.val_every == 0:
                    with interval.paused():
                        last = self.run_validation()
                saved = self.iteration % t.ckpt_every == 0 or self.iteration == t.iterations
                if saved:
                    self.save()
                signum = stop.received(self.device)
                if signum is not None:
                    if not saved:
                        self.save()
                    raise TrainingStopped(signum, self.iteration, self.ckpt_dir)
        if self.dist.is_main:
            log.info("finished at iteration %d; the EMA weights are in %s", self.iteration, self.export_weights())
        return last

    @contextlib.contextmanager
    def _loading(self, loader):
        """``loader``'s iterator as ``self._batches`` for the loop, dropped however the loop ends: its workers stop
        then, not at the process's exit, where they would keep it forever (see :meth:`_next_batch`)."""
        self._batches = iter(loader)
        try:
            yield
        finally:
            self._batches = None

    def _next_batch(self):
        """The next (lr, hr) batch of the loader's iterator, or None after the last.  A training image it cannot use
        (unreadable, or too small for the patch: a ValueError from the dataset, which a worker re-raises) stops the
        run with the steps done so far saved, so that it resumes from there once the file is fixed or removed,
        instead of from the last ``ckpt_every`` checkpoint."""
        try:
            return next(self._batches)
        except StopIteration:
            return None
        except Exception as err:
            # A worker's error holds the iterator through its traceback's frames, in a reference cycle that only the
            # garbage collector frees, maybe not before the exit handler that joins the workers; they ignore SIGTERM
            # (stop_signals.py), so it would wait forever (it did, after an unreadable image).  Without the frames'
            # locals, _loading frees the iterator, which stops its workers.
            traceback.clear_frames(err.__traceback__)
            if not isinstance(err, ValueError):
                raise
            message = error_message(err)
        raise TrainingDataError(f"{message} {self._save_for_data_fix()}")

    def _save_for_data_fix(self) -> str:
        """Saves a checkpoint at the steps done, where there is none yet; says how to go on."""
        last = latest_checkpoint(self.ckpt_dir)
        # One process cannot save alone: a checkpoint gathers every process's RNG state, and the others run on.
        if self.dist.world_size == 1 and self.iteration > 0 and last != checkpoint_path(self.ckpt_dir, self.iteration):
            self.save()
            last = latest_checkpoint(self.ckpt_dir)
        then = (f"run the same command to resume from {last.name} in {self.ckpt_dir}" if last is not None else
                "run again (no checkpoint had been written yet)")
        return f"Training stopped at iteration {self.iteration}: fix or remove that file, then {then}."

    def log_training(self, figures: IntervalFigures, bar) -> None:
        """The mean loss and the speed since the last log line: to TensorBoard, the log and the progress bar."""
        lr_now = self.optimizer.param_groups[0]["lr"]
        self.writer.add_scalar("train/l1", figures.loss, self.iteration)
        self.writer.add_scalar("train/lr", lr_now, self.iteration)
        self.writer.add_scalar("train/it_per_s", figures.rate, self.iteration)
        bar.set_postfix(loss=f"{figures.loss:.4f}", lr=f"{lr_now:.2e}")
        left = (self.cfg.train.iterations - self.iteration) / figures.rate  # at this interval's speed
        log.info("iter %d/%d  loss %.4f  lr %.2e  %.2f it/s  %s left", self.iteration, self.cfg.train.iterations,
                 figures.loss, lr_now, figures.rate, duration(left))

    def accumulate_gradients(self, lr_batch: torch.Tensor, hr_batch: torch.Tensor, autocast) -> torch.Tensor:
        """The step's L1 loss over this process's batch and its gradients, in ``train.accumulate`` passes of equal
        size (each pass's loss weighted by 1 / passes, so the gradients are the whole batch's); returns the loss.

        lr_batch: (batch, 3, p, p), hr_batch: (batch, 3, scale*p, scale*p), on the CPU."""
        passes = self.cfg.train.accumulate
        total = torch.zeros((), device=self.device)
        for index, (lr_img, hr_img) in enumerate(zip(lr_batch.chunk(passes), hr_batch.chunk(passes))):
            lr_img = lr_img.to(self.device, non_blocking=True)
            hr_img = hr_img.to(self.device, non_blocking=True)
            # DDP all-reduces the gradients in the last pass only.
            sync = index == passes - 1 or self.dist.world_size == 1
            with contextlib.nullcontext() if sync else self.net.no_sync():
                with autocast:
                    out = self.net(lr_img)
                loss = F.l1_loss(out.float(), hr_img) / passes
                if not torch.isfinite(loss):
                    raise TrainingDiverged(self._divergence_message(loss.item() * passes))
                loss.backward()
            total += loss.detach()
        return total

    def _divergence_message(self, loss: float) -> str:
        last = latest_checkpoint(self.ckpt_dir)
        kept = (f"The last good checkpoint, {last.name} in {self.ckpt_dir}, was not overwritten; lower train.lr or "
                "enable train.grad_clip, then run again to resume from it." if last is not None else
                f"No checkpoint had been written yet (train.ckpt_every={self.cfg.train.ckpt_every}); lower train.lr "
                "or enable train.grad_clip and run again.")
        return f"loss became {loss} at iteration {self.iteration + 1}; training stopped. {kept}"

    def run_validation(self) -> dict:
        if not self.dist.is_main:
            return {}
        scores = validate(self.ema.module, self.val_images, self.cfg.data.scale, self.device,
                          self.cfg.train.val_tile, self.run_dir / "val", self.cfg.train.val_images,
                          f"iter_{self.iteration:08d}_")
        for k, v in scores.items():
            self.writer.add_scalar(f"val/{k}", v, self.iteration)
        self.writer.flush()
        log.info("iter %d: validation PSNR %.2f dB (bicubic %.2f), SSIM %.4f (bicubic %.4f)", self.iteration,
                 scores["psnr"], scores["psnr_bicubic"], scores["ssim"], scores["ssim_bicubic"])
        return scores

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        distributed.teardown()
