"""Image files <-> tensors through pillow, with the checks a command-line tool owes its user.

Tensors are float32 (1, C, H, W) in [0, 1]. Every problem with a file (missing, a directory, not an
image, an unsupported mode, a size of zero) raises ImageError with the path in the message, so the
console script can print it without a traceback.
"""
from __future__ import annotations

import os

import numpy as np
import torch

try:
    from PIL import Image, UnidentifiedImageError
except ImportError:  # pragma: no cover - pillow is a dependency; this keeps `import fastperc` light
    Image = None


class ImageError(ValueError):
    """A file that cannot be used as an image, with a message meant for the user."""


def _require_pillow():
    if Image is None:
        raise ImageError("reading and writing images needs pillow: pip install pillow")


def read_image(path, channels: str = "rgb", max_side: int | None = None):
    """Read an image file as a (1, C, H, W) float32 tensor in [0, 1].

    channels: "rgb" gives 3 channels (grayscale is repeated); "keep" gives 1 for grayscale and 3 for
    colour. An alpha channel is composited onto white. 16-bit grayscale keeps its precision.
    max_side: if given and the longer side exceeds it, the image is resized (bicubic) to fit.
    Returns (tensor, notes), notes being what was done to the file's pixels, in words.
    """
    _require_pillow()
    if channels not in ("rgb", "keep"):
        raise ValueError(f"channels must be 'rgb' or 'keep', got {channels!r}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ImageError(f"{path}: is a directory, not an image file")
    try:
        with Image.open(path) as img:
            img.load()
            img = img.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: not an image file pillow can read ({err.__class__.__name__})") from None
    notes = []
    if img.width == 0 or img.height == 0:
        raise ImageError(f"{path}: image has no pixels ({img.width}x{img.height})")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        gray = img.mode.startswith("L")
        img = Image.alpha_composite(white, img.convert("RGBA")).convert("L" if gray else "RGB")
        notes.append("alpha channel composited onto white")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(img, dtype=np.float64) / 65535.0
    elif img.mode == "F":  # float images: taken as [0, 1] when they fit, else as 8-bit values
        array = np.asarray(img, dtype=np.float64)
        array = array / 255.0 if array.max() > 1.0 else array
    elif img.mode in ("L", "1"):
        array = np.asarray(img.convert("L"), dtype=np.float64) / 255.0
    else:
        if img.mode != "RGB":
            notes.append(f"converted from {img.mode} to RGB")
        array = np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
    tensor = torch.from_numpy(array).float()
    tensor = tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1)
    if max_side is not None and max(tensor.shape[1:]) > max_side:
        scale = max_side / max(tensor.shape[1:])
        size = (max(1, round(tensor.shape[1] * scale)), max(1, round(tensor.shape[2] * scale)))
        tensor = torch.nn.functional.interpolate(tensor[None], size=size, mode="bicubic", antialias=True)[0]
        notes.append(f"resized to {size[1]}x{size[0]}")
    tensor = tensor.clamp(0.0, 1.0)
    if tensor.shape[0] == 1 and channels == "rgb":
        tensor = tensor.expand(3, -1, -1).contiguous()
        notes.append("grayscale expanded to RGB")
    return tensor.unsqueeze(0), notes


def check_output_path(path) -> str:
    """The path as a string, if its folder exists (checked before a long run, not only when writing)."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ImageError(f"{path}: folder {parent} does not exist")
    return path


def write_image(tensor: torch.Tensor, path) -> None:
    """Write a (1, C, H, W) or (C, H, W) tensor in [0, 1] (clamped), C = 1 or 3, as an 8-bit image.
    The format comes from the file extension."""
    _require_pillow()
    t = tensor.detach().float().cpu()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3 or t.shape[0] not in (1, 3):
        raise ValueError(f"image tensor must be (1, C, H, W) or (C, H, W) with C = 1 or 3, got {tuple(tensor.shape)}")
    array = (t.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    path = check_output_path(path)
    img = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    try:
        img.save(path)
    except (ValueError, KeyError):
        raise ImageError(f"{path}: unknown image format; use an extension such as .png or .jpg") from None
    except OSError as err:
        raise ImageError(f"{path}: cannot write ({err})") from None


def side_by_side(images, gap: int = 4) -> torch.Tensor:
    """Images (1, 3, H_i, W_i) in a row on white, top-aligned, `gap` pixels apart."""
    height = max(im.shape[2] for im in images)
    width = sum(im.shape[3] for im in images) + gap * (len(images) - 1)
    strip = torch.ones(1, 3, height, width)
    x = 0
    for im in images:
        strip[:, :, : im.shape[2], x : x + im.shape[3]] = im.detach().float().cpu()
        x += im.shape[3] + gap
    return strip
