"""DeepSDF: the decoder's shape and skip connection, the clamped loss, and a small auto-decoder that
learns two shapes to a Chamfer bound (DeepSDF's metric through fastperc.chamfer_distance), reconstructs
one from its samples with the decoder frozen, and interpolates."""
from __future__ import annotations

import pytest
import torch

from fastperc.geometry import make_shape, sdf
from fastperc.models.deepsdf import DeepSDF, chamfer_eval, clamped_l1, fit, interpolate, mesh, reconstruct

pytest.importorskip("skimage")  # marching cubes (the 3d extra)


def test_paper_sized_decoder_layout():
    net = DeepSDF()
    widths = [layer.weight.shape for layer in net.layers]
    assert len(widths) == 8 and widths[0] == (512, 259) and widths[3] == (512 - 259, 512) and widths[4] == (512, 512)
    assert all(hasattr(layer, "parametrizations") for layer in net.layers)  # weight norm
    out = net.eval()(torch.zeros(256), torch.rand(10, 3))
    assert out.shape == (10,) and (out.abs() < 1).all()
    with pytest.raises(ValueError, match="codes must be"):
        net(torch.zeros(3, 256), torch.rand(10, 3))
    with pytest.raises(ValueError, match="hidden"):
        DeepSDF(latent=256, hidden=200)


def test_clamped_l1():
    pred = torch.tensor([0.5, -0.05, 0.02])
    target = torch.tensor([0.2, 0.05, -0.3])
    assert clamped_l1(pred, target).item() == pytest.approx((0.0 + 0.1 + 0.12) / 3)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    shapes = [make_shape("sphere", 0), make_shape("box", 1)]
    samples = [sdf.sample_sdf(m, 20000, g) for m in shapes]
    decoder = DeepSDF(latent=16, hidden=128, dropout=0.0)
    codes, losses = fit(decoder, samples, steps=300, batch=4096, lr=1e-3, generator=g)
    return decoder, codes, losses, shapes, samples


def test_auto_decoder_learns_two_shapes_to_a_chamfer_bound(trained):
    decoder, codes, losses, shapes, _ = trained
    assert losses[-1] < 0.5 * losses[0]
    sphere, box = (mesh(decoder, codes[i], 48) for i in range(2))
    # The paper's metric, in the unit sphere: a good fit is ~1e-4 to 1e-3; the other shape is ~10x off.
    assert chamfer_eval(sphere, shapes[0]) < 1.5e-3
    assert chamfer_eval(box, shapes[1]) < 3e-3
    assert chamfer_eval(sphere, shapes[1]) > 3 * chamfer_eval(box, shapes[1])


def test_reconstruction_with_the_decoder_frozen_and_interpolation(trained):
    decoder, codes, _, shapes, samples = trained
    before = [p.detach().clone() for p in decoder.parameters()]
    code = reconstruct(decoder, *samples[1], steps=200, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(before, decoder.parameters()))
    assert chamfer_eval(mesh(decoder, code, 48), shapes[1]) < 3e-3
    path = interpolate(codes[0], codes[1], 5)
    assert torch.equal(path[0], codes[0]) and torch.allclose(path[-1], codes[1])
    middle = mesh(decoder, path[2], 32)
    assert len(middle.faces) > 0


def test_cli_trains_resumes_evaluates_and_draws(tmp_path):
    import json

    from PIL import Image
    from test_voxnet import run_cli

    out = tmp_path / "run"
    common = ["--classes", "sphere,box", "--per-class", "1", "--test-per-class", "1", "--samples", "4000",
              "--latent", "8", "--hidden", "64", "--dropout", "0", "--lr", "1e-3", "--batch", "1024",
              "--recon-steps", "20", "--mesh-resolution", "24", "--picture-size", "32", "--out", str(out)]
    first = run_cli("deepsdf", "train", *common, "--steps", "100")
    assert first.returncode == 0, first.stderr
    second = run_cli("deepsdf", "train", *common, "--steps", "150")
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stderr and "after step 100" in second.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 150 and len(metrics["train_shapes"]) == 2 and len(metrics["test_shapes"]) == 2
    assert "Chamfer" in second.stdout
    for picture in ("loss.png", "reconstructions.png", "interpolation.png"):
        assert Image.open(out / picture).size[0] >= 32 * 3
    # eval from the checkpoint alone, with train's evaluation options: the same numbers, the same pictures
    evaluated = tmp_path / "eval"
    again = run_cli("deepsdf", "eval", "--checkpoint", str(out / "deepsdf.pt"), "--recon-steps", "20",
                    "--mesh-resolution", "24", "--picture-size", "32", "--out", str(evaluated))
    assert again.returncode == 0, again.stderr
    assert json.loads((evaluated / "metrics.json").read_text()) == metrics
    for picture in ("reconstructions.png", "interpolation.png"):
        assert (evaluated / picture).read_bytes() == (out / picture).read_bytes()
    # another test set: two unseen shapes per class instead of one
    more = run_cli("deepsdf", "eval", "--checkpoint", str(out / "deepsdf.pt"), "--test-per-class", "2",
                   "--recon-steps", "20", "--mesh-resolution", "24", "--picture-size", "32", "--out", str(evaluated))
    assert more.returncode == 0, more.stderr
    assert len(json.loads((evaluated / "metrics.json").read_text())["test_shapes"]) == 4
    # unseen shapes from a ModelNet-layout folder: the training shapes (and their Chamfer) stay the run's
    from fastperc.geometry import make_shape, write_off
    for name in ("sphere", "box"):
        folder = tmp_path / "folder" / name / "test"
        folder.mkdir(parents=True)
        write_off(make_shape(name, 7), folder / f"{name}_0001.off")
    folder_eval = run_cli("deepsdf", "eval", "--checkpoint", str(out / "deepsdf.pt"), "--data", str(tmp_path / "folder"),
                          "--recon-steps", "20", "--mesh-resolution", "24", "--picture-size", "32", "--out",
                          str(tmp_path / "eval2"))
    assert folder_eval.returncode == 0, folder_eval.stderr
    from_folder = json.loads((tmp_path / "eval2" / "metrics.json").read_text())
    assert from_folder["train_shapes"] == metrics["train_shapes"] and len(from_folder["test_shapes"]) == 2
    other = run_cli("deepsdf", "train", *common[:-2], "--latent", "12", "--out", str(out), "--steps", "10")
    assert other.returncode == 2 and "another network" in other.stderr
    if not torch.cuda.is_available():
        gpu = run_cli("deepsdf", "train", *common[:-2], "--device", "cuda", "--out", str(tmp_path / "gpu"))
        assert gpu.returncode == 2 and "no CUDA device" in gpu.stderr
