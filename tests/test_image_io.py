"""Image files through pillow: round trips, modes, and a clear ImageError for every bad file."""
import numpy as np
import pytest
import torch
from PIL import Image

from fastperc.image import ImageError, read_image, side_by_side, write_image


def test_rgb_round_trip_is_exact_in_8_bit(tmp_path):
    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, 256, (1, 3, 7, 5), generator=g).float() / 255
    write_image(t, tmp_path / "a.png")
    back, notes = read_image(tmp_path / "a.png")
    assert notes == [] and back.shape == (1, 3, 7, 5) and back.dtype == torch.float32
    assert torch.equal(back, t)


def test_grayscale_alpha_palette_and_16_bit(tmp_path):
    Image.fromarray(np.full((4, 6), 128, np.uint8), "L").save(tmp_path / "g.png")
    kept, _ = read_image(tmp_path / "g.png", channels="keep")
    rgb, notes = read_image(tmp_path / "g.png")
    assert kept.shape == (1, 1, 4, 6) and rgb.shape == (1, 3, 4, 6)
    assert "grayscale expanded to RGB" in notes

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent on the left column, opaque on the right
    rgba[:, 1, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    t, notes = read_image(tmp_path / "a.png")
    assert "alpha channel composited onto white" in notes
    assert torch.equal(t[0, :, 0, 0], torch.ones(3)) and torch.equal(t[0, :, 0, 1], torch.tensor([1.0, 0, 0]))

    Image.fromarray(np.zeros((3, 3), np.uint8), "L").convert("P").save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png")[0].shape == (1, 3, 3, 3)

    Image.fromarray(np.array([[0, 65535], [32768, 1]], np.uint16)).save(tmp_path / "16.png")
    t16, _ = read_image(tmp_path / "16.png", channels="keep")
    assert t16[0, 0, 0, 1].item() == 1.0 and abs(t16[0, 0, 1, 1].item() - 1 / 65535) < 1e-9


def test_resize_to_max_side(tmp_path):
    Image.fromarray(np.zeros((40, 100, 3), np.uint8)).save(tmp_path / "w.png")
    t, notes = read_image(tmp_path / "w.png", max_side=50)
    assert t.shape == (1, 3, 20, 50) and "resized to 50x20" in notes
    assert read_image(tmp_path / "w.png", max_side=200)[0].shape == (1, 3, 40, 100)


def test_bad_files(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="is a directory"):
        read_image(tmp_path)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageError, match="not an image file"):
        read_image(tmp_path / "text.png")
    (tmp_path / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(ImageError, match="not an image file"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(ImageError, match="does not exist"):
        write_image(torch.zeros(1, 3, 2, 2), tmp_path / "no" / "dir.png")
    with pytest.raises(ImageError, match="unknown image format"):
        write_image(torch.zeros(1, 3, 2, 2), tmp_path / "x.unknownext")
    with pytest.raises(ValueError, match="C = 1 or 3"):
        write_image(torch.zeros(1, 4, 2, 2), tmp_path / "x.png")


def test_side_by_side():
    strip = side_by_side([torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 2, 3)], gap=2)
    assert strip.shape == (1, 3, 4, 9)
    assert strip[0, :, 0, 4:6].eq(1).all() and strip[0, :, 3, 6:].eq(1).all()  # gap and padding are white
