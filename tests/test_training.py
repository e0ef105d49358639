"""The trainer: exact resume after a kill, a stop on a non-finite loss, and a two-process torchrun (gloo) run."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import save_file

from mambacsr.config import build_model, load_config
from mambacsr.training import checkpoint as checkpoint_module
from mambacsr.training.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from mambacsr.training.trainer import Trainer, WeightsNotWritten

TINY = ["+experiment=demo_cpu", "model.embed_dim=8", "model.depths=[1]", "model.d_state=4",
        "model.cross_scale.low_depth=1", "data.patch_size=8", "data.num_workers=0", "train.val_every=0",
        "train.log_every=1", "train.keep_last=100"]


def train(run_dir, *overrides, wait=True, timeout=600):
    cmd = [sys.executable, "-m", "mambacsr.train", *TINY, f"run_dir={run_dir}", *overrides]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def assert_same_state(a: dict, b: dict, path=""):
    assert a.keys() == b.keys(), path
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, dict):
            assert_same_state(x, y, f"{path}.{key}")
        elif isinstance(x, torch.Tensor):
            assert torch.equal(x, y), f"{path}.{key} differs"
        elif isinstance(x, list) and x and isinstance(x[0], dict):
            for i, (xi, yi) in enumerate(zip(x, y)):
                assert_same_state(xi, yi, f"{path}.{key}[{i}]")
        else:
            assert x == y, f"{path}.{key}: {x} != {y}"


def test_killed_run_resumes_exactly(tmp_path):
    steps = ["train.iterations=14", "train.ckpt_every=2", "train.batch_size=2"]
    straight = train(tmp_path / "straight", *steps)
    assert straight.returncode == 0, straight.stderr[-2000:]

    proc = train(tmp_path / "killed", *steps, wait=False)
    deadline = time.time() + 300
    while not list_checkpoints(tmp_path / "killed" / "checkpoints") and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = list_checkpoints(tmp_path / "killed" / "checkpoints")
    assert done and done[-1].name != "iter_00000014.pt", "the run finished before it could be killed"
    resumed = train(tmp_path / "killed", *steps)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout + resumed.stderr

    a = load_checkpoint(latest_checkpoint(tmp_path / "straight" / "checkpoints"))
    b = load_checkpoint(latest_checkpoint(tmp_path / "killed" / "checkpoints"))
    assert a["iteration"] == b["iteration"] == 14
    for key in ("model", "ema", "optimizer", "scheduler", "rng"):
        assert_same_state({key: a[key]}, {key: b[key]})
    assert (tmp_path / "killed" / "model_ema.safetensors").is_file()


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    result = train(tmp_path / "run", "train.iterations=20", "train.ckpt_every=1", "train.batch_size=2",
                   "train.lr=1e30", "train.milestones=[100]")
    assert result.returncode == 1
    assert "loss became" in result.stderr and "last good checkpoint" in result.stderr
    assert re.search(r"\] ERROR loss became \S+ at iteration \d+; training stopped", (tmp_path / "run" / "train.log")
                     .read_text())  # the reason stays in the run's log, not only on the console
    last = latest_checkpoint(tmp_path / "run" / "checkpoints")
    state = load_checkpoint(last)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_deterministic_training_runs_and_repeats(tmp_path):
    # train.deterministic turns on torch.use_deterministic_algorithms (which the scan kernels follow): a CPU run
    # must still train, and the same command must train the same weights again.
    runs = [train(tmp_path / name, "train.iterations=2", "train.ckpt_every=2", "train.batch_size=2",
                  "train.deterministic=true") for name in ("a", "b")]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:]
    a, b = (load_checkpoint(latest_checkpoint(tmp_path / name / "checkpoints")) for name in ("a", "b"))
    assert_same_state(a["model"], b["model"])


@pytest.mark.parametrize("override,message", [
    ("+train.scan_tiles.one_pass_lanes_backward_block_d=6",
     r"one_pass_lanes_backward_block_d = 6: .*power of two.*choose e\.g\. 8 or 16"),
    ("+train.scan_tiles.one_pass_backward=true",
     r"train\.scan_tiles: one_pass_backward is not a field of the scan kernels' TileConfig.*one_pass_lanes_backward"),
    ("train.scan_tiles=8", r"train\.scan_tiles = 8: give TileConfig fields, e\.g\. \+train\.scan_tiles\."),
    ("train.ckpt_every=0", r"train\.ckpt_every=0: expected a whole number, at least 1"),
    ("data=df2k", r"data\.train_hr=\S+/DF2K/HR_sub is not a folder \(data\.data_root=\S+\): point data\.data_root or "
                  r"data\.train_hr at your data, or make it with python -m mambacsr\.prepare"),
])
def test_bad_options_stop_the_run_before_training_starts(tmp_path, override, message):
    # train.scan_tiles sets the Triton kernels' TileConfig for the run: a misspelt field or a value the kernels
    # refuse stops the run at once, with what to choose, before any checkpoint is written; so does a train or data
    # value the run cannot use (training/options.py; ckpt_every=0 divided by zero after the first step).
    result = train(tmp_path / "run", "train.iterations=2", "train.ckpt_every=1", "train.batch_size=2", override)
    assert result.returncode == 1 and re.search(message, result.stderr), result.stderr[-2000:]
    assert not list_checkpoints(tmp_path / "run" / "checkpoints")


def test_scan_tiles_that_the_kernels_accept_train(tmp_path):
    result = train(tmp_path / "run", "train.iterations=2", "train.ckpt_every=2", "train.batch_size=2",
                   "+train.scan_tiles.one_pass_lanes_backward=true", "+train.scan_tiles.block_t=8")
    assert result.returncode == 0, result.stderr[-2000:]
    assert load_checkpoint(latest_checkpoint(tmp_path / "run" / "checkpoints"))["iteration"] == 2


def test_unknown_experiment_fails_clearly(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mambacsr.train", "+experiment=nope", f"run_dir={tmp_path}"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "nope" in result.stderr and "dis_w8" in result.stderr


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tmp_path):
    common = ["train.iterations=3", "train.ckpt_every=3", "train.batch_size=4", "model.drop_path_rate=0"]
    single = train(tmp_path / "single", *common)
    assert single.returncode == 0, single.stderr[-2000:]
    a = load_checkpoint(latest_checkpoint(tmp_path / "single" / "checkpoints"))
    # The second run takes each rank's half-batch in two passes, the last of them all-reducing the gradients.
    for run, extra in (("ddp", []), ("ddp_passes", ["train.accumulate=2"])):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "mambacsr.train", *TINY, f"run_dir={tmp_path / run}", *common, *extra]
        ddp = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                             env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert ddp.returncode == 0, ddp.stderr[-3000:]
        b = load_checkpoint(latest_checkpoint(tmp_path / run / "checkpoints"))
        assert len(b["rng"]) == 2  # every rank's RNG state is kept for an exact resume
        # Two half-batches averaged by DDP take the same step as one full batch (up to summation order).
        for name, value in a["model"].items():
            torch.testing.assert_close(b["model"][name], value, rtol=1e-4, atol=1e-5, msg=name)


class _Unreadable(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, index):
        from mambacsr.data.io import ImageError
        raise ImageError(f"img{index}.png: not a readable image: a message with: colons")


def test_an_error_in_a_data_worker_is_reported_by_its_own_message():
    # PyTorch re-raises a worker's error with the worker's whole traceback as its message; train prints the error's
    # own message, which names the file.
    from mambacsr.training.data_errors import error_message
    with pytest.raises(ValueError) as info:
        next(iter(torch.utils.data.DataLoader(_Unreadable(), num_workers=1)))
    assert "Original Traceback" in str(info.value)
    assert error_message(info.value) == "img0.png: not a readable image: a message with: colons"
    assert error_message(ValueError("train.lr=0: expected a number above 0")) == "train.lr=0: expected a number above 0"


def test_an_unreadable_training_image_midway_saves_the_steps_done_and_the_fixed_run_resumes_exactly(tmp_path):
    # Patches are drawn statelessly: key (iteration * batch + slot) takes image default_rng([seed, 1, key]) of the
    # sorted folder.  Pick a seed whose first draw of the last image, written broken, falls at iteration 3 to 6.
    import itertools

    import cv2
    import numpy as np

    def first_key(seed, image):
        return next(k for k in itertools.count() if np.random.default_rng([seed, 1, k]).integers(4) == image)

    seed = next(seed for seed in range(100) if 6 <= first_key(seed, 3) < 14)
    stopped = first_key(seed, 3) // 2  # batch 2: the steps done when the broken image is drawn
    good = [np.random.default_rng(i).integers(0, 256, (48, 48, 3), dtype=np.uint8) for i in range(4)]
    for name in ("broken", "fixed"):
        (tmp_path / name).mkdir()
        for i, img in enumerate(good):
            cv2.imwrite(str(tmp_path / name / f"{i}.png"), img)
    (tmp_path / "broken" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    steps = ["train.iterations=9", "train.ckpt_every=100", "train.batch_size=2", f"train.seed={seed}",
             "data=df2k", "data.train_lr=null", "data.val_hr=null", "data.patch_size=8", "data.num_workers=1"]
    # A data worker ignores SIGTERM (stop_signals.py): one still alive when the run exits would keep it forever.
    run = train(tmp_path / "run", *steps, f"data.train_hr={tmp_path / 'broken'}", timeout=180)
    assert run.returncode == 1
    saved = tmp_path / "run" / "checkpoints" / f"iter_{stopped:08d}.pt"
    assert ("3.png: not a readable image" in run.stderr and f"Training stopped at iteration {stopped}: fix or remove "
            f"that file, then run the same command to resume from {saved.name}" in run.stderr), run.stderr[-2000:]
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == [saved.name]

    (tmp_path / "broken" / "3.png").write_bytes((tmp_path / "fixed" / "3.png").read_bytes())
    resumed = train(tmp_path / "run", *steps, f"data.train_hr={tmp_path / 'broken'}")
    straight = train(tmp_path / "straight", *steps, f"data.train_hr={tmp_path / 'fixed'}")
    assert resumed.returncode == straight.returncode == 0, resumed.stderr[-2000:] + straight.stderr[-2000:]
    assert f"resumed from {saved}" in resumed.stderr
    a = load_checkpoint(latest_checkpoint(tmp_path / "straight" / "checkpoints"))
    b = load_checkpoint(latest_checkpoint(tmp_path / "run" / "checkpoints"))
    assert a["iteration"] == b["iteration"] == 9
    for key in ("model", "ema", "optimizer", "scheduler", "rng"):
        assert_same_state({key: a[key]}, {key: b[key]})


def test_a_fresh_run_refuses_a_run_dir_holding_checkpoints(tmp_path):
    # train.resume=false in a folder with an earlier run's checkpoints would mix the two runs' checkpoints: pruning
    # by iteration kept the old run's later ones and deleted the new run's.
    first = train(tmp_path / "run", "train.iterations=2", "train.ckpt_every=2", "train.batch_size=2")
    assert first.returncode == 0, first.stderr[-2000:]
    before = {p.name: p.stat().st_mtime_ns for p in list_checkpoints(tmp_path / "run" / "checkpoints")}
    # Both refusals come before anything is built: no TensorBoard event file of the refused run joins the first's.
    logs = sorted((tmp_path / "run" / "tensorboard").rglob("*"))
    assert logs
    again = train(tmp_path / "run", "train.iterations=1", "train.ckpt_every=1", "train.batch_size=2",
                  "train.resume=false")
    assert again.returncode == 1
    assert "holds an earlier run's checkpoints (the latest: " in again.stderr and "another run_dir=" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in list_checkpoints(tmp_path / "run" / "checkpoints")} == before
    other = train(tmp_path / "run", "train.iterations=1", "train.batch_size=2", "model.embed_dim=12")
    assert other.returncode == 1 and "another model config; train this one in another run_dir=" in other.stderr
    assert sorted((tmp_path / "run" / "tensorboard").rglob("*")) == logs


def test_sigterm_saves_the_step_reached_and_the_run_resumes_exactly(tmp_path):
    # A cluster's preemption (SIGTERM to the whole job, data workers included): the run saves a checkpoint at the
    # step it reached (not only every ckpt_every steps) and exits; the same command then finishes it exactly as an
    # uninterrupted run does.
    steps = ["train.iterations=40", "train.ckpt_every=4", "train.batch_size=2", "data.num_workers=2"]
    straight = train(tmp_path / "straight", *steps)
    assert straight.returncode == 0, straight.stderr[-2000:]

    cmd = [sys.executable, "-m", "mambacsr.train", *TINY, f"run_dir={tmp_path / 'stopped'}", *steps]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.time() + 300
    while not list_checkpoints(tmp_path / "stopped" / "checkpoints") and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGTERM)  # the process group: the data workers receive it too
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    reached = int(re.search(r"stopped by SIGTERM at iteration (\d+): checkpoint saved in", err).group(1))
    assert 4 <= reached < 40, "the run finished before the signal"
    assert load_checkpoint(latest_checkpoint(tmp_path / "stopped" / "checkpoints"))["iteration"] == reached
    assert not (tmp_path / "stopped" / "model_ema.safetensors").exists()  # exported only when training ends

    resumed = train(tmp_path / "stopped", *steps)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {tmp_path / 'stopped' / 'checkpoints'}" in resumed.stdout + resumed.stderr
    a = load_checkpoint(latest_checkpoint(tmp_path / "straight" / "checkpoints"))
    b = load_checkpoint(latest_checkpoint(tmp_path / "stopped" / "checkpoints"))
    assert a["iteration"] == b["iteration"] == 40
    for key in ("model", "ema", "optimizer", "scheduler", "rng"):
        assert_same_state({key: a[key]}, {key: b[key]})

    # train.log keeps both halves of the stopped run: the stop, the resume and every step's loss (log_every=1),
    # each the same as the uninterrupted run's at that step.
    log = (tmp_path / "stopped" / "train.log").read_text()
    assert f"WARNING stopped by SIGTERM at iteration {reached}: checkpoint saved" in log
    assert f"INFO resumed from {tmp_path / 'stopped' / 'checkpoints' / f'iter_{reached:08d}.pt'}" in log
    assert "iterations 0 to 40" in log and f"iterations {reached} to 40" in log
    assert "INFO finished at iteration 40; the EMA weights are in " in log
    losses = [logged_losses((tmp_path / run / "train.log").read_text()) for run in ("straight", "stopped")]
    assert sorted(losses[1]) == list(range(1, 41)) and losses[1] == losses[0]


def logged_losses(log: str) -> dict:
    """train.log's training lines as {iteration: mean loss since the line before}."""
    lines = re.findall(r"INFO iter (\d+)/\d+  loss (\d+\.\d+)  lr \S+  \S+ it/s  \d[\w ]* left", log)
    return {int(i): float(loss) for i, loss in lines}


def test_the_logged_interval_is_the_mean_loss_and_leaves_validation_out(monkeypatch):
    from mambacsr.training import interval as interval_module
    clock = iter([10.0, 14.0, 24.0, 30.0, 30.0, 32.0, 32.0])  # start; validation 14-24; closed at 30 and at 32
    monkeypatch.setattr(interval_module.time, "perf_counter", lambda: next(clock))
    interval = interval_module.Interval(torch.device("cpu"))
    for loss in (0.5, 1.0, 2.1):
        interval.add(torch.tensor(loss))
    with interval.paused():
        pass
    figures = interval.close()
    assert figures.loss == pytest.approx(3.6 / 3) and figures.rate == pytest.approx(3 / (20 - 10))
    interval.add(torch.tensor(0.25))
    assert interval.close() == pytest.approx((0.25, 1 / 2))


@pytest.mark.parametrize("seconds,text", [(44.6, "45 s"), (59.4, "59 s"), (89, "1 min"), (3569, "59 min"),
                                          (3600, "1 h 00 min"), (3 * 3600 + 5 * 60 + 20, "3 h 05 min"),
                                          (86399, "1 d 00 h"), (2 * 86400 + 4 * 3600 + 1700, "2 d 04 h"),
                                          (float("inf"), "unknown"), (float("nan"), "unknown")])
def test_the_time_left_reads_to_the_minute(seconds, text):
    from mambacsr.training.interval import duration
    assert duration(seconds) == text


def test_training_memory_advice_names_the_values_to_lower():
    from mambacsr.config import load_config
    from mambacsr.train import training_memory_advice
    advice = training_memory_advice(load_config(["+experiment=dis_w8"]))
    assert advice.startswith("out of GPU memory at train.batch_size=32 (the total over all processes) and "
                             "data.patch_size=64: raise train.accumulate (now 1) to take each step's batch in more "
                             "passes of fewer images, the same step in less memory; or lower either")
    assert "train.bf16=true" in advice and "runs/dis_w8 are intact" in advice
    assert "if it ran out while validating, lower train.val_tile (now 256;" in advice  # validation restores in tiles
    assert "bf16" not in training_memory_advice(load_config(["+experiment=dis_w8", "train.bf16=true"]))


def test_a_fresh_run_starts_from_init_weights_and_a_resumed_run_keeps_its_own(tmp_path):
    def config(*extra):
        return load_config([*TINY, "train.device=cpu", *extra])

    def weights_of(module):
        return {k: v.clone() for k, v in module.state_dict().items()}

    torch.manual_seed(123)  # other weights than the trainer's own initialisation draws
    donor = build_model(config())
    save_file(weights_of(donor), str(tmp_path / "donor.safetensors"))
    init = f"train.init_weights={tmp_path / 'donor.safetensors'}"

    tuned = Trainer(config(init), tmp_path / "tuned")
    assert_same_state(weights_of(tuned.model), weights_of(donor))
    assert_same_state(weights_of(tuned.ema.module), weights_of(donor))  # the EMA starts from them too
    fresh = Trainer(config(), tmp_path / "fresh")
    assert not torch.equal(fresh.model.conv_first.weight, donor.conv_first.weight)

    fresh.save()  # a checkpoint at iteration 0: the run now resumes from it, whatever init_weights says
    resumed = Trainer(config(init), tmp_path / "fresh")
    assert_same_state(weights_of(resumed.model), weights_of(fresh.model))

    torch.manual_seed(0)
    other = build_model(config("model.embed_dim=12"))
    save_file(weights_of(other), str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="other.safetensors does not fit this network"):
        Trainer(config(f"train.init_weights={tmp_path / 'other.safetensors'}"), tmp_path / "other")
    with pytest.raises(FileNotFoundError, match="missing.safetensors does not exist"):
        Trainer(config(f"train.init_weights={tmp_path / 'missing.safetensors'}"), tmp_path / "missing")


def test_a_checkpoint_of_another_process_count_is_refused_before_the_run_writes_anything(tmp_path):
    # Each process resumes its own RNG state, so a checkpoint of two processes cannot resume one.
    Trainer(load_config([*TINY, "train.device=cpu"]), tmp_path / "run").save()
    path = tmp_path / "run" / "checkpoints" / "iter_00000000.pt"
    state = torch.load(path, weights_only=True)
    state["rng"] = state["rng"] * 2
    torch.save(state, path)
    logs = sorted((tmp_path / "run" / "tensorboard").rglob("*"))
    with pytest.raises(ValueError, match="was written by 2 processes, this run has 1; resume with the same number"):
        Trainer(load_config([*TINY, "train.device=cpu"]), tmp_path / "run")
    assert sorted((tmp_path / "run" / "tensorboard").rglob("*")) == logs


def test_a_full_disk_stops_the_run_with_its_checkpoints_intact(tmp_path, monkeypatch):
    trainer = Trainer(load_config([*TINY, "train.device=cpu"]), tmp_path / "run")
    trainer.save()
    saved = (tmp_path / "run" / "checkpoints" / "iter_00000000.pt").read_bytes()

    def fill_the_disk(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", fill_the_disk)
    trainer.iteration = 5
    with pytest.raises(WeightsNotWritten) as info:
        trainer.save()
    assert str(info.value).startswith(f"could not write {tmp_path / 'run' / 'checkpoints' / 'iter_00000005.pt'} "
                                      "(No space left on device); the checkpoints already in")
    assert "run the same command to resume from the last of them" in str(info.value)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["iter_00000000.pt"]
    assert (tmp_path / "run" / "checkpoints" / "iter_00000000.pt").read_bytes() == saved

    monkeypatch.setattr("safetensors.torch.save_file", lambda *a, **k: fill_the_disk(None, a[1]))
    with pytest.raises(WeightsNotWritten, match="model_ema.safetensors \\(No space left on device\\)"):
        trainer.export_weights()
    assert not (tmp_path / "run" / "model_ema.safetensors").exists()


def test_accumulated_passes_take_the_whole_batchs_step(tmp_path):
    # drop_path_rate is 0 in demo_cpu: with it, the passes would draw their masks in another order.
    def run(*extra):
        trainer = Trainer(load_config([*TINY, "train.device=cpu", "train.batch_size=4", "train.iterations=3",
                                       "train.ckpt_every=3", *extra]), tmp_path / "_".join(extra or ["whole"]))
        sizes = []
        trainer.net.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
        trainer.train()
        return trainer, sizes

    whole, whole_sizes = run()
    passes, pass_sizes = run("train.accumulate=2")
    assert whole_sizes == [4] * 3 and pass_sizes == [2] * 6
    for name, value in whole.model.state_dict().items():  # the same steps, to rounding
        torch.testing.assert_close(passes.model.state_dict()[name], value, rtol=1e-4, atol=1e-6, msg=name)
    assert not torch.equal(whole.model.conv_first.weight, Trainer(
        load_config([*TINY, "train.device=cpu"]), tmp_path / "untrained").model.conv_first.weight)  # it trained
    # One step's gradients and loss directly: the passes' sum is the whole batch's (Adam above would hide a scale).
    batch = [torch.stack(items) for items in zip(*(whole.dataset[key] for key in range(4)))]
    grads, losses = [], []
    for extra in ([], ["train.accumulate=2"]):
        trainer = Trainer(load_config([*TINY, "train.device=cpu", "train.batch_size=4", *extra]),
                          tmp_path / ("grads" + "".join(extra)))
        autocast = torch.autocast("cpu", enabled=False)
        losses.append(trainer.accumulate_gradients(*batch, autocast))
        grads.append({n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None})
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-6, atol=1e-7)
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-7, msg=name)
    with pytest.raises(ValueError, match=r"train.accumulate=3 must divide each process's 4 images"):
        Trainer(load_config([*TINY, "train.device=cpu", "train.batch_size=4", "train.accumulate=3"]), tmp_path / "x")


def test_a_truncated_checkpoint_is_named_with_what_to_do(tmp_path):
    # A checkpoint cut short by a copy (ours are written whole): the run names it and the fix, not torch's traceback.
    path = checkpoint_module.save_checkpoint(tmp_path, 6, {"iteration": 6, "model": {"w": torch.ones(1000)}}, 3)
    assert load_checkpoint(path)["iteration"] == 6
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ValueError, match=rf"could not load checkpoint {re.escape(str(path))}: .*[^.]\. It may be "
                                         r"truncated; delete it to resume from the previous one\.$"):
        load_checkpoint(path)


def test_a_sweep_trains_each_job_in_its_own_folder_and_a_rerun_resumes_each(tmp_path):
    # -m with train.seed=0,1: in one shared run_dir the second job resumed the first's finished run and trained
    # nothing. Each job now has <run_dir>/<its overrides>, with its own checkpoints and train.log.
    cmd = [sys.executable, "-m", "mambacsr.train", "-m", *TINY, f"run_dir={tmp_path / 'sweep'}", "train.iterations=2",
           "train.ckpt_every=2", "train.batch_size=2", "train.seed=0,1"]
    for attempt in ("first", "again"):
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                                env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert result.returncode == 0, result.stderr[-2000:]
    folders = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert [p.name.split(",")[-2:] for p in folders] == [["train.seed=0", "train.val_every=0"],
                                                       ["train.seed=1", "train.val_every=0"]]
    states = [load_checkpoint(latest_checkpoint(p / "checkpoints")) for p in folders]
    assert [s["iteration"] for s in states] == [2, 2]
    assert not torch.equal(states[0]["model"]["conv_first.weight"], states[1]["model"]["conv_first.weight"])
    for folder in folders:  # trained from scratch once, then resumed (and finished at once) by the rerun
        log = (folder / "train.log").read_text()
        assert "iterations 0 to 2" in log and f"resumed from {folder / 'checkpoints' / 'iter_00000002.pt'}" in log
