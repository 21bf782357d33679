import dataclasses
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vaelab.data import (
    fetch,
    iterate_batches,
    load_split,
    prepare_inputs,
    random_flip,
    random_rotation,
    random_translation,
    rotate,
)
from vaelab.data.catalog import DATASETS, describe
from vaelab.data.fashion_mnist import DEBIAN_FOLDER as DEBIAN_FASHION_MNIST_DIR
from vaelab.data.idx import parse_idx
from vaelab.data.sources import data_root, read_verified
from vaelab.errors import VaelabError

MNIST_TEST_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_splits_have_published_sizes_shapes_and_dtypes(name):
    train, val, test = (load_split(name, s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (55_000, 5_000, 10_000)
    for split in (train, val, test):
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (1, 28, 28)
        assert split.labels.dtype == torch.int64 and split.labels.shape == (len(split),)
        assert set(split.labels.unique().tolist()) == set(range(10))
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0


def test_label_counts_match_the_published_test_set():
    assert torch.bincount(load_split("mnist", "test").labels).tolist() == MNIST_TEST_CLASS_COUNTS
    assert torch.bincount(load_split("fashion-mnist", "test").labels).tolist() == [1000] * 10
    train_and_val = torch.cat([load_split("fashion-mnist", s).labels for s in ("train", "val")])
    assert torch.bincount(train_and_val).tolist() == [6000] * 10


def test_validation_split_is_disjoint_from_train_and_fixed_by_seed():
    train, val = load_split("mnist", "train"), load_split("mnist", "val")
    train_rows = {bytes(img.numpy()) for img in train.images[:20000]}
    assert not any(bytes(img.numpy()) in train_rows for img in val.images[:500])
    again = load_split("mnist", "val")
    other = load_split("mnist", "val", split_seed=1)
    assert torch.equal(val.images, again.images)
    assert not torch.equal(val.images, other.images)


def _copy_cache(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(data_root() / name, target)
    return tmp_path


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupted_file_fails_checksum_with_a_clear_error(tmp_path, damage):
    root = _copy_cache(tmp_path, "mnist")
    path = root / "mnist" / "t10k-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[100] ^= 0xFF
    else:
        data = data[:-7]
    path.write_bytes(bytes(data))
    with pytest.raises(VaelabError, match=r"t10k-labels-idx1-ubyte fails its SHA-256 check.*vaelab data fetch mnist"):
        load_split("mnist", "test", root=root)


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST_DIR.exists(), reason="needs the Debian dataset-fashion-mnist package")
def test_fetch_replaces_a_corrupted_cached_file_with_a_verified_copy(tmp_path, monkeypatch):
    # Offline, so the test proves the Debian copy is used even on a machine with internet.
    monkeypatch.setitem(DATASETS, "fashion-mnist", dataclasses.replace(DATASETS["fashion-mnist"], mirrors=()))
    root = _copy_cache(tmp_path, "fashion-mnist")
    path = root / "fashion-mnist" / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    messages = []
    fetch("fashion-mnist", root, log=messages.append)
    assert any("fails its SHA-256 check" in m for m in messages)
    read_verified(describe("fashion-mnist"), "t10k-labels-idx1-ubyte", root)  # passes now
    assert (path.parent / "t10k-labels-idx1-ubyte.corrupt").exists()


def test_unknown_dataset_names_the_choices():
    with pytest.raises(VaelabError, match="unknown dataset 'cifar'; choose one of: mnist, fashion-mnist"):
        describe("cifar")


def test_idx_reader_rejects_bad_magic_and_wrong_length():
    raw = gzip.decompress((DEBIAN_FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes()) \
        if DEBIAN_FASHION_MNIST_DIR.exists() else (data_root() / "mnist" / "t10k-labels-idx1-ubyte").read_bytes()
    assert parse_idx(raw).shape == (10_000,)
    with pytest.raises(VaelabError, match="bad magic"):
        parse_idx(b"\x01" + raw[1:])
    with pytest.raises(VaelabError, match="header promises"):
        parse_idx(raw[:-3])


def test_fixed_binarization_is_reproducible_and_dynamic_draws_differ():
    images = load_split("mnist", "test").images[:64]
    a, b = prepare_inputs(images, "binarized", 0), prepare_inputs(images, "binarized", 0)
    assert torch.equal(a, b) and set(a.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(a, prepare_inputs(images, "binarized", 1))
    gray = prepare_inputs(images, "intensities")
    assert gray.shape == (64, 1, 28, 28) and gray.min() >= 0.0 and gray.max() <= 1.0
    # The binarized image keeps the intensities' mean in expectation.
    assert abs(a.mean().item() - gray.mean().item()) < 0.01


def test_batches_cover_every_index_once():
    seen = torch.cat(list(iterate_batches(1000, 64, torch.Generator().manual_seed(0))))
    assert np.array_equal(np.sort(seen.numpy()), np.arange(1000))
    assert sum(len(b) for b in iterate_batches(1000, 64, drop_last=True)) == 960


def test_random_translation_moves_each_image_by_its_own_whole_pixel_offset_within_the_bound():
    images = prepare_inputs(load_split("mnist", "test").images[:200], "intensities")
    # Digits with a 3-pixel empty border lose no ink when moved by ≤ 3 pixels: each result is an exact roll.
    interior = torch.zeros(28, 28, dtype=torch.bool)
    interior[3:-3, 3:-3] = True
    images = images[(images[:, 0] * ~interior).sum((1, 2)) == 0][:64]
    assert len(images) == 64
    moved = random_translation(images, 3, torch.Generator().manual_seed(0))
    assert moved.shape == images.shape
    offsets = set()
    for original, shifted in zip(images, moved, strict=True):
        matches = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)
                   if torch.equal(torch.roll(original, (dy, dx), dims=(1, 2)), shifted)]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 20  # 49 possible offsets, drawn per image
    assert torch.equal(moved, random_translation(images, 3, torch.Generator().manual_seed(0)))
    assert random_translation(images, 0) is images


def test_random_flip_mirrors_about_half_of_the_images_and_leaves_the_rest():
    images = prepare_inputs(load_split("fashion-mnist", "test").images[:200], "intensities")
    flipped = random_flip(images, torch.Generator().manual_seed(0))
    mirrored = torch.tensor([torch.equal(f, x.flip(-1)) for f, x in zip(flipped, images, strict=True)])
    kept = torch.tensor([torch.equal(f, x) for f, x in zip(flipped, images, strict=True)])
    assert bool((mirrored ^ kept).all())  # no real image is its own mirror, so each is exactly one of the two
    assert 70 < int(mirrored.sum()) < 130
    assert torch.equal(flipped, random_flip(images, torch.Generator().manual_seed(0)))


def _orientation_degrees(images: torch.Tensor) -> torch.Tensor:
    """The angle of each image's principal axis of ink (from its second moments), in degrees, [−90, 90)."""
    rows, cols = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    ink = images[:, 0] / images[:, 0].sum((1, 2), keepdim=True)
    mean_r, mean_c = (ink * rows).sum((1, 2)), (ink * cols).sum((1, 2))
    dr, dc = rows - mean_r[:, None, None], -(cols - mean_c[:, None, None])  # image rows run downwards
    mu_rr, mu_cc, mu_rc = (ink * dr * dr).sum((1, 2)), (ink * dc * dc).sum((1, 2)), (ink * dr * dc).sum((1, 2))
    return torch.rad2deg(0.5 * torch.atan2(2 * mu_rc, mu_cc - mu_rr))


def test_random_rotation_turns_each_image_by_its_own_angle_within_the_bound_and_keeps_its_ink():
    test = load_split("mnist", "test")
    ones = prepare_inputs(test.images[test.labels == 1][:64], "intensities")  # long strokes: a clear axis
    turned = random_rotation(ones, 30.0, torch.Generator().manual_seed(0))
    change = _orientation_degrees(turned) - _orientation_degrees(ones)
    change = (change + 90) % 180 - 90
    assert bool((change.abs() <= 33).all()), change.abs().max()
    assert int((change > 10).sum()) > 5 and int((change < -10).sum()) > 5  # each image draws its own angle
    assert torch.allclose(turned.sum((1, 2, 3)), ones.sum((1, 2, 3)), rtol=0.03)
    assert torch.equal(turned, random_rotation(ones, 30.0, torch.Generator().manual_seed(0)))
    assert random_rotation(ones, 0.0) is ones


def test_rotate_by_a_quarter_turn_is_the_exact_counter_clockwise_rot90():
    images = prepare_inputs(load_split("mnist", "test").images[:16], "intensities")
    quarter = torch.tensor([90.0] * 8 + [-90.0] * 8)
    expected = torch.cat([torch.rot90(images[:8], 1, dims=(2, 3)), torch.rot90(images[8:], -1, dims=(2, 3))])
    assert torch.allclose(rotate(images, quarter), expected, atol=1e-4)
