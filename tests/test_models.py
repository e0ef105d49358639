"""The networks: parameter counts, configs, any input size, a CPU training step, the scan pattern."""

import pytest
import torch

from mambacsr.complexity import count_complexity
from mambacsr.config import available_experiments, build_model, load_config
from mambacsr.models import SelfEnsemble, block_directions
from mambacsr.models.networks import half_resolution
from scan2d import ScanDirection
from scan2d._backend import deterministic_algorithms
from tiny import tiny_mambacsr, tiny_mambair

EXPECTED_PARAMS = {
    # Released counts; ours drops the 360x180 z half of the low-resolution input projection that the released
    # forward pass computes and never uses.
    "dis_w8": 22_051_842 - 64_800,
    "dis_w8_noxs": 18_372_603,
    "mambair": 20_569_575,
}


@pytest.mark.parametrize("experiment", sorted(EXPECTED_PARAMS))
def test_parameter_counts(experiment):
    model = build_model(load_config([f"+experiment={experiment}"]))
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_PARAMS[experiment]


def test_every_experiment_composes_and_builds():
    names = available_experiments()
    assert {"dis_w8", "dis_w8_noxs", "mambair", "dis_w4", "dis_w64", "xs_sequential"} <= set(names)
    for name in names:
        cfg = load_config([f"+experiment={name}", "model.depths=[1]", "model.embed_dim=12"])
        model = build_model(cfg)
        assert model(torch.rand(1, 3, 5, 7)).shape == (1, 3, 20, 28), name


@pytest.mark.parametrize("experiment", ["demo_cpu", "mambair"])
@pytest.mark.parametrize("override,message", [
    ("model.d_state=0", "model.d_state=0: expected a state size, at least 1"),  # built a network that scans nothing
    ("model.embed_dim=0", "model.embed_dim=0: expected a channel count"),
    ("model.depths=[2,0]", r"model.depths=\[2, 0\]: expected blocks per group, each at least 1"),
    ("model.depths=[]", r"model.depths=\[\]: expected blocks per group"),
    ("model.upscale=1", "model.upscale=1: expected 3 or a power of two, at least 2"),
    ("model.drop_path_rate=1.0", r"model.drop_path_rate=1.0: expected a rate in \[0, 1\)"),
])
def test_sizes_no_network_can_have_are_clear_errors(experiment, override, message):
    # build_model raises the network's own ValueError, not Hydra's wrapper, so the tools print it as they print theirs.
    with pytest.raises(ValueError, match=message):
        build_model(load_config([f"+experiment={experiment}", override]))


def test_mambacsr_refuses_a_negative_mlp_ratio():  # was PyTorch's "negative dimension -24"
    with pytest.raises(ValueError, match="model.mlp_ratio=-1.0: expected a ratio above 0"):
        build_model(load_config(["+experiment=demo_cpu", "model.mlp_ratio=-1.0"]))


@pytest.mark.parametrize("override", ["model.cross_scale.released_layout=maybe", "model.cross_scale.enabled=1",
                                      "model.cab=yes", "model.scan_pattern.hierarchical=0"])
def test_mambacsr_switches_take_true_or_false_only(override):
    # Each was read as Python truth: "maybe", "yes" and 1 switched the option on, 0 off, without a word.
    key, _, value = override.partition("=")
    with pytest.raises(ValueError, match=f"{key}={value!r}: expected true or false" if value.isalpha()
                       else f"{key}={value}: expected true or false"):
        build_model(load_config(["+experiment=demo_cpu", override]))


def test_unknown_experiment_is_a_clear_error():
    with pytest.raises(ValueError, match="experiment 'dis_w9' does not exist; choose one of: .*dis_w8"):
        load_config(["+experiment=dis_w9"])


def test_released_dis_pattern():
    names = [[d.name for d in block_directions(i)] for i in range(6)]
    assert names == [["w8", "w8_flip"], ["c_w8", "c_w8_flip"], ["w64", "w64_flip"], ["c_w64", "c_w64_flip"],
                     ["w8", "w8_flip"], ["c_w8", "c_w8_flip"]]
    assert [d.name for d in block_directions(1, hierarchical=True, horizontal_to_vertical=False)] == \
        ["w64", "w64_flip", "c_w64", "c_w64_flip"]
    assert [d.name for d in block_directions(2, hierarchical=False, horizontal_to_vertical=True)] == ["w8", "w8_flip"]
    assert all(d.window == 8 for i in range(4)
               for d in block_directions(i, hierarchical=False, horizontal_to_vertical=False))


def test_dis_w8_blocks_scan_the_released_directions():
    model = build_model(load_config(["+experiment=dis_w8", "model.depths=[6]"]))
    blocks = model.groups[0].blocks
    assert [d.name for d in blocks[2].ss2d.directions] == ["w64", "w64_flip"]
    assert [d.name for d in model.low_group.blocks[1].ss2d.directions] == ["c_w8", "c_w8_flip"]
    assert model.cross_block.ss2d.directions == (
        ScanDirection(16, False, False, "aligned"), ScanDirection(16, False, True, "aligned"),
        ScanDirection(16, True, False, "aligned"), ScanDirection(16, True, True, "aligned"))


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 3), (13, 10), (9, 17), (24, 4)])
@pytest.mark.parametrize("build", [lambda: tiny_mambacsr("aligned"), lambda: tiny_mambacsr("sequential"),
                                   lambda: tiny_mambacsr(cross_scale=False), tiny_mambair])
def test_any_input_size_gives_four_times_the_size(build, size):
    model = build().eval()
    out = model(torch.rand(2, 3, *size))
    assert out.shape == (2, 3, 4 * size[0], 4 * size[1])
    assert torch.isfinite(out).all()


def test_batch_items_are_independent():
    model = tiny_mambacsr().eval()
    x = torch.rand(3, 3, 7, 9)
    torch.testing.assert_close(model(x)[1:2], model(x[1:2]), rtol=1e-4, atol=1e-5)


def test_training_step_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = tiny_mambacsr()
    lr = torch.rand(2, 3, 8, 8)
    hr = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(12):
        loss = torch.nn.functional.l1_loss(model(lr), hr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert all(p.grad is not None for n, p in model.named_parameters()), "a parameter got no gradient"


@pytest.mark.parametrize("bad, match", [
    (torch.rand(3, 8, 8), r"shape \(batch, channels, height, width\)"),
    (torch.randint(0, 255, (1, 3, 8, 8), dtype=torch.uint8), "float image batch"),
    (torch.rand(1, 4, 8, 8), "expects 3 input channels"),
])
def test_bad_images_are_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        tiny_mambacsr()(bad)


@pytest.mark.parametrize("size", [(8, 8), (7, 5), (1, 3)])
def test_half_resolution_in_deterministic_mode_is_the_same_bilinear_resize(size):
    # Deterministic mode swaps F.interpolate (whose CUDA backward uses atomics) for two matmuls with its weights.
    x = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)
    expected = torch.nn.functional.interpolate(x, size=((size[0] + 1) // 2, (size[1] + 1) // 2), mode="bilinear",
                                               align_corners=False)
    with deterministic_algorithms(True):
        low = half_resolution(x)
    torch.testing.assert_close(low, expected)
    w = torch.randn(expected.shape, dtype=torch.float64)
    torch.testing.assert_close(torch.autograd.grad((low * w).sum(), x)[0],
                               torch.autograd.grad((expected * w).sum(), x)[0])
    # Like F.interpolate, it keeps its input's precision under bf16 autocast.
    with torch.autocast("cpu", dtype=torch.bfloat16), deterministic_algorithms(True):
        assert half_resolution(x.detach().float()).dtype == torch.float32


def test_complexity_counts_scan_flops_by_hand():
    model = tiny_mambair()  # one group of two blocks, four global directions each, inner 24, N 4
    result = count_complexity(model, 6, 5)
    assert result.scan_flops == 2 * 4 * 9 * 1 * 30 * 24 * 4
    assert result.params == sum(p.numel() for p in model.parameters())
    assert result.macs > 0


def test_model_forward_and_backward_agree_across_backends():
    torch.manual_seed(0)
    # One RLMB per group, one low-resolution block and the cross-scale block: every kind of scan layer.
    # On a GPU machine the kernels run compiled (conftest leaves the interpreter off), so the models go there.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_model = tiny_mambacsr(depths=(1, 1), low_depth=1, scan_backend="torch").to(device)
    triton_model = tiny_mambacsr(depths=(1, 1), low_depth=1, scan_backend="triton").to(device)
    triton_model.load_state_dict(torch_model.state_dict())
    x = torch.rand(1, 3, 5, 4, device=device)
    outs, grads = [], []
    for model in (torch_model, triton_model):
        out = model(x)
        out.square().mean().backward()
        outs.append(out)
        grads.append({n: p.grad for n, p in model.named_parameters()})
    torch.testing.assert_close(outs[1], outs[0], rtol=6e-4, atol=2e-3)
    for name, g in grads[0].items():
        scale = g.abs().max() + 1e-3
        torch.testing.assert_close(grads[1][name] / scale, g / scale, rtol=6e-4, atol=2e-3, msg=name)


def test_the_papers_figures_in_the_experiment_configs_are_well_formed():
    """Every experiment of Tables 1-3, 5 and 6 carries its row (evaluate prints it beside ours), at the quality the
    experiment trains at, on the benchmarks evaluate knows, with numbers in the range of the paper's."""
    from mambacsr.evaluate import BENCHMARKS, paper_results

    with_figures = 0
    for name in available_experiments():
        cfg = load_config([f"+experiment={name}"])
        table = (cfg.get("paper") or {}).get("table") or ""
        results = paper_results(cfg.get("paper"))
        if not table.startswith(("Table 1", "Table 2", "Table 3", "Table 5", "Table 6")):
            assert not results, name  # Table 4's text lost its check marks: which row is which is not known
            continue
        with_figures += 1
        assert list(results) == [cfg.data.quality], (name, list(results), cfg.data.quality)
        (per_set,) = results.values()
        expected = {"Manga109", "Urban100"} if table.startswith(("Table 2", "Table 3")) else set(BENCHMARKS)
        assert set(per_set) == expected, name
        for benchmark, (psnr, ssim) in per_set.items():
            assert 21 < psnr < 28 and 0.59 < ssim < 0.82, (name, benchmark, psnr, ssim)
    assert with_figures == 12


def test_self_ensemble_averages_the_eight_rotations_and_flips():
    model = tiny_mambacsr().eval()
    x = torch.rand(1, 3, 10, 13)  # not square: the transposed views are 13 x 10
    with torch.no_grad():
        ours = SelfEnsemble(model)(x)
        # The eight views written another way: rotations by k quarter turns, of x and of x mirrored.
        expected = sum(torch.rot90(model(torch.rot90(x, k, (2, 3))), -k, (2, 3)) for k in range(4))
        expected = expected + sum(torch.rot90(model(torch.rot90(x.flip(3), k, (2, 3))), -k, (2, 3)).flip(3)
                                  for k in range(4))
        expected = expected / 8
        assert ours.shape == (1, 3, 40, 52)
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
        assert (ours - model(x)).abs().max() > 1e-4  # the network is not symmetric: the views add something
        # A network that commutes with flips and rotations is its own ensemble.
        nearest = torch.nn.Upsample(scale_factor=4, mode="nearest")
        torch.testing.assert_close(SelfEnsemble(nearest)(x), nearest(x))
