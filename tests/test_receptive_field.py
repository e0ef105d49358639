"""The effective receptive field tool (the paper's Fig. 4): exact fields of networks whose reach is known."""

import json

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from mambacsr import receptive_field
from mambacsr.data.datasets import embedded_images
from mambacsr.models.scan_pattern import parse_directions
from mambacsr.models.ss2d import SS2D
from mambacsr.receptive_field import effective_receptive_field, picture, square_shares



def x4(*convs):
    """convs on the LR grid, then a x4 pixel shuffle: the central output pixel reads one LR pixel's neighbourhood."""
    torch.manual_seed(0)
    return nn.Sequential(*convs, nn.Conv2d(convs[-1].out_channels, 48, 1), nn.PixelShuffle(4)).eval()


def crops(n=2, size=16):
    g = torch.Generator().manual_seed(1)
    return [torch.rand(1, 3, size, size, generator=g) for _ in range(n)]


def reach(field):
    """Rows and columns of the map where the field is not zero."""
    rows, cols = np.nonzero(field)
    return (rows.min(), rows.max()), (cols.min(), cols.max())


def test_a_convolution_reaches_its_kernel_and_two_reach_further():
    # The central output pixel (32, 32) of a 16x16 input comes from LR pixel (8, 8).
    assert reach(effective_receptive_field(x4(nn.Conv2d(3, 8, 3, padding=1)), crops())) == ((7, 9), (7, 9))
    two = x4(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 5, padding=2))
    assert reach(effective_receptive_field(two, crops())) == ((5, 11), (5, 11))


class ScanNet(nn.Module):
    """A x4 network around one scan layer without a channel gate: what reaches the central pixel is what its scans
    reach (the gate, like CAB, pools over the whole map, so MambaCSR's blocks reach everything a little)."""

    def __init__(self, names):
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.ss2d = nn.Linear(3, 8), SS2D(8, parse_directions(names), 4, channel_gate=False)
        self.head, self.shuffle = nn.Linear(8, 48), nn.PixelShuffle(4)

    def forward(self, x):
        y = self.head(self.ss2d(self.embed(x.permute(0, 2, 3, 1))))
        return self.shuffle(y.permute(0, 3, 1, 2))


def test_a_scan_reaches_what_it_has_visited_by_the_centre():
    # "w4" visits the 4x4 windows in raster order, each in raster order, and carries its state from window to window:
    # by LR pixel (16, 16), the first of its window, it has visited rows 0-15 and the windows left of it in rows 16-19.
    # The depthwise 3x3 convolution before the scan widens that by one pixel; nothing visited later is reached.
    field = effective_receptive_field(ScanNet(["w4"]).eval(), crops(1, 32))
    assert field[21:].max() == 0 and field[18:, 17:].max() == 0 and field[17, 18:].max() == 0
    assert min(field[17, 17], field[20, 16], field[0, 31]) > 0  # (0, 31): the first window row, through the state
    # Column-first is the transpose, and a global scan with its reverse reaches every corner.
    field = effective_receptive_field(ScanNet(["c_w4"]).eval(), crops(1, 32))
    assert field[:, 21:].max() == 0 and field[17:, 18:].max() == 0 and min(field[16, 20], field[31, 0]) > 0
    field = effective_receptive_field(ScanNet(["global", "global_flip"]).eval(), crops(1, 32))
    assert all(field[r, c] > 0 for r in (0, 31) for c in (0, 31))


def test_square_shares_worked_by_hand():
    field = np.zeros((5, 5))
    field[2, 2] = 2.0
    field[1:4, 1:4] += 1.0  # a ring of eight ones around a centre of three: total 11
    shares = square_shares(field, (0.2, 0.3, 0.99, 1.0))
    assert shares[0.2] == {"side": 1, "area": 1 / 25}      # 3 of 11 at the centre
    assert shares[0.3] == {"side": 3, "area": 9 / 25}
    assert shares[1.0] == {"side": 3, "area": 9 / 25}
    edge = np.zeros((4, 6))
    edge[0, 0] = 1.0  # only a square cut at the map's edges holds it
    assert square_shares(edge, (0.5,))[0.5] == {"side": 7, "area": 1.0}


def test_the_picture_is_a_log_scale_over_three_decades():
    field = np.array([[1.0, 0.1], [0.001, 0.0]])
    img = picture(field)
    assert img.shape == (512, 512, 3) and img.dtype == np.uint8
    ramp = cv2.applyColorMap(np.array([[255, 170, 0, 0]], np.uint8), cv2.COLORMAP_VIRIDIS)[0]
    np.testing.assert_array_equal(img[[0, 0, 511, 511], [0, 511, 0, 511]], ramp)


def test_the_tool_writes_the_map_its_picture_and_its_summary(tmp_path, capsys):
    hr = tmp_path / "Manga109" / "HR"
    hr.mkdir(parents=True)
    (tmp_path / "Manga109" / "none").mkdir()
    for name, image in zip(("a", "b", "small"), embedded_images(["chelsea", "astronaut"]) + [np.zeros((40, 40, 3))]):
        cv2.imwrite(str(hr / f"{name}.png"), image[:128, :128, ::-1].astype(np.uint8))
    common = ["+experiment=demo_cpu", "model.embed_dim=8", "model.depths=[1]", "model.d_state=4",
              "model.cross_scale.low_depth=1", f"data_root={tmp_path / 'Manga109'}", "size=16"]
    assert receptive_field.main([*common, f"out={tmp_path / 'erf'}"]) == 0
    printed = capsys.readouterr()
    assert "no checkpoint=, so the network as initialised" in printed.err
    assert "1 image(s) smaller than size=16 LR pixels skipped (first: small)" in printed.err
    field = np.load(tmp_path / "erf.npy")
    summary = json.loads((tmp_path / "erf.json").read_text())
    assert field.shape == (16, 16) and field[8, 8] > 0 and summary["images"] == 2
    assert summary["shares"]["50%"] == square_shares(field)[0.5]
    assert f"50% of the total within the central {summary['shares']['50%']['side']}x" in printed.out
    assert cv2.imread(str(tmp_path / "erf.png")).shape == (512, 512, 3)
    for option, says in (("size=200", "no image is at least 200x200 LR pixels; pass a smaller size=."),
                         ("quality=0", "quality=0: pass a whole number from 1 to 100."),
                         (f"data_root={tmp_path / 'Manga109' / 'none'}", "Manga109/none holds no images")):
        assert receptive_field.main([*common, f"out={tmp_path / 'x'}", option]) == 1
        assert says in capsys.readouterr().err


@pytest.mark.parametrize("option", ["images=0", "size=abc"])
def test_bad_numbers_are_clear_errors(tmp_path, capsys, option):
    (tmp_path / "img.png").write_bytes(cv2.imencode(".png", np.zeros((64, 64, 3), np.uint8))[1].tobytes())
    assert receptive_field.main(["+experiment=demo_cpu", f"data_root={tmp_path}", option]) == 1
    name = option.split("=")[0]
    assert f"error: {option}: pass a whole number, at least 1." in capsys.readouterr().err, name
