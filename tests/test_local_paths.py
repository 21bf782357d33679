"""Local paths: edits that follow a code-level network's gradient, with the class network's gradient projected out."""

import numpy as np
import pytest
import torch

from vaelab.analysis.local_paths import SUBSTEPS, LocalPaths
from vaelab.errors import VaelabError


@pytest.fixture(scope="module")
def planted():
    """Codes in 6 dimensions: the attribute rises along `rise` (dimensions 0 and 1); the class is the sign of
    dimension 1, so a path up the attribute that keeps the class must leave dimension 1 alone."""
    generator = np.random.default_rng(0)
    codes = generator.normal(size=(3000, 6))
    rise = np.array([1.0, 1.0, 0.0, 0.0, 0.0, 0.0]) / np.sqrt(2.0)
    attribute = codes @ rise + 0.05 * generator.normal(size=3000)
    labels = (codes[:, 1] > 0).astype(np.int64)
    return codes, {"thickness": attribute}, labels, rise


def test_a_path_without_a_class_to_hold_follows_the_attributes_gradient(planted):
    codes, attributes, _, rise = planted
    paths = LocalPaths.fit(codes, attributes, None)
    start = torch.from_numpy(codes[:50]).float()
    steps = paths.direction("thickness", start, None)
    assert torch.allclose(steps.norm(dim=1), torch.ones(50), atol=1e-5)
    assert (steps.double().numpy() @ rise).mean() > 0.95


def test_holding_the_class_leaves_the_dimension_that_decides_it_and_keeps_every_class(planted):
    codes, attributes, labels, _ = planted
    paths = LocalPaths.fit(codes, attributes, labels)
    start = torch.from_numpy(codes[:200]).float()
    walked = paths.walk("thickness", start, [-2.0, 0.0, 2.0], scale=1.0)
    assert walked.shape == (200, 3, 6) and torch.equal(walked[:, 1], start)  # amount 0 is the code itself
    moved = walked[:, 2] - walked[:, 0]
    assert moved[:, 0].mean() > 2.0  # up the attribute along the dimension the class does not use
    assert moved[:, 1].abs().mean() < 0.3 * moved[:, 0].mean()
    kept = [(paths.classes(walked[:, k]) == paths.classes(start)).float().mean() for k in (0, 2)]
    assert min(kept) > 0.95


def test_paths_round_trip_through_safetensors_and_an_unknown_attribute_is_one_line(planted, tmp_path):
    codes, attributes, labels, _ = planted
    paths = LocalPaths.fit(codes[:500], {"thickness": attributes["thickness"][:500]}, labels[:500])
    paths.save(tmp_path / "directions.safetensors")
    loaded = LocalPaths.load(tmp_path / "directions.safetensors")
    start = torch.from_numpy(codes[:20]).float()
    amounts = [0.0, 0.5, 1.0, 1.0 + 1.0 / SUBSTEPS]
    assert torch.equal(loaded.walk("thickness", start, amounts, 0.7), paths.walk("thickness", start, amounts, 0.7))
    with pytest.raises(VaelabError, match="no local path for 'slant'"):
        loaded.walk("slant", start, amounts, 0.7)
    (tmp_path / "broken.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(VaelabError, match="unreadable .*run `vaelab directions"):
        LocalPaths.load(tmp_path / "broken.safetensors")
