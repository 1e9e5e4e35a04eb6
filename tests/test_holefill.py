"""Push-pull hole filling, the non-learned peer of the FE network in disoccluded regions."""
import torch

from reframe_core.frames.holefill import push_pull_fill


def test_valid_pixels_are_kept_and_a_constant_fills_its_holes_exactly():
    image = torch.full((1, 3, 24, 20), 0.25)
    image[..., 5:9, 3:15] = 7.0  # garbage where the holes are
    valid = torch.ones(1, 1, 24, 20)
    valid[..., 5:9, 3:15] = 0
    out = push_pull_fill(image, valid)
    torch.testing.assert_close(out, torch.full_like(image, 0.25))


def test_a_hole_between_two_colours_takes_values_between_them_rising_across_it():
    image = torch.zeros(1, 1, 16, 32)
    image[..., 16:] = 1.0
    valid = torch.ones(1, 1, 16, 32)
    valid[..., :, 12:20] = 0  # a vertical band across the edge
    out = push_pull_fill(image, valid)
    row = out[0, 0, 8, 12:20]
    assert torch.equal(out[valid.expand_as(out) > 0], image[valid.expand_as(image) > 0])
    assert (row > 0).all() and (row < 1).all()
    assert (row[1:] >= row[:-1]).all() and row[-1] - row[0] > 0.3
