"""Texture synthesis, style transfer and compare: the functions, and the console script through a
subprocess on images the test writes, including every bad input the issue lists."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from fastperc.apps.patterns import discs
from fastperc.apps.style_transfer import transfer_style
from fastperc.apps.texture import synthesize_texture
from fastperc.losses import VGGStyleLoss
from fastperc.models import vgg19

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "fastperc.cli", *args], env=env, capture_output=True, text=True,
                          timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def extractor():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return vgg19(pool="avg")


def test_texture_synthesis_lowers_the_style_loss(extractor):
    style = discs(48)
    layers = ("relu1_1", "relu2_1", "relu3_1")
    judge = VGGStyleLoss(style, layers, extractor=extractor)  # the plain (unbalanced) style loss
    start = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    image, losses, snaps = synthesize_texture(style, extractor, (32, 32), steps=6, layers=layers, snapshot_every=2)
    assert image.shape == (1, 3, 32, 32) and 0 <= image.min() and image.max() <= 1
    assert losses[0] == pytest.approx(1.0, rel=1e-4)  # balanced: noise scores 1
    assert losses[-1] < 0.5 * losses[0]
    assert judge(image).item() < 0.5 * judge(start).item()
    assert len(snaps) == 2
    again, _, _ = synthesize_texture(style, extractor, (32, 32), steps=6, layers=layers)
    assert torch.equal(image, again)  # seeded and deterministic


def test_texture_with_adam(extractor):
    _, losses, _ = synthesize_texture(discs(48), extractor, (24, 24), steps=5, layers=("relu1_1", "relu2_1"),
                                      optimizer="adam", lr=0.05)
    assert losses[-1] < losses[0]


def test_style_transfer_lowers_the_loss_and_keeps_content(extractor):
    content = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(1, 3, 32, 32).contiguous()
    image, losses, _ = transfer_style(content, discs(48), extractor, steps=5, style_layers=("relu1_1", "relu2_1"),
                                      content_layers=("relu2_2",), tv_weight=0.1)
    assert losses[-1] < losses[0]
    assert image.shape == content.shape
    with pytest.raises(ValueError, match="init"):
        transfer_style(content, discs(48), extractor, steps=1, init="zeros")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    arr = (discs(40)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(arr).save(d / "style.png")
    noisy = np.clip(arr.astype(int) + np.random.default_rng(0).integers(-20, 21, arr.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(d / "noisy.png")
    Image.fromarray(arr[:, :, 0]).save(d / "gray.png")
    Image.fromarray(np.dstack([arr, np.full(arr.shape[:2], 200, np.uint8)])).save(d / "alpha.png")
    Image.fromarray(arr[:30]).save(d / "small.png")
    (d / "broken.png").write_bytes(b"this is not a png")
    for sub, img in (("a", arr), ("b", noisy)):
        os.makedirs(d / sub)
        Image.fromarray(img).save(d / sub / "one.png")
        Image.fromarray(img[::-1].copy()).save(d / sub / "two.png")
    Image.fromarray(arr).save(d / "a" / "only_in_a.png")
    return d


def assert_user_error(out, *fragments):
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    for f in fragments:
        assert f in out.stderr, out.stderr


def test_cli_texture_writes_image_and_strip(files, tmp_path):
    # without weights: the random multi-scale network, every one of its layers, a smooth start
    out = run_cli("texture", str(files / "style.png"), "-o", str(tmp_path / "t.png"), "--size", "24", "--steps",
                  "3", "--strip", str(tmp_path / "s.png"), "--strip-count", "2")
    assert out.returncode == 0, out.stderr
    assert "random multi-scale network" in out.stderr and "loss 1.0000e+00" in out.stderr
    assert Image.open(tmp_path / "t.png").size == (24, 24)
    assert Image.open(tmp_path / "s.png").size[0] > 24 * 3  # style, one snapshot, result
    # a VGG with random filters, asked for by name, from pixel noise (the former default)
    out = run_cli("texture", str(files / "style.png"), "-o", str(tmp_path / "v.png"), "--size", "24", "--steps",
                  "2", "--arch", "vgg19", "--layers", "relu1_1,relu2_1", "--start", "noise")
    assert out.returncode == 0, out.stderr
    assert "seeded random filters" in out.stderr and "loss 1.0000e+00" in out.stderr
    assert "--weights PATH on the command line" in out.stderr  # the flag as the user types it


def test_cli_style_and_compare(files, tmp_path):
    out = run_cli("style", str(files / "noisy.png"), str(files / "style.png"), "-o", str(tmp_path / "st.png"),
                  "--size", "24", "--steps", "2", "--arch", "vgg19", "--layers", "relu1_1,relu2_1",
                  "--content-layers", "relu2_2")
    assert out.returncode == 0, out.stderr
    assert Image.open(tmp_path / "st.png").size == (24, 24)
    out = run_cli("style", str(files / "noisy.png"), str(files / "style.png"), "-o", str(tmp_path / "sc.png"),
                  "--size", "24", "--steps", "2", "--colour", "content")
    assert out.returncode == 0 and "random multi-scale network" in out.stderr, out.stderr
    assert Image.open(tmp_path / "sc.png").size == (24, 24)

    out = run_cli("compare", str(files / "style.png"), str(files / "noisy.png"), "--map", str(tmp_path / "m.png"))
    assert out.returncode == 0, out.stderr
    header, _, row = out.stdout.splitlines()[:3]
    for m in ("ssim", "ms-ssim", "psnr", "mae", "rmse"):
        assert m in header
    assert "n/a" in row  # 40 px is too small for five MS-SSIM scales
    psnr = float(row.split()[-3])
    a = np.asarray(Image.open(files / "style.png"), dtype=np.float64) / 255
    b = np.asarray(Image.open(files / "noisy.png"), dtype=np.float64) / 255
    assert psnr == pytest.approx(10 * np.log10(1 / np.mean((a - b) ** 2)), abs=1e-3)
    assert Image.open(tmp_path / "m.png").mode == "L"


def test_cli_compare_folders_gray_and_alpha(files):
    out = run_cli("compare", str(files / "a"), str(files / "b"), "--metrics", "psnr,mae")
    assert out.returncode == 0, out.stderr
    assert "only_in_a.png is only in" in out.stderr
    names = [line.split()[0] for line in out.stdout.splitlines()[2:]]
    assert names == ["one.png", "two.png", "mean"]
    out = run_cli("compare", str(files / "gray.png"), str(files / "style.png"), "--metrics", "ssim")
    assert out.returncode == 0 and "grayscale expanded to RGB" in out.stderr
    out = run_cli("compare", str(files / "alpha.png"), str(files / "style.png"), "--metrics", "mae")
    assert out.returncode == 0 and "alpha channel composited onto white" in out.stderr


def test_cli_help_shows_the_defaults():
    out = run_cli("compare", "--help")
    assert out.returncode == 0 and "default: ssim,ms-ssim,psnr,mae,rmse" in out.stdout
    out = run_cli("texture", "--help")
    assert out.returncode == 0 and "(default: 256)" in out.stdout and "(default: 200)" in out.stdout


def test_cli_bad_inputs(files, tmp_path):
    style = str(files / "style.png")
    assert_user_error(run_cli("compare", style, str(files / "missing.png")), "missing.png: no such file")
    assert_user_error(run_cli("compare", style, str(files / "broken.png")), "not an image file")
    assert_user_error(run_cli("compare", style, str(files / "small.png")), "same size")
    assert_user_error(run_cli("compare", style, style, "--metrics", "ssim,foo"), "unknown metric")
    assert_user_error(run_cli("compare", style, style, "--metrics", "lpips"), "--lpips-weights")
    assert_user_error(run_cli("compare", str(files / "a"), style), "is a folder")
    assert_user_error(run_cli("compare", str(files / "a"), str(files / "b"), "--map", "m.png"), "two image files")
    assert_user_error(run_cli("texture", str(files / "broken.png"), "-o", str(tmp_path / "x.png")), "not an image")
    assert_user_error(run_cli("texture", style, "-o", str(tmp_path / "nodir" / "x.png")), "does not exist")
    assert_user_error(run_cli("texture", style, "-o", str(tmp_path / "x.png"), "--layers", "relu9_1"), "no layer")
    assert_user_error(run_cli("texture", style, "-o", str(tmp_path / "x.png"), "--weights", str(files / "broken.png")),
                      "cannot be read: it is not a file torch.save writes")
    assert_user_error(run_cli("texture", style, "-o", str(tmp_path / "x.png"), "--arch", "multiscale", "--weights",
                              str(files / "broken.png")), "--arch multiscale has no trained weights")
    assert_user_error(run_cli("style", style, str(files / "missing.png"), "-o", str(tmp_path / "x.png")),
                      "no such file")
    out = run_cli("texture", style, "-o", str(tmp_path / "x.png"), "--steps", "0")
    assert out.returncode == 2 and "must be > 0" in out.stderr  # argparse's own usage error


def test_feedforward_style_example_trains(files, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    script = os.path.join(ROOT, "examples", "feedforward_style.py")
    out = subprocess.run([sys.executable, script, "--steps", "4", "--size", "32", "--batch", "2", "--images",
                          str(files / "a"), "--style", str(files / "style.png"), "-o", str(tmp_path / "ff.png")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "loss" in out.stdout and Image.open(tmp_path / "ff.png").size[0] > 3 * 32
    bad = subprocess.run([sys.executable, script, "--images", str(files / "missing")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
