import torch
import torch.nn.functional as F

from vaelab.data import load_split, to_float
from vaelab.evaluation.sample_metrics import sharpness


def test_sharpness_falls_monotonically_as_real_images_are_blurred():
    images = to_float(load_split("mnist", "test").images[:256])
    kernel = torch.ones(1, 1, 3, 3) / 9.0
    values, blurred = [sharpness(images)], images
    for _ in range(3):
        blurred = F.conv2d(blurred, kernel, padding=1)
        values.append(sharpness(blurred))
    assert values == sorted(values, reverse=True) and values[-1] < 0.6 * values[0]


def test_sharpness_of_a_linear_ramp_is_its_slope():
    ramp = torch.linspace(0, 1, 28).repeat(28, 1).view(1, 1, 28, 28)
    assert abs(sharpness(ramp) - 1 / 27) < 1e-6
    assert sharpness(torch.full((1, 1, 28, 28), 0.5)) == 0.0
