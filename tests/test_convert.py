"""Loading the authors' released checkpoints: names and shapes written out from the released code."""

import math

import pytest
import torch

from mambacsr.config import build_model, load_config
from mambacsr.convert import convert_released_state_dict, load_released_checkpoint
from released_names import released_mambacsr_shapes, released_mambair_shapes


def _random_state(shapes):
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(*s, generator=g) for k, s in shapes.items()}


@pytest.fixture(scope="module")
def final_model():
    return build_model(load_config(["+experiment=dis_w8"]))


def test_released_names_give_the_released_counts():
    # The reference's counts: every parameter of the released networks.
    assert sum(math.prod(s) for s in released_mambacsr_shapes(True).values()) == 22_051_842
    assert sum(math.prod(s) for s in released_mambacsr_shapes(False).values()) == 18_372_603
    assert sum(math.prod(s) for s in released_mambair_shapes().values()) == 20_569_575


def test_final_checkpoint_loads_and_lands_in_place(final_model, tmp_path):
    released = _random_state(released_mambacsr_shapes(True))
    path = tmp_path / "net_g_latest.pth"
    torch.save({"params": {k: v * 0 for k, v in released.items()}, "params_ema": released}, path)
    load_released_checkpoint(final_model, path)  # strict: every parameter of ours came from the file
    ours = final_model.state_dict()
    k = 1  # the flipped direction of block 3 of group 2: row k*D + d of A_logs is ours [k, d]
    released_A_logs = released["layers.2.residual_group.blocks.3.self_attention.A_logs"]
    torch.testing.assert_close(ours["groups.2.blocks.3.ss2d.ssm.A_log"][k], released_A_logs[k * 360:(k + 1) * 360])
    torch.testing.assert_close(ours["cross_block.ss2d.ssm.D"].reshape(-1), released["layers3.0.Ds"])
    torch.testing.assert_close(ours["cross_block.ss2d.in_proj_low.weight"],
                               released["layers3.0.in_proj_down.weight"][:360])
    torch.testing.assert_close(ours["low_group.blocks.5.cab.body.3.attention.3.weight"],
                               released["layers2.0.residual_group.blocks.5.conv_block.cab.3.attention.3.weight"])
    torch.testing.assert_close(ours["groups.0.blocks.0.ss2d.gate.expand.bias"],
                               released["layers.0.residual_group.blocks.0.self_attention.multi_scan.attn.channel_select.bias"])
    torch.testing.assert_close(ours["upsampler.upsample.2.weight"], released["upsample.2.weight"])
    # The only released tensor not carried over is the unused half of in_proj_down.
    assert sum(v.numel() for v in ours.values()) == 22_051_842 - 360 * 180


def test_params_key_is_used_when_asked(final_model, tmp_path):
    released = _random_state(released_mambacsr_shapes(True))
    path = tmp_path / "ckpt.pth"
    torch.save({"params": released}, path)
    load_released_checkpoint(final_model, path, key="params")
    torch.testing.assert_close(final_model.state_dict()["conv_first.bias"], released["conv_first.bias"])


def test_mambair_checkpoint_converts():
    model = build_model(load_config(["+experiment=mambair"]))
    state = convert_released_state_dict(_random_state(released_mambair_shapes()), model.state_dict())
    model.load_state_dict(state, strict=True)


def test_checkpoint_for_another_architecture_is_refused(final_model, tmp_path):
    path = tmp_path / "wo.pth"
    torch.save({"params": _random_state(released_mambacsr_shapes(False))}, path)
    with pytest.raises(ValueError, match="(?s)does not match this network.*missing"):
        load_released_checkpoint(final_model, path)
    with pytest.raises(ValueError, match="could not read"):
        (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
        load_released_checkpoint(final_model, tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_released_checkpoint(final_model, tmp_path / "nope.pth")


def test_convert_writes_safetensors_and_says_when_it_cannot(tmp_path, capsys):
    from safetensors.torch import load_file

    from mambacsr import convert

    torch.save({"params_ema": _random_state(released_mambair_shapes())}, tmp_path / "mambair.pth")
    assert convert.main([str(tmp_path / "mambair.pth"), str(tmp_path / "ours.safetensors"), "+experiment=mambair"]) == 0
    model = build_model(load_config(["+experiment=mambair"]))
    assert set(load_file(str(tmp_path / "ours.safetensors"))) == set(model.state_dict())
    (tmp_path / "file").write_text("")
    target = tmp_path / "file" / "ours.safetensors"  # a folder that is a file: cannot be written
    assert convert.main([str(tmp_path / "mambair.pth"), str(target), "+experiment=mambair"]) == 1
    assert f"error: could not write {target} (" in capsys.readouterr().err
    # The output is read back by its suffix: any other name is refused before anything is read or written, the
    # checkpoint's own name included (which replaced the checkpoint with safetensors under a .pth name).
    before = (tmp_path / "mambair.pth").read_bytes()
    for name in ("mambair.pth", "ours.pt"):
        assert convert.main([str(tmp_path / "mambair.pth"), str(tmp_path / name), "+experiment=mambair"]) == 1
        assert (f"error: {tmp_path / name}: name the output *.safetensors, the format it is written in (e.g. "
                f"{tmp_path / name.split('.')[0]}.safetensors)") in capsys.readouterr().err
    assert (tmp_path / "mambair.pth").read_bytes() == before and not (tmp_path / "ours.pt").exists()
