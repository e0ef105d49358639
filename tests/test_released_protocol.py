"""The authors' test protocol (partitions mirrored to multiples of 64, put together without blending)."""

import numpy as np
import pytest
import torch

from mambacsr.released_protocol import restore_as_released


class Recorder(torch.nn.Module):
    """A x4 network that records the sizes it is given."""

    def __init__(self, body):
        super().__init__()
        self.body, self.sizes = body, []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        return self.body(x)


def local_sr():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 48, 3, padding=1), torch.nn.PixelShuffle(4))


@pytest.mark.parametrize("size", [(400, 300), (50, 37), (193, 385), (1, 1), (64, 128)])
def test_partitions_are_put_back_in_place(size):
    # Nearest upsampling commutes with cutting, mirroring and cropping: any misplaced partition would show.
    nearest = Recorder(torch.nn.Upsample(scale_factor=4, mode="nearest"))
    x = torch.rand(2, 3, *size)
    torch.testing.assert_close(restore_as_released(nearest, x, 4), nearest.body(x), rtol=0, atol=0)


def test_partitions_and_their_padding_follow_the_released_code():
    model = Recorder(torch.nn.Upsample(scale_factor=4, mode="nearest"))
    restore_as_released(model, torch.rand(1, 3, 400, 300), 4)
    # 400 rows: 3 partitions of 134 after reflecting 2 rows in, each widened by 33 into its neighbours (167, 200,
    # 167), mirrored up to 192, 256, 192; 300 columns: 2 of 150, widened by 37 to 187, mirrored to 192.
    assert model.sizes == [(192, 192), (192, 192), (256, 192), (256, 192), (192, 192), (192, 192)]
    model.sizes.clear()
    restore_as_released(model, torch.rand(1, 3, 128, 20), 4)
    assert model.sizes == [(192, 40)]  # a side of 128 grows to 192; one of 20 can only double


def test_a_partition_is_mirrored_with_its_edge_repeated():
    model = local_sr()
    x = torch.rand(1, 3, 50, 37)
    mirrored = torch.from_numpy(np.pad(x.numpy(), ((0, 0), (0, 0), (0, 14), (0, 27)), mode="symmetric"))
    with torch.no_grad():
        expected = model(mirrored)[..., :200, :148]
    torch.testing.assert_close(restore_as_released(model, x, 4), expected)
