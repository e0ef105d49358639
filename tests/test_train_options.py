"""A run's ``train`` and ``data`` values are checked before it starts; each refusal names the value and what to
pass."""

import numpy as np
import pytest

from mambacsr.config import load_config
from mambacsr.data.degrade import degrade
from mambacsr.training.options import check_options
from mambacsr.training.trainer import Trainer


def test_every_experiment_passes():
    for name in ("dis_w8", "dis_w8_noxs", "dis_w4", "xs_sequential", "ablation_none", "mambair", "dis_w8_q30",
                 "demo_cpu"):
        check_options(load_config([f"+experiment={name}"]))


@pytest.mark.parametrize("override,message", [
    ("train.iterations=-5", "train.iterations=-5: expected a whole number, at least 1"),
    ("train.iterations=2.5", "train.iterations=2.5: expected a whole number"),
    ("train.log_every=0", "train.log_every=0: expected a whole number, at least 1"),  # divided by after a step
    ("train.ckpt_every=0", "train.ckpt_every=0: expected"),
    ("train.keep_last=0", "train.keep_last=0: expected"),
    ("train.val_every=-1", "train.val_every=-1: expected a whole number, at least 0"),
    ("train.lr=abc", "train.lr='abc': expected a number above 0"),
    ("train.lr=0", "train.lr=0: expected a number above 0"),
    ("train.betas=[0.9]", r"train.betas=[0.9]: expected two numbers in [0, 1)"),
    ("train.betas=[0.9,1.0]", "train.betas=[0.9, 1.0]: expected two numbers"),
    ("train.milestones=[0]", "train.milestones=[0]: expected a list of iterations"),
    ("train.ema_decay=1.5", "train.ema_decay=1.5: expected a number in [0, 1]"),
    ("train.grad_clip=0", "train.grad_clip=0: expected null (no clipping) or a norm above 0"),
    ("train.val_tile=0", "train.val_tile=0: expected null (whole images)"),
    ("train.bf16=1", "train.bf16=1: expected true or false"),
    ("train.device=gpu", "train.device='gpu': expected auto or cuda or cpu"),  # was: trained on the CPU
    ("train.init_weights=5", "train.init_weights=5: expected null (a fresh network) or the path of the weights"),
    ("data.scale=2", "data.scale=2: expected the model's upscale factor (model.upscale=4)"),
    ("data.patch_size=0", "data.patch_size=0: expected"),
    ("data.num_workers=-1", "data.num_workers=-1: expected"),
    ("data.val_limit=0", "data.val_limit=0: expected null (every validation image) or at least 1"),
    ("data.quality=[10,200]", "data.quality=[10, 200]: expected a quality from 1 to 100"),
    ("data.quality=abc", "data.quality='abc': expected a quality from 1 to 100"),
    ("data.codec=gif", "data.codec='gif': pass one of jpeg, webp, avif, or a list of them to draw from per image."),
    ("data.codec=[jpeg,gif]", "data.codec=['jpeg', 'gif']: pass one of jpeg, webp, avif, or a list"),
    ("data.codec=[]", "data.codec=[]: pass one of"),
    ("data.train_lr=lr_q10", "data.train_lr='lr_q10': expected null while data.train_hr is null"),  # was ignored
    ("data.val_lr=lr_q10", "data.val_lr='lr_q10': expected null while data.val_hr is null"),
])
def test_bad_values_are_refused_with_what_to_pass(override, message):
    with pytest.raises(ValueError) as info:
        check_options(load_config(["+experiment=demo_cpu", override]))
    assert str(info.value).startswith(message), str(info.value)
    assert str(info.value).endswith(f"(override: {override.split('=')[0]}=VALUE).")


@pytest.mark.parametrize("override", ["train.val_every=0", "train.grad_clip=1.0", "train.val_tile=null",
                                      "data.quality=[10,20,30]", "train.device=cpu", "data.val_limit=2",
                                      "data.codec=webp", "data.codec=avif", "data.codec=[jpeg,webp,avif]"])
def test_values_with_a_meaning_pass(override):
    check_options(load_config(["+experiment=demo_cpu", override]))


@pytest.mark.parametrize("codec", ["webp", "[webp,jpeg]"])
def test_a_run_degrades_with_its_codec(tmp_path, codec):
    cfg = load_config(["+experiment=demo_cpu", f"data.codec={codec}", "data.quality=30", "model.embed_dim=8",
                       "model.depths=[1]", "model.d_state=4", "model.cross_scale.low_depth=1", "train.device=cpu",
                       "data.num_workers=0"])
    trainer = Trainer(cfg, tmp_path)
    val = trainer.val_images[0]
    # Validation degrades with the first codec of a list, training draws from the list.
    np.testing.assert_array_equal(val.lr, degrade(val.hr, 4, 30, np.random.default_rng([cfg.train.seed, 0]), "webp"))
    assert trainer.dataset.codec == ("webp" if codec == "webp" else ["webp", "jpeg"])


@pytest.mark.parametrize("drawn", ["data.quality=[10,20,30]", "data.codec=[jpeg,webp]"])
def test_lists_drawn_per_image_refuse_given_lr_images(drawn):
    # df2k reads precomputed LR images, which a list drawn per image would silently not apply to.
    expected = (r"data.train_lr=.datasets/DF2K/LR_.*.: expected null while data\.(quality|codec)=.* is drawn per "
                r"image, which needs the LR images made on the fly")
    with pytest.raises(ValueError, match=expected):
        check_options(load_config(["+experiment=dis_w8", "data=df2k", drawn]))
    check_options(load_config(["+experiment=dis_w8", "data=df2k", drawn, "data.train_lr=null"]))
