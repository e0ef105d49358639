"""The released cross-scale block's placement of its column-first outputs on non-square maps, reproduced."""

import pytest
import torch

import scan2d
from mambacsr.models.released_layout import directional_scan_as_released, moved_directions, released_positions
from mambacsr.models.ss2d import SS2D
from scan2d.directional.reference import scan_directions_raster

from tiny import tiny_mambacsr

DIRECTIONS = [scan2d.ScanDirection.parse(name, "aligned") for name in ("w4", "c_w4", "w4_flip", "c_w4_flip")]


def test_positions_worked_by_hand():
    # A 4x2 map of two 2x2 windows, one above the other.  Scanned column by column, window k = col * 2 + row; read
    # back as row-major on a grid of one column, window k lands in grid row k, and the map is read as 2 rows of 4:
    # the pixels of rows 1 and 2 trade places.
    assert released_positions(4, 2, 2).view(4, 2).tolist() == [[0, 1], [4, 5], [2, 3], [6, 7]]
    # A 2x4 map [[a b c d], [e f g h]] of two windows side by side comes back as [[a b e f], [c d g h]].
    assert released_positions(2, 4, 2).view(2, 4).tolist() == [[0, 1, 4, 5], [2, 3, 6, 7]]


@pytest.mark.parametrize("height,width,window", [(32, 32, 16), (16, 48, 8), (64, 48, 16), (6, 4, 2)])
def test_positions_are_a_permutation_and_the_identity_on_square_maps(height, width, window):
    positions = released_positions(height, width, window)
    assert sorted(positions.tolist()) == list(range(height * width))
    assert torch.equal(positions, torch.arange(height * width)) == (height == width)


def test_only_maps_of_whole_windows_have_a_released_placement():
    with pytest.raises(ValueError, match="not a whole number of 16x16 windows"):
        released_positions(24, 32, 16)
    assert moved_directions(DIRECTIONS, 8, 12) == [1, 3]
    assert moved_directions(DIRECTIONS, 8, 8) == []       # square: nothing moves
    assert moved_directions(DIRECTIONS, 8, 10) == []      # the released code cannot scan it; placed correctly
    plain = [scan2d.ScanDirection.parse("c_w4"), scan2d.ScanDirection.parse("c_w4", "sequential")]
    assert moved_directions(plain, 8, 12) == []
    mixed = [scan2d.ScanDirection.parse(name, "aligned") for name in ("c_w2", "c_w4")]
    with pytest.raises(ValueError, match=r"column-first cross-scale directions with windows \[2, 4\]"):
        directional_scan_as_released(**scan_inputs(8, 12, K=2), directions=mixed, height=8, width=12)


def scan_inputs(height, width, K=4, dim=6, n_state=4, rank=2, batch=2):
    g = torch.Generator().manual_seed(height * 100 + width)
    low = ((height + 1) // 2) * ((width + 1) // 2)

    def rand(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    return dict(u=rand(batch, height * width, dim), xdbl=rand(batch, height * width, K, rank + 2 * n_state),
                dt_weight=rand(K, dim, rank, scale=0.5), dt_bias=rand(K, dim, scale=0.5) - 1.0,
                A=-torch.rand(K, dim, n_state, generator=g) - 0.5, D=rand(K, dim),
                u_low=rand(batch, low, dim), xdbl_low=rand(batch, low, K, rank + 2 * n_state))


def gate():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(6, 3), torch.nn.GELU(), torch.nn.Linear(3, 6), torch.nn.Sigmoid())
    return scan2d.ChannelGate(torch.rand(6) + 0.5, torch.randn(6) * 0.1, 1e-5, module)


def expected_as_released(inputs, height, width, spec):
    """Each direction's raster output; the column-first ones scattered to where the released code writes each pixel;
    gated by their own pooled outputs (which the move does not change) and summed."""
    args = {k: v for k, v in inputs.items() if k not in ("u_low", "xdbl_low")}
    ys = scan_directions_raster(**args, directions=DIRECTIONS, height=height, width=width, u_low=inputs["u_low"],
                                xdbl_low=inputs["xdbl_low"])  # (batch, K, L, dim)
    weights = spec.excite(spec.pool(ys))  # (batch, K, dim)
    placed = ys.clone()
    for k, d in enumerate(DIRECTIONS):
        if d.column_first:
            placed[:, k, released_positions(height, width, 4)] = ys[:, k]
    return (placed * weights[:, :, None]).sum(1)


@pytest.mark.parametrize("height,width", [(8, 12), (12, 4)])
def test_layer_sum_moves_the_column_first_outputs(height, width):
    inputs, spec = scan_inputs(height, width), gate()
    got = directional_scan_as_released(**inputs, directions=DIRECTIONS, height=height, width=width, gate=spec,
                                       backend="torch")
    torch.testing.assert_close(got, expected_as_released(inputs, height, width, spec))
    correct = scan2d.directional_scan(**inputs, directions=DIRECTIONS, height=height, width=width, gate=spec)
    assert (got - correct).abs().max() > 1e-2


def test_triton_kernels_run_the_released_placement():
    inputs, spec = scan_inputs(8, 4, batch=1), gate()
    got = directional_scan_as_released(**inputs, directions=DIRECTIONS, height=8, width=4, gate=spec,
                                       backend="triton")
    torch.testing.assert_close(got, expected_as_released(inputs, 8, 4, spec), rtol=6e-4, atol=2e-3)


@pytest.mark.parametrize("height,width", [(8, 8), (8, 10)])
def test_maps_without_a_released_placement_are_scanned_as_ours(height, width):
    inputs, spec = scan_inputs(height, width), gate()
    got = directional_scan_as_released(**inputs, directions=DIRECTIONS, height=height, width=width, gate=spec)
    torch.testing.assert_close(got, scan2d.directional_scan(**inputs, directions=DIRECTIONS, height=height,
                                                            width=width, gate=spec), rtol=0, atol=0)


def test_the_network_takes_the_option_from_its_config():
    torch.manual_seed(0)
    ours, released = tiny_mambacsr(), tiny_mambacsr(released_layout=True)
    released.load_state_dict(ours.state_dict())
    assert released.cross_block.ss2d.released_layout and not ours.cross_block.ss2d.released_layout
    with torch.no_grad():
        square = torch.rand(1, 3, 8, 8)
        torch.testing.assert_close(released(square), ours(square), rtol=0, atol=0)
        # At initialisation the residual paths hide the block's change in the network's output: compare the block.
        # Its out_proj starts small (std 0.02), so the change is ~1e-3, against ~1e-7 from summing in another order.
        wide, wide_low = torch.randn(1, 8, 16, 12), torch.randn(1, 4, 8, 12)
        change = released.cross_block(wide, wide_low) - ours.cross_block(wide, wide_low)
        assert change.abs().max() > 1e-4


def test_the_layer_gradients_flow_through_both_parts():
    layer = SS2D(6, DIRECTIONS, 4, cross_scale=True, released_layout=True)
    x, x_low = torch.randn(1, 8, 12, 6, requires_grad=True), torch.randn(1, 4, 6, 6)
    layer(x, x_low).square().sum().backward()
    grads = layer.ssm.dt_proj_weight.grad
    assert grads is not None and all(grads[k].abs().sum() > 0 for k in range(len(DIRECTIONS)))
