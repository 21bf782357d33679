"""Emoji: a real colour dataset that installs offline. 7,562 emoji drawings, 64×64 RGB, nine categories.

Source: the 64×64 PNGs of two npm packages of the emoji-datasource project, version 16.0.0 — Twitter's Twemoji
(graphics CC-BY 4.0, © Twitter, Inc. and other contributors) and Google's Noto emoji (Apache-2.0) — 3,781 images
each: 1,906 emoji and 1,875 skin-tone variants (the five "Component" swatches are left out). The packages'
tarballs are the dataset's files (SHA-256 of their bytes below), fetched with `npm pack` or from the npm registry.

Labels, from each package's `emoji.json`:
- the class is the emoji's category (nine; the "Component" swatches are left out);
- annotations: `skin_tone` (0: none, the default yellow; 1–5: the Fitzpatrick-based modifiers from light to dark;
  −1: two people of different tones), `vendor` (0 Twitter, 1 Google), `subcategory` (index into SUBCATEGORIES
  as read from the package) and `group` (the base emoji: its variants and both vendors' drawings share it).

The skin-tone variants are the same drawing in five tones: a ground-truth factor.

Transparency is composited onto white (255, 255, 255). The test split is a fixed tenth of the base emoji (by a
permutation seeded with 0), so that no drawing of a test emoji, in any tone or by either vendor, is trained on.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np

from vaelab.data import colour
from vaelab.data.description import DatasetDescription, KnownFactor
from vaelab.data.imagefiles import cached_arrays, decode_file
from vaelab.data.sources import dataset_dir, npm_tarball, read_verified, url_file
from vaelab.errors import VaelabError

VERSION = "16.0.0"
VENDORS = ("twitter", "google")
TARBALLS = {vendor: f"emoji-datasource-{vendor}-{VERSION}.tgz" for vendor in VENDORS}
BACKGROUND = (255, 255, 255)
CATEGORIES = (
    "Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink", "Travel & Places", "Activities",
    "Objects", "Symbols", "Flags",
)
TONE_MODIFIERS = {"1F3FB": 1, "1F3FC": 2, "1F3FD": 3, "1F3FE": 4, "1F3FF": 5}
TEST_SHARE = 0.1
SPLIT_SEED = 0
DEFAULT_VAL_SIZE = 500


def _tone(variation_key: str) -> int:
    """The skin tone of a variant, from its modifier key ("1F3FB", or "1F3FB-1F3FC" for two people)."""
    tones = {TONE_MODIFIERS[modifier] for modifier in variation_key.split("-")}
    return tones.pop() if len(tones) == 1 else -1


def _entries(emoji_json: bytes, vendor: str) -> list[dict]:
    """One record per image the vendor draws: file name, category, subcategory, skin tone, base emoji."""
    records = []
    for entry in json.loads(emoji_json):
        if entry["category"] not in CATEGORIES:
            continue
        base = {"category": CATEGORIES.index(entry["category"]), "subcategory": entry["subcategory"],
                "group": entry["unified"]}
        if entry.get(f"has_img_{vendor}"):
            records.append({**base, "image": entry["image"], "skin_tone": 0})
        for key, variant in (entry.get("skin_variations") or {}).items():
            if variant.get(f"has_img_{vendor}"):
                records.append({**base, "image": variant["image"], "skin_tone": _tone(key)})
    return records


def _decode(description: DatasetDescription, root: Path | None) -> dict[str, np.ndarray]:
    images, columns = [], {"category": [], "skin_tone": [], "vendor": [], "subcategory": [], "group": []}
    for vendor_index, vendor in enumerate(VENDORS):
        tarball = read_verified(description, TARBALLS[vendor], root)
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
            records = _entries(archive.extractfile("package/emoji.json").read(), vendor)
            for record in records:
                member = f"package/img/{vendor}/64/{record['image']}"
                try:
                    handle = archive.extractfile(member)
                except KeyError:
                    raise VaelabError(f"{TARBALLS[vendor]} lacks {member}, which its emoji.json lists; "
                                      "run `vaelab data fetch emoji` again") from None
                images.append(decode_file(handle, description.shape[1], 3, background=BACKGROUND, name=member))
                for name in ("category", "skin_tone", "subcategory", "group"):
                    columns[name].append(record[name])
                columns["vendor"].append(vendor_index)
    subcategories = sorted(set(columns["subcategory"]))
    groups = sorted(set(columns["group"]))
    return {
        "images": np.stack(images),
        "category": np.asarray(columns["category"], dtype=np.int64),
        "skin_tone": np.asarray(columns["skin_tone"], dtype=np.int64),
        "vendor": np.asarray(columns["vendor"], dtype=np.int64),
        "subcategory": np.asarray([subcategories.index(s) for s in columns["subcategory"]], dtype=np.int64),
        "group": np.asarray([groups.index(g) for g in columns["group"]], dtype=np.int64),
    }


def test_groups(groups: np.ndarray) -> np.ndarray:
    """The base emoji held out for testing: a fixed tenth of them, by a permutation seeded with SPLIT_SEED."""
    count = int(groups.max()) + 1
    order = np.random.default_rng(SPLIT_SEED).permutation(count)
    return np.sort(order[: round(count * TEST_SHARE)])


def read_emoji(description: DatasetDescription, split: str, root: Path | None = None):
    manifest = {"files": description.files, "background": BACKGROUND, "shape": description.shape}
    arrays = cached_arrays(dataset_dir(description, root), manifest, lambda: _decode(description, root))
    in_test = np.isin(arrays["group"], test_groups(np.asarray(arrays["group"])))
    chosen = in_test if split == "test" else ~in_test
    annotations = {name: np.asarray(arrays[name])[chosen] for name in ("skin_tone", "vendor", "subcategory", "group")}
    return np.asarray(arrays["images"])[chosen], np.asarray(arrays["category"])[chosen], annotations


EMOJI = DatasetDescription(
    name="emoji",
    shape=(3, 64, 64),
    class_names=CATEGORIES,
    reader=read_emoji,
    files={
        TARBALLS["twitter"]: "f64a530c63bca463bd8317fdc4615ce63a53a0c65018e4ce2d848aaba7a28877",
        TARBALLS["google"]: "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438",
    },
    offline_sources=(
        npm_tarball({TARBALLS[v]: f"emoji-datasource-{v}@{VERSION}" for v in VENDORS}),
        url_file({TARBALLS[v]: f"https://registry.npmjs.org/emoji-datasource-{v}/-/{TARBALLS[v]}" for v in VENDORS}),
    ),
    offline_hint=f"install Node.js/npm so that `npm pack emoji-datasource-twitter@{VERSION}` works",
    default_likelihood="logistic",
    default_input_mode="intensities",
    default_val_size=DEFAULT_VAL_SIZE,
    attributes={**colour.MEASURERS, "skin_lightness": colour.skin_lightness},
    known_factors=(KnownFactor("skin_tone", 1, 5, "skin_lightness", held_fixed=("group", "vendor")),),
)
