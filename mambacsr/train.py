"""Train a network: ``python -m mambacsr.train +experiment=dis_w8`` (any Hydra override after it).

Multi-GPU: ``torchrun --nproc_per_node=8 -m mambacsr.train +experiment=dis_w8`` (train.batch_size is the total).
A run resumes from the newest checkpoint in ``<run_dir>/checkpoints`` when started again.  SIGTERM (a cluster's
preemption) or Ctrl-C saves a checkpoint at the step reached and exits with 128 + the signal's number.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .config import CONFIG_DIR
from .training.data_errors import error_message
from .training.stop_signals import TrainingStopped
from .training.trainer import Trainer, TrainingDiverged, WeightsNotWritten

# On the console (standard error) and in <run_dir>/train.log: conf/hydra/job_logging/mambacsr.yaml.
log = logging.getLogger("mambacsr.train")


def training_memory_advice(cfg: DictConfig) -> str:
    """What to change when a training step ran out of GPU memory (the checkpoints on disk are untouched)."""
    t, d = cfg.train, cfg.data
    advice = (f"out of GPU memory at train.batch_size={t.batch_size} (the total over all processes) and "
              f"data.patch_size={d.patch_size}: raise train.accumulate (now {t.accumulate}) to take each step's batch "
              "in more passes of fewer images, the same step in less memory; or lower either, or train on more GPUs "
              "with torchrun")
    if not t.bf16:
        advice += ", or set train.bf16=true"
    advice += (f"; if it ran out while validating, lower train.val_tile (now {t.val_tile}; restored in tiles of that "
               "many LR pixels)")
    return advice + f"; the checkpoints in {cfg.run_dir} are intact and the run resumes from the last."


def sweep_job_run_dir(cfg: DictConfig) -> None:
    """In a sweep (``-m``) each job trains in its own folder, ``<run_dir>/<its overrides>`` (``hydra.sweep`` in
    conf/config.yaml; ``train.seed=1`` for ``-m +experiment=dis_w8 train.seed=0,1``), where Hydra also puts its
    train.log.  In one shared run_dir each job would resume the one before it: a sweep over seeds trained once."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        cfg.run_dir = hydra_cfg.runtime.output_dir


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    sweep_job_run_dir(cfg)
    trainer = None
    try:
        trainer = Trainer(cfg, Path(cfg.run_dir))
        trainer.train()
    except TrainingStopped as stopped:
        log.warning("stopped by %s", stopped)
        sys.exit(stopped.exit_code)
    except torch.OutOfMemoryError:
        log.error(training_memory_advice(cfg))
        sys.exit(1)
    except (TrainingDiverged, WeightsNotWritten, ValueError, FileNotFoundError) as err:
        log.error(error_message(err))
        sys.exit(1)
    finally:
        if trainer is not None:
            trainer.close()


if __name__ == "__main__":
    main()
