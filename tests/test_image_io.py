"""The single homes of small image concepts in corrdiff/image_io.py: range conversion and folder listing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from corrdiff.image_io import IMAGE_SUFFIXES, find_images, save_image, to_image_range, to_model_range


def test_range_conversions_are_inverse_and_exact_on_8_bit_levels():
    levels = torch.arange(256, dtype=torch.float32) / 255
    x = to_model_range(levels)
    assert x.min() == -1 and x.max() == 1
    assert torch.equal(x, levels * 2 - 1)
    assert torch.allclose(to_image_range(x), levels, atol=1e-7)
    assert torch.equal(to_image_range(torch.tensor([-3.0, 3.0])), torch.tensor([-1.0, 2.0]))  # not clamped


def test_find_images_lists_every_image_suffix_recursively_and_sorted(tmp_path):
    rgb = np.zeros((2, 2, 3), np.uint8)
    (tmp_path / "b" / "c").mkdir(parents=True)
    save_image(tmp_path / "b" / "c" / "one.png", rgb)
    save_image(tmp_path / "a.PNG", rgb)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "b" / "two.ppm").write_bytes(b"P6 1 1 255\n\0\0\0")
    (tmp_path / "dir.jpg").mkdir()  # a folder named like an image is not one
    assert find_images(tmp_path) == [tmp_path / "a.PNG", tmp_path / "b" / "c" / "one.png", tmp_path / "b" / "two.ppm"]
    (tmp_path / "d").mkdir()
    save_image(tmp_path / "d" / "three.webp.png", rgb)
    assert find_images([tmp_path / "d", str(tmp_path / "b" / "c")]) == [
        tmp_path / "b" / "c" / "one.png", tmp_path / "d" / "three.webp.png"]
    assert {".png", ".jpg", ".ppm"} <= set(IMAGE_SUFFIXES)


def test_find_images_names_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        find_images(tmp_path / "absent")
