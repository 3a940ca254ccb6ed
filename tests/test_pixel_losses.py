"""Pixel losses: values against direct formulas and torch, reductions, dtypes, errors."""
import math

import pytest
import torch
import torch.nn.functional as F

from fastperc import losses


def pair(shape=(3, 2, 9, 7), dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=dtype), torch.rand(shape, generator=g, dtype=dtype)


def test_mae_mse_match_torch_mean():
    x, y = pair()
    assert torch.allclose(losses.mae(x, y), F.l1_loss(x, y), rtol=1e-14)
    assert torch.allclose(losses.l1(x, y), F.l1_loss(x, y), rtol=1e-14)
    assert torch.allclose(losses.mse(x, y), F.mse_loss(x, y), rtol=1e-14)


def test_per_image_values_and_reductions():
    x, y = pair()
    per_mse = torch.stack([((x[b] - y[b]) ** 2).mean() for b in range(x.shape[0])])
    per_mae = torch.stack([(x[b] - y[b]).abs().mean() for b in range(x.shape[0])])
    for fn, per in ((losses.mse, per_mse), (losses.mae, per_mae), (losses.rmse, per_mse.sqrt())):
        assert torch.allclose(fn(x, y, reduction="none"), per, rtol=1e-14)
        assert torch.allclose(fn(x, y, reduction="sum"), per.sum(), rtol=1e-14)
        assert torch.allclose(fn(x, y, reduction="mean"), per.mean(), rtol=1e-14)
    # RMSE takes the root per image, before the batch mean.
    assert not torch.allclose(losses.rmse(x, y), per_mse.mean().sqrt(), rtol=1e-6)


def test_psnr_hand_computed_and_data_range():
    x = torch.zeros(2, 1, 4, 4, dtype=torch.float64)
    y = x.clone()
    y[0] += 0.1  # MSE 0.01 -> 20 dB at range 1
    y[1, 0, 0, 0] = 1.0  # MSE 1/16 -> 10 log10(16)
    per = losses.psnr(x, y, data_range=1.0, reduction="none")
    assert per[0].item() == pytest.approx(20.0, abs=1e-10)
    assert per[1].item() == pytest.approx(10 * math.log10(16), abs=1e-10)
    assert losses.psnr(x * 255, y * 255, data_range=255).item() == pytest.approx(per.mean().item(), abs=1e-9)
    assert losses.psnr(x, x, data_range=1.0).item() == math.inf


def test_psnr_matches_skimage_per_image():
    skimage_metrics = pytest.importorskip("skimage.metrics")
    x, y = pair((2, 3, 16, 16))
    ours = losses.psnr(x, y, data_range=1.0, reduction="none")
    for b in range(2):
        ref = skimage_metrics.peak_signal_noise_ratio(x[b].numpy(), y[b].numpy(), data_range=1.0)
        assert ours[b].item() == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_accumulates_in_float32(dtype):
    x, y = pair((2, 3, 64, 64), dtype=torch.float64)
    for fn in (losses.mae, losses.mse, losses.rmse):
        got = fn(x.to(dtype), y.to(dtype))
        assert got.dtype == torch.float32
        want = fn(x.to(dtype).double(), y.to(dtype).double())
        assert abs(got.item() - want.item()) <= 1e-6 * want.item()


def test_modules_and_gradients():
    x, y = pair((2, 3, 5, 5))
    x.requires_grad_(True)
    for module, fn in ((losses.MAELoss(), losses.mae), (losses.MSELoss("sum"), lambda a, b: losses.mse(a, b, "sum")),
                       (losses.RMSELoss("none"), lambda a, b: losses.rmse(a, b, "none")),
                       (losses.PSNR(1.0), lambda a, b: losses.psnr(a, b, 1.0))):
        assert torch.equal(module(x, y), fn(x, y))
    assert torch.autograd.gradcheck(lambda a: losses.rmse(a, y), (x,))
    assert torch.autograd.gradcheck(lambda a: losses.psnr(a, y, 2.0), (x,))


def test_bad_input():
    x, y = pair()
    with pytest.raises(ValueError, match="same shape"):
        losses.mse(x, y[:, :1])
    with pytest.raises(TypeError, match="same dtype"):
        losses.mae(x, y.float())
    with pytest.raises(TypeError, match="float16"):
        losses.mse(x.long(), y.long())
    with pytest.raises(TypeError, match="torch.Tensor"):
        losses.mse(x.numpy(), y)
    with pytest.raises(ValueError, match="batched"):
        losses.mse(x[0, 0, 0], y[0, 0, 0])
    with pytest.raises(ValueError, match="empty"):
        losses.mse(x[:0], y[:0])
    with pytest.raises(ValueError, match="reduction"):
        losses.mae(x, y, reduction="max")
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="data_range"):
            losses.psnr(x, y, data_range=bad)
    with pytest.raises(TypeError, match="data_range"):
        losses.psnr(x, y, data_range=torch.tensor(1.0))
    with pytest.raises(ValueError, match="data_range"):
        losses.PSNR(data_range=0)
