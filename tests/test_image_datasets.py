"""Colour datasets from image files: any folder, a CelebA-shaped folder, and the emoji packages."""

from __future__ import annotations

import collections
import os
import time

import numpy as np
import pytest
from PIL import Image

from vaelab.config import RunConfig
from vaelab.data.catalog import dataset_name, describe
from vaelab.data.celeba import CROP, remember_folder
from vaelab.data.datasets import load_split
from vaelab.data.imagefiles import centre_crop_box, decode_file
from vaelab.errors import VaelabError
from vaelab.training import train

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 60, 220)}


@pytest.fixture()
def private_cache(tmp_path, monkeypatch):
    """A cache of its own, so that decoded folders of one test never serve another."""
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _write_pictures(folder, per_class=8, classes=True, size=(40, 30)):
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        target = folder / name if classes else folder
        target.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.integers(-20, 20, (size[1], size[0], 3)), 0, 255)
            suffix = (".png", ".jpg", ".webp")[i % 3]
            Image.fromarray(pixels.astype(np.uint8)).save(target / f"{name}-{i}{suffix}")


def test_a_folder_with_class_subfolders_loads_as_labelled_colour_images_and_skips_a_corrupt_file(
        tmp_path, private_cache, capsys):
    _write_pictures(tmp_path / "pictures")
    (tmp_path / "pictures" / "red" / "broken.png").write_bytes(b"not a png at all")
    name = dataset_name(f"folder:{tmp_path / 'pictures'}", image_size=16)
    description = describe(name)
    assert description.shape == (3, 16, 16) and description.class_names == ("blue", "green", "red")

    train_set, test_set = load_split(name, "train", val_size=2), load_split(name, "test")
    assert "skipped 1 file(s) that do not decode: red/broken.png" in capsys.readouterr().out
    assert len(train_set) + 2 + len(test_set) == 24 and len(test_set) == 2
    assert train_set.images.shape[1:] == (3, 16, 16) and train_set.images.dtype.is_floating_point is False
    red = train_set.images[train_set.labels == 2].float().mean(dim=(0, 2, 3))
    assert red[0] > 150 and red[1] < 80  # the red folder's label sits on red images


def test_a_flat_folder_has_no_classes_and_grey_on_request(tmp_path, private_cache):
    _write_pictures(tmp_path / "flat", classes=False)
    name = dataset_name(f"folder:{tmp_path / 'flat'}", image_size=8, image_channels=1)
    assert name.endswith("?size=8&channels=1")
    assert describe(name).class_names is None
    assert load_split(name, "test").images.shape[1:] == (1, 8, 8)


def test_a_changed_folder_is_decoded_again_not_served_stale(tmp_path, private_cache):
    _write_pictures(tmp_path / "pictures", classes=False, per_class=4)
    name = dataset_name(f"folder:{tmp_path / 'pictures'}", image_size=8)
    before = len(load_split(name, "train", val_size=1)) + len(load_split(name, "test"))
    Image.new("RGB", (20, 20), (0, 0, 0)).save(tmp_path / "pictures" / "extra.png")
    after = len(load_split(name, "train", val_size=1)) + len(load_split(name, "test"))
    assert after == before + 1
    image = tmp_path / "pictures" / "extra.png"
    Image.new("RGB", (20, 20), (255, 255, 255)).save(image)
    os.utime(image, ns=(time.time_ns(), time.time_ns() + 10**9))  # a rewrite within the same clock tick
    test_and_train = [load_split(name, split, val_size=1).images for split in ("train", "test")]
    assert any((images == 255).all(dim=(1, 2, 3)).any() for images in test_and_train)
    assert len(list(private_cache.rglob("decoded-*.json"))) == 1  # the stale arrays are gone


def test_a_folder_dataset_trains_one_epoch(tmp_path, private_cache):
    _write_pictures(tmp_path / "pictures")
    config = RunConfig().with_overrides({
        "dataset": f"folder:{tmp_path / 'pictures'}", "image_size": 16, "val_size": 2, "epochs": 1,
        "batch_size": 8, "channels": [8, 16], "hidden_dim": 32, "latent_dim": 4,
    })
    assert config.data.input_mode == "intensities" and config.model.likelihood == "logistic"
    result = train(config, tmp_path / "run", progress=False, log=lambda message: None)
    assert result.finished and np.isfinite(result.best_score) and (tmp_path / "run" / "model.safetensors").exists()


def test_a_missing_or_empty_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(VaelabError, match="is not a folder"):
        dataset_name(f"folder:{tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VaelabError, match="holds no PNG, JPEG or WebP files"):
        load_split(dataset_name(f"folder:{tmp_path / 'empty'}"), "test")


# --- CelebA ------------------------------------------------------------------------------------------------------

ATTRIBUTE_NAMES = ["Smiling", "Male", "Young"]


def _write_celeba(folder, count=12):
    """A CelebA-shaped folder: 178×218 JPEGs, the partition (8 train, 2 val, 2 test) and the attribute table."""
    (folder / "img_align_celeba").mkdir(parents=True)
    partition, attributes = [], [str(count), " ".join(ATTRIBUTE_NAMES)]
    for i in range(count):
        file_name = f"{i + 1:06d}.jpg"
        pixels = np.full((218, 178, 3), 40 + 15 * i, dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "img_align_celeba" / file_name, quality=95)
        partition.append(f"{file_name} {0 if i < 8 else 1 if i < 10 else 2}")
        attributes.append(f"{file_name} " + " ".join("1" if (i >> bit) & 1 else "-1" for bit in range(3)))
    (folder / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")
    (folder / "list_attr_celeba.txt").write_text("\n".join(attributes) + "\n")


def test_the_celeba_crop_is_the_centred_148_square_of_the_aligned_178_by_218_faces():
    assert CROP == 148 and centre_crop_box(178, 218, CROP) == (15, 35, 163, 183)
    pixels = np.zeros((218, 178, 3), dtype=np.uint8)
    pixels[35:183, 15:163] = 255  # white exactly inside the crop, black outside
    decoded = decode_file_from_array(pixels, 64, CROP)
    assert decoded.shape == (3, 64, 64) and decoded.min() == 255  # nothing from outside the crop leaks in
    pixels[35:109] = [200, 0, 0]  # the crop's top half red: after the resize, the top rows are red
    decoded = decode_file_from_array(pixels, 64, CROP)
    assert (decoded[:, :26] == np.array([200, 0, 0])[:, None, None]).all()  # Lanczos reaches 3 × 2.3 pixels


def decode_file_from_array(pixels, size, crop):
    import io

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    buffer.seek(0)
    return decode_file(buffer, size, 3, crop=crop, name="synthetic.png")


def test_a_celeba_shaped_folder_gives_the_official_partition_and_attributes(tmp_path, private_cache):
    _write_celeba(tmp_path / "celeba")
    remember_folder(tmp_path / "celeba")
    sizes = {split: len(load_split("celeba", split)) for split in ("train", "val", "test")}
    assert sizes == {"train": 8, "val": 2, "test": 2}
    train_set = load_split("celeba", "train")
    assert train_set.images.shape[1:] == (3, 64, 64) and describe("celeba").class_names is None
    assert set(train_set.annotations) == set(ATTRIBUTE_NAMES)
    assert train_set.annotations["Smiling"].tolist() == [i & 1 for i in range(8)]
    assert train_set.annotations["Young"].tolist() == [(i >> 2) & 1 for i in range(8)]
    # the grey level of image i survives crop, resize and JPEG within a few levels
    assert np.allclose(train_set.images.float().mean(dim=(1, 2, 3)).numpy(), [40 + 15 * i for i in range(8)], atol=3)
    assert describe(dataset_name("celeba", image_size=32)).shape == (3, 32, 32)


def test_a_missing_celeba_image_or_list_is_a_one_line_error_naming_the_file(tmp_path, private_cache):
    _write_celeba(tmp_path / "celeba")
    remember_folder(tmp_path / "celeba")
    (tmp_path / "celeba" / "img_align_celeba" / "000003.jpg").unlink()
    with pytest.raises(VaelabError, match=r"000003\.jpg is missing \(listed in list_eval_partition.txt\)"):
        load_split("celeba", "train")
    (tmp_path / "celeba" / "list_attr_celeba.txt").unlink()
    with pytest.raises(VaelabError, match=r"list_attr_celeba\.txt is missing: not the CelebA layout"):
        load_split("celeba", "train")


def test_an_undecodable_celeba_image_is_an_error_not_a_silent_gap(tmp_path, private_cache):
    _write_celeba(tmp_path / "celeba")
    remember_folder(tmp_path / "celeba")
    (tmp_path / "celeba" / "img_align_celeba" / "000002.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(VaelabError, match=r"000002\.jpg does not decode"):
        load_split("celeba", "test")


# --- emoji -------------------------------------------------------------------------------------------------------


def test_the_emoji_set_has_its_categories_vendors_and_five_tone_groups():
    train_set, test_set = load_split("emoji", "train", val_size=1), load_split("emoji", "test")
    total = len(train_set) + 1 + len(test_set)
    assert total == 7562 and train_set.images.shape[1:] == (3, 64, 64)
    labels = np.concatenate([train_set.labels.numpy(), test_set.labels.numpy()])
    assert len(describe("emoji").class_names) == 9 and set(labels) == set(range(9))
    # no base emoji is in both splits: test drawings are never trained on, in any tone
    assert not set(train_set.annotations["group"].tolist()) & set(test_set.annotations["group"].tolist())
    tones = test_set.annotations["skin_tone"].numpy()
    groups = test_set.annotations["group"].numpy()
    vendors = test_set.annotations["vendor"].numpy()
    toned = collections.Counter((g, v) for g, v, t in zip(groups, vendors, tones, strict=True) if t >= 1)
    assert toned and all(count % 5 == 0 for count in toned.values())  # each toned drawing comes in five tones
    assert {1, 2, 3, 4, 5} <= set(tones.tolist())


def test_measured_skin_lightness_falls_with_the_ground_truth_tone():
    from scipy.stats import spearmanr

    from vaelab.analysis.attributes import measure_batch

    test_set = load_split("emoji", "test")
    toned = (test_set.annotations["skin_tone"] >= 1).nonzero().flatten()[:150]
    measured = measure_batch(test_set.images[toned].float() / 255, "emoji")["skin_lightness"]
    keep = np.isfinite(measured)
    assert keep.mean() > 0.8
    rho = spearmanr(measured[keep], test_set.annotations["skin_tone"][toned].numpy()[keep]).statistic
    assert rho < -0.8


def test_the_encoder_adds_stages_as_the_resolution_grows():
    def widths(dataset, **extra):
        return RunConfig().with_overrides({"dataset": dataset, **extra}).model.stage_widths

    assert widths("mnist") == [32, 64]  # 28 → 7×7, as before
    assert widths("emoji") == [32, 64, 128, 256]  # 64 → 4×4
    assert widths("emoji", channels=[16]) == [16, 32, 64, 128]
