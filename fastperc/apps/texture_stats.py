"""Texture statistics that the synthesis does not optimise, to judge its results without a person:

- spectrum_distance: the mean absolute difference of log10 radially averaged power spectra of the
  luminance (Hann-windowed, mean removed) over radial frequency bands: how far the scales of structure
  (brick rows, blade widths, grain size) are from the exemplar's; pixel speckle shows as excess power at
  the highest bands. 0 for images with the same spectrum.
- colour_distance: the total-variation distance (half the L1 distance, 0..1) of the joint RGB histograms
  (8 bins per channel): 0 for the same colours in the same proportions, 1 for disjoint colours.

Both compare images of different sizes: spectra are taken on frequency bands relative to the Nyquist
frequency, histograms are normalised.
"""
from __future__ import annotations

import torch

from fastperc.apps.style_transfer import LUMA


def _luminance(image: torch.Tensor) -> torch.Tensor:
    """(H, W) luminance of a (1, 3, H, W) or (3, H, W) image in [0, 1]."""
    image = image.reshape(-1, *image.shape[-2:]).double()
    if image.shape[0] == 1:
        return image[0]
    return sum(w * c for w, c in zip(LUMA, image))


def radial_power_spectrum(image: torch.Tensor, bands: int = 24) -> torch.Tensor:
    """Mean power of the windowed luminance in `bands` rings from 1/bands of Nyquist up to Nyquist."""
    lum = _luminance(image)
    h, w = lum.shape
    window = torch.outer(torch.hann_window(h, periodic=False, dtype=lum.dtype),
                         torch.hann_window(w, periodic=False, dtype=lum.dtype))
    lum = (lum - lum.mean()) * window
    power = torch.fft.fftshift(torch.fft.fft2(lum)).abs().square() / (h * w)
    fy = torch.fft.fftshift(torch.fft.fftfreq(h, dtype=lum.dtype)) * 2  # in units of Nyquist
    fx = torch.fft.fftshift(torch.fft.fftfreq(w, dtype=lum.dtype)) * 2
    radius = (fy[:, None].square() + fx[None, :].square()).sqrt()
    band = (radius * bands).floor().long()
    keep = (band >= 1) & (band < bands)  # leave out the DC ring and the corners past Nyquist
    sums = torch.zeros(bands, dtype=lum.dtype).index_add_(0, band[keep], power[keep])
    counts = torch.zeros(bands, dtype=lum.dtype).index_add_(0, band[keep], torch.ones_like(power[keep]))
    return (sums / counts.clamp_min(1))[1:]


def spectrum_distance(a: torch.Tensor, b: torch.Tensor, bands: int = 24) -> float:
    pa, pb = radial_power_spectrum(a, bands), radial_power_spectrum(b, bands)
    return float((pa.clamp_min(1e-12).log10() - pb.clamp_min(1e-12).log10()).abs().mean())


def colour_histogram(image: torch.Tensor, bins: int = 8) -> torch.Tensor:
    rgb = image.reshape(-1, *image.shape[-2:]).double()
    if rgb.shape[0] == 1:
        rgb = rgb.expand(3, -1, -1)
    q = (rgb.clamp(0, 1) * bins).long().clamp(max=bins - 1)
    index = (q[0] * bins + q[1]) * bins + q[2]
    hist = torch.bincount(index.flatten(), minlength=bins ** 3).double()
    return hist / hist.sum()


def colour_distance(a: torch.Tensor, b: torch.Tensor, bins: int = 8) -> float:
    return float(0.5 * (colour_histogram(a, bins) - colour_histogram(b, bins)).abs().sum())


def texture_report(output: torch.Tensor, exemplar: torch.Tensor) -> dict[str, float]:
    return {"spectrum": spectrum_distance(output, exemplar), "colour": colour_distance(output, exemplar)}
