"""Public SSIM API: presets against the peer libraries, MS-SSIM, losses, errors, opcheck, compile."""
import importlib.util

import pytest
import torch
import torch.nn.functional as F

import fastperc
from fastperc.functional.ssim import window_1d


def pair(shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x.to(dtype), y.to(dtype)


def needs(module):
    # The peers are an optional extra (README: the peers line keeps your torch); CI installs them.
    return pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"{module} not installed")


def gs_3dgs(img1, img2):
    """The 3D Gaussian Splatting SSIM written out: zero-padded 'same' gaussian conv, data range 1."""
    c = img1.shape[1]
    g = window_1d(11, 1.5, "gaussian", img1.dtype, "cpu")
    w = (g[:, None] * g[None, :]).expand(c, 1, 11, 11)
    mu1, mu2 = F.conv2d(img1, w, padding=5, groups=c), F.conv2d(img2, w, padding=5, groups=c)
    s1 = F.conv2d(img1 * img1, w, padding=5, groups=c) - mu1**2
    s2 = F.conv2d(img2 * img2, w, padding=5, groups=c) - mu2**2
    s12 = F.conv2d(img1 * img2, w, padding=5, groups=c) - mu1 * mu2
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s1 + s2 + c2))).mean()


def test_preset_3dgs():
    x, y = pair((2, 3, 40, 50))
    torch.testing.assert_close(fastperc.ssim(x, y, 1.0, preset="3dgs"), gs_3dgs(x, y), rtol=1e-12, atol=0)
    torch.testing.assert_close(fastperc.ssim(x, y, 1.0, preset="fused_ssim"), gs_3dgs(x, y), rtol=1e-12, atol=0)


@needs("pytorch_msssim")
def test_preset_pytorch_msssim():
    import pytorch_msssim as pm

    x, y = pair((2, 3, 64, 70))
    # pytorch-msssim builds its window in float32, hence ~1e-8 on float64 inputs
    torch.testing.assert_close(fastperc.ssim(x, y, 1.0, preset="pytorch_msssim"), pm.ssim(x, y, data_range=1.0), rtol=0, atol=1e-7)
    xs, ys = x * 255, y * 255
    torch.testing.assert_close(fastperc.ssim(xs, ys, 255), pm.ssim(xs, ys, data_range=255), rtol=0, atol=1e-7)
    torch.testing.assert_close(fastperc.ssim(x, y, 1.0, reduction="none"), pm.ssim(x, y, data_range=1.0, size_average=False), rtol=0, atol=1e-7)
    xb, yb = pair((2, 3, 200, 210))
    torch.testing.assert_close(fastperc.ms_ssim(xb, yb, 1.0), pm.ms_ssim(xb, yb, data_range=1.0), rtol=0, atol=1e-6)
    v3, w3 = pair((1, 2, 20, 21, 22))
    torch.testing.assert_close(fastperc.ssim(v3, w3, 1.0), pm.ssim(v3, w3, data_range=1.0), rtol=0, atol=1e-7)


@needs("kornia")
def test_preset_kornia():
    import kornia

    x, y = pair((2, 3, 40, 37))
    # kornia adds eps = 1e-12 to the denominator
    torch.testing.assert_close(fastperc.ssim(x, y, 1.0, preset="kornia", reduction="map"), kornia.metrics.ssim(x, y, 11), rtol=0, atol=1e-9)


@needs("torchmetrics")
def test_preset_torchmetrics():
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    x, y = pair((2, 3, 40, 37))
    torch.testing.assert_close(fastperc.ssim(x, y, 1.0, preset="torchmetrics"), tm_ssim(x, y, data_range=1.0), rtol=1e-12, atol=0)


@needs("skimage")
def test_preset_skimage():
    from skimage.metrics import structural_similarity

    x, y = pair((1, 3, 40, 37))
    a, b = x[0].permute(1, 2, 0).numpy(), y[0].permute(1, 2, 0).numpy()
    exp = structural_similarity(a, b, data_range=1.0, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    assert abs(fastperc.ssim(x, y, 1.0, preset="skimage").item() - exp) < 1e-12


def test_ms_ssim_reference_and_negative_cs():
    x, y = pair((2, 2, 180, 181))
    xr = x.clone().requires_grad_(True)
    v = fastperc.ms_ssim(xr, y, 1.0)
    v.backward()
    assert 0 < v.item() < 1 and torch.isfinite(xr.grad).all()
    # anti-correlated images: negative CS at the first scales gives 0, with a finite (zero) gradient
    a = torch.rand(1, 1, 180, 180, dtype=torch.float64)
    a_r = a.clone().requires_grad_(True)
    v = fastperc.ms_ssim(a_r, 1 - a, 1.0)
    v.backward()
    assert v.item() == 0.0 and torch.isfinite(a_r.grad).all()
    with pytest.raises(ValueError, match="smallest spatial side > 160"):
        fastperc.ms_ssim(torch.rand(1, 1, 160, 300), torch.rand(1, 1, 160, 300), 1.0)
    assert fastperc.ms_ssim(torch.rand(1, 1, 40, 40), torch.rand(1, 1, 40, 40), 1.0, weights=[0.5, 0.5], win_size=7).isfinite()


def test_losses():
    x, y = pair((2, 3, 32, 33))
    xr = x.clone().requires_grad_(True)
    loss = fastperc.L1SSIMLoss()(xr, y)
    expected = 0.8 * (x - y).abs().mean() + 0.2 * (1 - gs_3dgs(x, y))
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    loss.backward()
    xe = x.clone().requires_grad_(True)
    (0.8 * (xe - y).abs().mean() + 0.2 * (1 - gs_3dgs(xe, y))).backward()
    torch.testing.assert_close(xr.grad, xe.grad, rtol=1e-10, atol=1e-15)
    torch.testing.assert_close(fastperc.SSIMLoss(1.0)(x, y), 1 - fastperc.ssim(x, y, 1.0))
    xb, yb = pair((1, 3, 170, 170))
    torch.testing.assert_close(fastperc.MSSSIMLoss(1.0)(xb, yb), 1 - fastperc.ms_ssim(xb, yb, 1.0))


def test_gradcheck():
    x, y = pair((1, 2, 9, 10))
    x.requires_grad_(True)
    y.requires_grad_(True)
    for padding in ("valid", "zero", "reflect"):
        assert torch.autograd.gradcheck(lambda a, b: fastperc.ssim(a, b, 1.0, win_size=5, padding=padding), (x, y))
        assert torch.autograd.gradcheck(lambda a, b: fastperc.ssim(a, b, 1.0, win_size=3, padding=padding, reduction="map"), (x, y))
    assert torch.autograd.gradcheck(lambda a, b: fastperc.l1_ssim_loss(a, b, win_size=5), (x, y))
    v, w = pair((1, 1, 6, 7, 6))
    v.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: fastperc.ssim(a, w, 1.0, win_size=3, padding="reflect"), (v,))


@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(requires_grad):
    x, y = pair((2, 2, 12, 13))
    x.requires_grad_(requires_grad)
    y.requires_grad_(requires_grad)
    w = window_1d(5, 1.5, "gaussian", torch.float64, "cpu")
    for padding in (0, 1, 2):
        torch.library.opcheck(torch.ops.fastperc.ssim.default, (x, y, w, 1e-4, 9e-4, padding))
        torch.library.opcheck(torch.ops.fastperc.ssim_map.default, (x, y, w, 1e-4, 9e-4, padding))
    shape = (2, 2, 8, 9)
    gs = torch.randn(2, 2, 1, 1, dtype=torch.float64).expand(shape)
    gl = torch.randn(x.shape, dtype=torch.float64)
    torch.library.opcheck(torch.ops.fastperc.ssim_backward.default, (gs, None, gl, x.detach(), y.detach(), w, 1e-4, 9e-4, 0))
    torch.library.opcheck(torch.ops.fastperc.ssim_backward.default, (gs, gs, None, x.detach(), y.detach(), w, 1e-4, 9e-4, 0))
    for mask in ([True, False], [False, True]):
        torch.library.opcheck(torch.ops.fastperc.ssim_backward.default,
                              (gs, None, gl, x.detach(), y.detach(), w, 1e-4, 9e-4, 0, mask))


def test_compile_fullgraph():
    torch._dynamo.reset()

    def loss(a, b):
        return fastperc.l1_ssim_loss(a, b) + (1 - fastperc.ssim(a, b, 1.0, padding="reflect"))

    x, y = pair((2, 3, 24, 25), dtype=torch.float32)
    xc = x.clone().requires_grad_(True)
    xe = x.clone().requires_grad_(True)
    out = torch.compile(loss, fullgraph=True)(xc, y)
    out.backward()
    ref = loss(xe, y)
    ref.backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(xc.grad, xe.grad)


def test_compile_fullgraph_ms_ssim():
    torch._dynamo.reset()
    x, y = pair((1, 2, 181, 167), dtype=torch.float32)  # odd sizes: the pooling pads at several scales
    xc = x.clone().requires_grad_(True)
    xe = x.clone().requires_grad_(True)
    out = torch.compile(lambda a, b: 1 - fastperc.ms_ssim(a, b, 1.0, win_size=7), fullgraph=True)(xc, y)
    out.backward()
    ref = 1 - fastperc.ms_ssim(xe, y, 1.0, win_size=7)
    ref.backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(xc.grad, xe.grad)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_ms_ssim_low_precision_pools_in_float32(dtype):
    """The downsampled scales of float16/bfloat16 images are pooled and kept in float32: MS-SSIM then
    matches float64 on the same rounded values to float32 accuracy, gradients in the input's dtype."""
    x, y = pair((1, 2, 200, 190), dtype=dtype)
    xr = x.clone().requires_grad_(True)
    got = fastperc.ms_ssim(xr, y, 1.0)
    got.backward()
    assert got.dtype == torch.float32 and xr.grad.dtype == dtype
    expected = fastperc.ms_ssim(x.double(), y.double(), 1.0)
    assert abs(got.item() - expected.item()) < 2e-6


@pytest.mark.parametrize("shape", [(2, 3, 9, 8), (1, 2, 7, 11), (1, 1, 6, 6), (1, 1, 5, 6, 7), (2, 1, 8, 8, 9)], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "transposed"])
def test_half_pool_is_avg_pool(shape, layout):
    from fastperc.functional.ssim import half_pool

    x = torch.randn(shape, dtype=torch.float64)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    elif layout == "transposed":
        x = x.transpose(-1, -2).contiguous().transpose(-1, -2)
    x.requires_grad_(True)
    odd = [size % 2 for size in shape[2:]]
    pool = torch.nn.functional.avg_pool3d if x.dim() == 5 else torch.nn.functional.avg_pool2d
    expected = pool(x, kernel_size=2, padding=odd)
    got = half_pool(x, odd)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-15)
    g = torch.randn_like(expected)
    torch.testing.assert_close(torch.autograd.grad(got, x, g)[0], torch.autograd.grad(expected, x, g)[0], rtol=0, atol=0)
    assert torch.autograd.gradcheck(lambda t: half_pool(t, odd), (x,))
    assert torch.autograd.gradgradcheck(lambda t: half_pool(t, odd), (x,))


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda x, y: fastperc.ssim(x, y), TypeError, "data_range"),
        (lambda x, y: fastperc.ssim(x, y, None), ValueError, "data_range must be a finite number > 0"),
        (lambda x, y: fastperc.ssim(x, y, 0.0), ValueError, "data_range"),
        (lambda x, y: fastperc.ssim(x, y, float("nan")), ValueError, "data_range"),
        (lambda x, y: fastperc.ssim(x, y[:, :2], 1.0), ValueError, "y must have the shape of x"),
        (lambda x, y: fastperc.ssim(x, y.double(), 1.0), TypeError, "y must have the dtype of x"),
        (lambda x, y: fastperc.ssim(x, y.to("meta"), 1.0), ValueError, "y is on meta"),
        (lambda x, y: fastperc.ssim(x[0], y[0], 1.0), ValueError, r"\(B, C, H, W\) or \(B, C, D, H, W\)"),
        (lambda x, y: fastperc.ssim(x.int(), y.int(), 1.0), TypeError, "float16, bfloat16"),
        (lambda x, y: fastperc.ssim(x[:0], y[:0], 1.0), ValueError, "B = 0 has no SSIM"),
        (lambda x, y: fastperc.ssim(x, y, 1.0, win_size=4), ValueError, "odd integer"),
        (lambda x, y: fastperc.ssim(x, y, 1.0, sigma=0), ValueError, "sigma"),
        (lambda x, y: fastperc.ssim(x, y, 1.0, k1=0), ValueError, "k1 must be > 0"),
        (lambda x, y: fastperc.ssim(x, y, 1.0, padding="same"), ValueError, "padding must be one of"),
        (lambda x, y: fastperc.ssim(x, y, 1.0, preset="matlab2"), ValueError, "preset must be one of"),
        (lambda x, y: fastperc.ssim(x, y, 1.0, preset="kornia", padding="zero"), ValueError, "uses padding='reflect'"),
        (lambda x, y: fastperc.ssim(x, y, 1.0, reduction="sum"), ValueError, "reduction must be one of"),
        (lambda x, y: fastperc.ssim(x[..., :10, :], y[..., :10, :], 1.0), ValueError, "must be >= win_size=11"),
        (lambda x, y: fastperc.ssim(x[..., :5, :], y[..., :5, :], 1.0, padding="reflect"), ValueError, "> 5"),
        (lambda x, y: fastperc.l1_ssim_loss(x, y, ssim_weight=2.0), ValueError, "ssim_weight"),
    ],
)
def test_errors(call, error, match):
    x, y = pair((2, 3, 16, 16), dtype=torch.float32)
    with pytest.raises(error, match=match):
        call(x, y)


def test_window_exactly_image_size_and_edge_sizes():
    x, y = pair((1, 1, 11, 11))
    assert fastperc.ssim(x, y, 1.0, reduction="map").shape == (1, 1, 1, 1)
    for c in (1, 4):
        a, b = pair((2, c, 20, 20))
        assert fastperc.ssim(a, b, 1.0, reduction="none").shape == (2,)


def test_op_boundary_errors():
    x = torch.rand(1, 1, 16, 16)
    w = window_1d(11, 1.5, "gaussian", torch.float32, "cpu")
    with pytest.raises(RuntimeError, match="window must be 1-D with an odd number"):
        torch.ops.fastperc.ssim(x, x, w[:10], 1e-4, 9e-4, 0)
    with pytest.raises(RuntimeError, match="window must be Float"):
        torch.ops.fastperc.ssim(x, x, w.double(), 1e-4, 9e-4, 0)
    with pytest.raises(RuntimeError, match="padding must be 0"):
        torch.ops.fastperc.ssim(x, x, w, 1e-4, 9e-4, 3)
    with pytest.raises(RuntimeError, match="c1 and c2 must be finite and > 0"):
        torch.ops.fastperc.ssim(x, x, w, 0.0, 9e-4, 0)
    with pytest.raises(RuntimeError, match="at least the window size"):
        torch.ops.fastperc.ssim(x[..., :8], x[..., :8], w, 1e-4, 9e-4, 0)
    with pytest.raises(RuntimeError, match="grad_ssim must have shape"):
        torch.ops.fastperc.ssim_backward(torch.ones(1, 1, 5, 5), None, None, x, x, w, 1e-4, 9e-4, 0)


def test_fallback_matches_kernel(monkeypatch):
    from fastperc import _backend

    x, y = pair((2, 3, 30, 31))
    k = [fastperc.ssim(x, y, 1.0, preset=p) for p in ("wang", "3dgs", "kornia")]
    monkeypatch.setattr(_backend, "force_reference", True)
    r = [fastperc.ssim(x, y, 1.0, preset=p) for p in ("wang", "3dgs", "kornia")]
    for a, b in zip(k, r):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)


def test_loss_modules_validate_at_construction():
    fastperc.SSIMLoss(1.0, win_size=71)  # a large window is fine: only the inputs can be too small
    with pytest.raises(ValueError, match="odd integer"):
        fastperc.SSIMLoss(1.0, win_size=4)
    with pytest.raises(TypeError, match="unknown SSIM options"):
        fastperc.SSIMLoss(1.0, winsize=3)


def test_numpy_scalars_are_accepted_like_python_numbers():
    import numpy as np  # a dependency of fastperc

    x, y = pair((1, 2, 24, 24))
    expected = fastperc.ssim(x, y, 1.0)
    for data_range in (np.float32(1.0), np.float64(1.0), np.int64(1)):
        assert fastperc.ssim(x, y, data_range).item() == expected.item()
    assert fastperc.ssim(x, y, 1.0, win_size=np.int64(11), sigma=np.float32(1.5)).item() == expected.item()
    ms = fastperc.ms_ssim(x, y, np.float32(1.0), win_size=3, weights=np.array([0.5, 0.5]))
    assert torch.isfinite(ms)
    assert fastperc.l1_ssim_loss(x, y, np.float64(1.0), ssim_weight=np.float32(0.2)).item() > 0


def test_tiny_sigma_is_the_one_tap_window_not_nan():
    # sigma^2 underflows to 0 below ~1e-154: the window used to be 0/0 = NaN. The limit is a delta.
    w = window_1d(11, 1e-200, "gaussian", torch.float64, "cpu")
    assert torch.equal(w, torch.eye(11, dtype=torch.float64)[5])
    x, y = pair((1, 1, 20, 20))
    s = fastperc.ssim(x, y, 1.0, sigma=1e-200, padding="zero", reduction="map")
    assert torch.isfinite(s).all()
    torch.testing.assert_close(s, fastperc.ssim(x, y, 1.0, win_size=1, reduction="map"), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("weights", [(0.5, float("nan")), (float("inf"), 0.5), (0.5, -0.1)])
def test_ms_ssim_rejects_non_finite_or_negative_weights(weights):
    x, y = pair((1, 1, 64, 64))
    with pytest.raises(ValueError, match="weights must be finite and >= 0"):
        fastperc.ms_ssim(x, y, 1.0, win_size=3, weights=weights)
