"""The differentiable LDR-FLIP (training loss) against NVIDIA's flip_evaluator (every reported figure)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reframe_core.evaluation.flip_torch import flip_map
from reframe_core.evaluation.metrics import flip, tonemap_ldr
from reframe_core.training import image_loss


def _to_torch(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].double()


def _scene(seed: int, h: int = 72, w: int = 96) -> np.ndarray:
    """Linear HDR colour with what the renders have: smooth shading, hard edges, fine texture, bright spots."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w]).reshape(2, 1, 1)
    base = 0.2 + 0.6 * x[..., None] * rng.random(3)
    base[(x - 0.6) ** 2 + (y - 0.4) ** 2 < 0.05] = rng.random(3) * 2  # a bright disc with a hard rim
    base *= 1 + 0.3 * np.sign(np.sin(40 * x + 25 * y))[..., None]  # stripes near the pixel pitch
    base[rng.random((h, w)) < 0.01] = 8.0  # fireflies, far above display white
    return base.astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_flip_evaluator_pixel_for_pixel(seed):
    reference = _scene(seed)
    rng = np.random.default_rng(100 + seed)
    blurred = F.avg_pool2d(torch.from_numpy(reference).permute(2, 0, 1)[None], 3, 1, 1,
                           count_include_pad=False)[0].permute(1, 2, 0).numpy()
    noisy = np.clip(reference * (1 + rng.normal(0, 0.2, reference.shape)), 0, None).astype(np.float32)
    for test in (blurred, noisy):
        expected = flip(reference, test)  # flip_evaluator, on the reports' tonemap
        ours = flip_map(_to_torch(tonemap_ldr(reference)), _to_torch(tonemap_ldr(test)))[0].numpy()
        assert expected.mean > 0.02
        assert np.abs(ours - expected.error_map).max() < 1e-4
        assert abs(float(ours.mean()) - expected.mean) < 1e-5


def test_flip_loss_has_finite_gradients_and_descends_the_evaluators_flip():
    reference = _scene(2)
    target = torch.from_numpy(reference).permute(2, 0, 1)[None]
    # Where the two images agree the metric's slope is infinite; the loss form must stay finite there.
    same = target.clone().requires_grad_(True)
    image_loss(same, target, "flip").backward()
    assert torch.isfinite(same.grad).all()

    start = F.avg_pool2d(target, 5, 1, 2, count_include_pad=False)  # a blurred guess, as an upscaler's
    guess = torch.log(start).requires_grad_(True)  # optimise in log space, so colour stays positive
    optimiser = torch.optim.Adam([guess], lr=0.02)
    for _ in range(60):
        optimiser.zero_grad()
        image_loss(guess.exp(), target, "flip").backward()
        optimiser.step()
    before = flip(reference, start[0].permute(1, 2, 0).numpy()).mean
    after = flip(reference, guess.detach().exp()[0].permute(1, 2, 0).numpy()).mean
    assert after < 0.5 * before, (before, after)
