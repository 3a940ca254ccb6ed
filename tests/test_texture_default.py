"""The offline default of texture synthesis and style transfer: the random multi-scale network, the
smooth start, luminance-only transfer, and the texture statistics RESULTS.md judges them with."""
import warnings

import pytest
import torch

from fastperc.apps import texture_stats
from fastperc.apps.style_transfer import luminance, transfer_style, with_luminance
from fastperc.apps.texture import start_image, synthesize_texture
from fastperc.models import RandomMultiScale, vgg19


def grey_bricks(size=48):
    """A grey brick wall: mortar rows every 8 px, joints every 12 px, offset every other row."""
    y = torch.arange(size).view(size, 1).expand(size, size)
    x = torch.arange(size).view(1, size).expand(size, size)
    mortar = (y % 8 == 0) | ((x + 6 * ((y // 8) % 2)) % 12 == 0)
    return (mortar.float() * 0.5 + 0.3).expand(1, 3, size, size).contiguous()


def chroma(image):
    return float((image - luminance(image)).abs().mean())


def test_network_layers_shapes_and_seed():
    net = RandomMultiScale()
    assert net.layer_names == ["pixels", "scale0", "scale1", "scale2", "scale3", "scale4"]
    assert net.style_layers == tuple(net.layer_names) and net.content_layers == ("scale1",)
    x = torch.rand(2, 3, 64, 48)
    out = net(x, ["scale3", "pixels", "scale0"])
    assert list(out) == ["scale3", "pixels", "scale0"]  # the order asked for
    assert out["pixels"].shape == (2, 4, 64, 48) and torch.equal(out["pixels"][:, 3], torch.ones(2, 64, 48))
    assert out["scale0"].shape == (2, 128, 64, 48) and out["scale3"].shape == (2, 128, 8, 6)
    assert out["scale0"].min() >= 0  # ReLU
    assert torch.equal(net.filters, RandomMultiScale().filters)  # seeded: the same network everywhere
    assert net.filters.sum(dim=(3, 4)).abs().max() < 1e-5  # zero-mean per filter and channel
    # zero-mean filters do not answer to a flat image of any brightness
    flat = net(torch.full((1, 3, 32, 32), 0.7), ["scale0", "scale2"])
    assert all(v.abs().max() < 1e-5 for v in flat.values())
    assert net.to(torch.float64)(x.double(), "scale1")["scale1"].dtype == torch.float64


def test_network_errors():
    net = RandomMultiScale()
    with pytest.raises(ValueError, match="no layer 'relu1_1'"):
        net(torch.rand(1, 3, 32, 32), ["relu1_1"])
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.rand(1, 1, 32, 32), ["scale0"])
    with pytest.raises(ValueError, match="too small"):
        net(torch.rand(1, 3, 4, 4), ["scale4"])
    with pytest.raises(ValueError, match="float64"):
        net(torch.rand(1, 3, 32, 32, dtype=torch.float64), ["scale0"])
    with pytest.raises(ValueError, match="kernel odd"):
        RandomMultiScale(kernel=4)


def test_smooth_start_has_no_pixel_speckle_and_is_seeded():
    smooth, noise = start_image((64, 64), "smooth", 0), start_image((64, 64), "noise", 0)
    step = lambda t: float((t[..., 1:, :] - t[..., :-1, :]).abs().mean())  # noqa: E731
    assert step(smooth) < 0.2 * step(noise)
    assert 0 <= smooth.min() and smooth.max() <= 1 and smooth.shape == (1, 3, 64, 64)
    assert torch.equal(smooth, start_image((64, 64), "smooth", 0))
    assert start_image((5, 3), "smooth", 0).shape == (1, 3, 5, 3)  # smaller than the factor
    with pytest.raises(ValueError, match="start"):
        start_image((8, 8), "zeros", 0)


def test_default_synthesis_of_a_grey_texture_stays_grey():
    # The colour speckle of the old default (a VGG with random filters from pixel noise), measured: the
    # new default leaves less than half its chroma on a grey exemplar, seeded and deterministic.
    exemplar = grey_bricks()
    image, losses, _ = synthesize_texture(exemplar, RandomMultiScale(), (32, 32), steps=20)
    assert losses[0] == pytest.approx(1.0, rel=1e-4) and losses[-1] < 0.05
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old, _, _ = synthesize_texture(exemplar, vgg19(pool="avg"), (32, 32), steps=20,
                                       layers=("relu1_1", "relu2_1", "relu3_1"), start="noise")
    assert chroma(image) < 0.5 * chroma(old), (chroma(image), chroma(old))
    again, _, _ = synthesize_texture(exemplar, RandomMultiScale(), (32, 32), steps=20)
    assert torch.equal(image, again)


def test_layers_default_to_the_backbones_own():
    class NoDefaults(torch.nn.Module):
        def forward(self, x, layers):
            return {name: x for name in layers}

    with pytest.raises(ValueError, match="no default style_layers"):
        synthesize_texture(grey_bricks(), NoDefaults(), (8, 8), steps=1)


def test_luminance_only_transfer_keeps_the_content_colours():
    # an orange-to-teal ramp in mid tones, so that no channel is clamped
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32)
    content = (torch.tensor([0.7, 0.5, 0.3]).view(1, 3, 1, 1) * (1 - ramp)
               + torch.tensor([0.3, 0.55, 0.6]).view(1, 3, 1, 1) * ramp).expand(1, 3, 32, 32).contiguous()
    image, losses, _ = transfer_style(content, grey_bricks(), RandomMultiScale(), steps=5, colour="content")
    assert losses[-1] < losses[0]
    # the result is the transfer's luminance with the content's chroma (Cb, Cr) wherever nothing clipped
    inside = ((image > 0) & (image < 1)).all(1, keepdim=True).expand_as(image)
    assert inside.float().mean() > 0.9
    rebuilt = with_luminance(content, luminance(image))
    assert (rebuilt - image)[inside].abs().max() < 1e-5
    assert (luminance(image) - luminance(content)).abs().mean() > 1e-3  # the style changed the luminance
    with pytest.raises(ValueError, match="colour"):
        transfer_style(content, grey_bricks(), RandomMultiScale(), steps=1, colour="both")


def test_ycbcr_round_trip():
    x = torch.rand(2, 3, 5, 6, dtype=torch.float64)
    assert torch.allclose(with_luminance(x, luminance(x)), x, atol=1e-12)


def test_texture_statistics():
    exemplar = grey_bricks(64)
    assert texture_stats.spectrum_distance(exemplar, exemplar) == 0
    assert texture_stats.colour_distance(exemplar, exemplar) == 0
    speckled = (exemplar + 0.2 * torch.rand(exemplar.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert texture_stats.spectrum_distance(speckled, exemplar) > 0.2  # excess power at fine scales
    red, green = torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)
    red[:, 0], green[:, 1] = 1, 1
    assert texture_stats.colour_distance(red, green) == 1
    # different sizes compare: two crops of one stationary random texture (blurred noise) are close,
    # a crop and pixel noise are not
    field = torch.rand(1, 1, 256, 256, generator=torch.Generator().manual_seed(1))
    field = torch.nn.functional.avg_pool2d(field, 5, stride=1, padding=2).expand(1, 3, -1, -1)
    small, large = field[..., :96, :96], field[..., 96:, 96:]
    assert texture_stats.spectrum_distance(large, small) < 0.15
    assert texture_stats.spectrum_distance(torch.rand(1, 3, 96, 96), small) > 0.5
    report = texture_stats.texture_report(speckled, exemplar)
    assert set(report) == {"spectrum", "colour"}
