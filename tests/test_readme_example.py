"""The README's Python examples run and do what they say.  The scan in someone else's vision-Mamba model computes what
it replaces: VMamba's cross-scan copies, x_proj and dt_proj per direction, the drop-in selective scan, and the
cross-merge, written here with plain reshapes and flips (no scan2d orders).  Restoring an image writes its x4 copy."""

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import scan2d

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example(after: str) -> str:
    """The first python block of the README after the text ``after``."""
    text = README.read_text()
    match = re.search(r"```python\n(.*?)```", text[text.index(after):], re.S)
    assert match, f"no python block after {after!r} in the README"
    return match.group(1)


def vmamba_core(u, H, W, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds):
    """VMamba's SS2D core on (batch, H*W, D) raster tokens: four copies, four scans, the merge."""
    batch, L, D = u.shape
    K, N = x_proj_weight.shape[0], A_logs.shape[-1]
    x = u.transpose(1, 2).reshape(batch, D, H, W)
    rows, cols = x.reshape(batch, D, L), x.transpose(2, 3).reshape(batch, D, L)
    xs = torch.stack([rows, cols, rows.flip(-1), cols.flip(-1)], 1)          # (batch, K, D, L)
    x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, x_proj_weight)
    dts, Bs, Cs = x_dbl.split([dt_projs_weight.shape[-1], N, N], dim=2)
    dts = torch.einsum("bkrl,kdr->bkdl", dts, dt_projs_weight)
    out = scan2d.selective_scan(xs.reshape(batch, K * D, L), dts.reshape(batch, K * D, L), -torch.exp(A_logs),
                                Bs.contiguous(), Cs.contiguous(), Ds, delta_bias=dt_projs_bias.reshape(-1),
                                delta_softplus=True, backend="torch").view(batch, K, D, L)
    by_rows = out[:, 0] + out[:, 2].flip(-1)
    by_cols = out[:, 1] + out[:, 3].flip(-1)
    by_cols = by_cols.reshape(batch, D, W, H).transpose(2, 3).reshape(batch, D, L)
    return (by_rows + by_cols).transpose(1, 2)


def test_readme_example_equals_the_vmamba_sequence_it_replaces():
    torch.manual_seed(0)
    namespace = {}
    exec(compile(readme_example("### In your own vision-Mamba model"), str(README), "exec"), namespace)
    ns = namespace
    expected = vmamba_core(ns["u"], ns["H"], ns["W"], ns["x_proj_weight"], ns["dt_projs_weight"],
                           ns["dt_projs_bias"], ns["A_logs"], ns["Ds"])
    assert ns["y"].shape == (ns["batch"], ns["H"] * ns["W"], ns["D"])
    assert ns["H"] != ns["W"], "a square map would not tell the row and column orders apart"
    torch.testing.assert_close(ns["y"], expected, rtol=1e-5, atol=1e-5)


def test_readme_ss2d_module_is_the_layer_written_out():
    torch.manual_seed(0)
    ns = {}
    exec(compile(readme_example("The whole layer is a module too"), str(README), "exec"), ns)
    layer, x = ns["layer"], ns["x"]
    with torch.no_grad():  # Mamba's initialisation leaves dt and D alike across directions: make them differ
        layer.ssm.D.normal_()
        layer.ssm.dt_proj_bias.normal_()
    batch, H, W, dim = x.shape
    u, z = layer.in_proj(x).chunk(2, dim=-1)
    u = torch.nn.functional.silu(layer.conv(u.permute(0, 3, 1, 2))).permute(0, 2, 3, 1).reshape(batch, H * W, -1)
    ssm = layer.ssm
    K, inner, N = ssm.A_log.shape
    core = vmamba_core(u, H, W, ssm.x_proj_weight, ssm.dt_proj_weight, ssm.dt_proj_bias,
                       ssm.A_log.reshape(K * inner, N), ssm.D.reshape(-1))
    expected = layer.out_proj(layer.out_norm(core).view(batch, H, W, -1) * torch.nn.functional.silu(z))
    assert ns["y"].shape == x.shape and H != W
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    # Channels-first input, or the wrong width, is refused by name rather than by a matmul's shapes.
    with pytest.raises(ValueError, match=r"SS2D\(96\) takes channels-last \(B, H, W, 96\) input, got \(2, 96, 12, "
                                         r"10\): for \(B, C, H, W\) input pass x.permute\(0, 2, 3, 1\)\."):
        layer(x.permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match=r"takes channels-last \(B, H, W, 96\) input, got \(12, 10, 96\)\.$"):
        layer(x[0])


def test_readme_restores_an_image_in_python(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from mambacsr.config import build_model, load_config
    from mambacsr.data.io import read_image_any, write_image

    code = readme_example("and restores an image:")
    checkpoint = re.search(r'"(runs/[^"]+\.safetensors)"', code).group(1)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    os.makedirs(os.path.dirname(checkpoint))
    save_file(build_model(load_config(["+experiment=dis_w8"])).state_dict(), checkpoint)
    photo = np.random.default_rng(0).integers(0, 256, (9, 14, 3), dtype=np.uint8)  # odd, not square
    write_image("photo.png", photo)
    exec(compile(code, str(README), "exec"), {})
    restored = read_image_any("photo_x4.png")
    assert restored.shape == (36, 56, 3) and restored.dtype == np.uint8
    assert restored.std() > 0  # an image, not a blank
