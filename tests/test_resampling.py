"""Whole-number up-sampling by phases against grid_sample reading each display pixel's own position."""
import pytest
import torch
import torch.nn.functional as F

from reframe_core.networks.resampling import upsample_by_phases, whole_scale


def grid_sampled(image, jitter, scale, mode):
    """grid_sample at each display pixel centre, mapped to low-res coordinates, minus the jitter."""
    b, _, h, w = image.shape
    H, W = h * scale, w * scale
    xs = ((torch.arange(W, dtype=torch.float64) + 0.5) / scale - jitter[:, 0, None, None].double()) / w * 2 - 1
    ys = ((torch.arange(H, dtype=torch.float64)[:, None] + 0.5) / scale - jitter[:, 1, None, None].double()) / h * 2 - 1
    grid = torch.stack([xs.expand(b, H, W), ys.expand(b, H, W)], -1)
    return F.grid_sample(image.double(), grid, mode=mode, padding_mode="border", align_corners=False).float()


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("scale", [2, 3])
def test_phases_are_grid_sample_at_whole_number_scales(mode, scale):
    image = torch.rand(3, 4, 7, 9, generator=torch.Generator().manual_seed(scale))
    # Jitters on both sides of zero, a quarter (phase offsets land on whole pixels) and the -0.5 extreme.
    jitter = torch.tensor([[0.1, -0.3], [0.25, -0.25], [-0.5, 0.49]])
    torch.testing.assert_close(upsample_by_phases(image, jitter, scale, mode), grid_sampled(image, jitter, scale, mode),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("source", ["channels-first", "channels-last"])
def test_phases_write_into_a_slice_of_a_channels_last_tensor(source):
    image = torch.rand(1, 3, 5, 6, generator=torch.Generator().manual_seed(0))
    jitter = torch.tensor([[-0.2, 0.35]])
    target = torch.zeros(1, 8, 10, 12).contiguous(memory_format=torch.channels_last)
    given = image.contiguous(memory_format=torch.channels_last) if source == "channels-last" else image
    returned = upsample_by_phases(given, jitter, 2, "bicubic", out=target[:, 2:5])
    assert returned.data_ptr() == target[:, 2:5].data_ptr()
    torch.testing.assert_close(target[:, 2:5], grid_sampled(image, jitter, 2, "bicubic"), rtol=1e-5, atol=1e-5)
    assert target[:, :2].abs().sum() == 0 and target[:, 5:].abs().sum() == 0


def test_whole_scale_and_refusals():
    assert whole_scale((128, 96), (256, 192)) == 2 and whole_scale((90, 160), (270, 480)) == 3
    assert whole_scale((128, 96), (192, 144)) is None  # 1.5x
    assert whole_scale((128, 96), (256, 288)) is None  # not the same factor on both axes
    assert whole_scale((128, 96), (128, 96)) is None
    with pytest.raises(ValueError, match="not 'nearest'"):
        upsample_by_phases(torch.rand(1, 1, 4, 4), torch.zeros(1, 2), 2, "nearest")
