"""fastperc under torch.distributed: 2 CPU processes (gloo) launched with torchrun, compared with one
process on the combined data. Float64 runs must agree to 1e-10 (only the order of the sums differs);
float32 to 1e-4 relative."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import distributed_worker as worker
import fastperc
from fastperc import distributed
from fastperc.sparse import SparseTensor
from fastperc.sparse import nn as snn

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().with_name("distributed_worker.py")
RANKS = 2


# torchrun runs each rank with OMP_NUM_THREADS=1; the one-process runs do too, since torch's float32
# reductions (a mean over an image) round differently with another number of threads.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(WORKER.parent)]), "OMP_NUM_THREADS": "1"}


def torchrun(*args, timeout=600, check=True, cwd=None):
    """`torchrun --standalone --nproc-per-node 2 ARGS` with the repo importable; fails the test with
    the processes' output when the job fails (with check)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={RANKS}", *map(str, args)]
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert not check or out.returncode == 0, f"{' '.join(cmd)}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out


def run_python(*args, timeout=600, check=True, cwd=None):
    out = subprocess.run([sys.executable, *map(str, args)], env=ENV, capture_output=True, text=True, timeout=timeout,
                         cwd=cwd)
    assert not check or out.returncode == 0, f"{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out


def tolerance(dtype):
    return dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)


def assert_same_state(single: dict, ranks: dict, dtype=torch.float64):
    assert single.keys() == ranks.keys()
    for key in single:
        torch.testing.assert_close(ranks[key], single[key], **tolerance(dtype), msg=lambda m: f"{key}: {m}")


# ----------------------------------------------------------------------------------- helpers, one process

def test_helpers_without_a_process_group(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert (distributed.rank(), distributed.world_size(), distributed.launched()) == (0, 1, False)
    assert fastperc.info(print_table=False)["distributed"].startswith("one process; backends gloo")
    assert distributed.shard(range(5)) == [0, 1, 2, 3, 4]
    assert distributed.shard(range(5), 1, 2) == [1, 3] and distributed.shard(range(5), 0, 2) == [0, 2, 4]
    values = torch.tensor([1.0, 2.0, 6.0])
    assert distributed.mean_over_ranks(values).item() == 3.0
    assert torch.equal(distributed.all_reduce_mean(values), values)
    assert distributed.gather_objects({"a": 1}) == [{"a": 1}]
    with pytest.raises(ValueError, match="no rank"):
        distributed.mean_over_ranks(torch.zeros(0))
    with pytest.raises(ValueError, match="device"):
        distributed.setup("tpu")


def test_select_batch_keeps_the_items_sites_renumbered():
    coords = torch.tensor([[0, 1, 1, 1], [2, 0, 0, 0], [1, 3, 3, 3], [2, 5, 5, 5]], dtype=torch.int32)
    x = SparseTensor(coords, torch.arange(8.0).reshape(4, 2), spatial_shape=(8, 8, 8))
    part = fastperc.sparse.select_batch(x, [2, 0])
    assert part.coords.tolist() == [[1, 1, 1, 1], [0, 0, 0, 0], [0, 5, 5, 5]]
    assert part.feats[:, 0].tolist() == [0.0, 2.0, 6.0] and part.spatial_shape == (8, 8, 8)
    assert len(fastperc.sparse.select_batch(x, []).coords) == 0
    with pytest.raises(ValueError, match="repeat"):
        fastperc.sparse.select_batch(x, [1, 1])


def test_rank_from_torchrun_environment_and_warnings_on_rank_0_only(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert (distributed.rank(), distributed.world_size(), distributed.launched()) == (1, 2, True)
    assert fastperc.info(print_table=False)["distributed"].startswith("rank 1 of 2; backends gloo")
    assert distributed.rank_seed(7) == 8 and distributed.shard(range(5)) == [1, 3]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        distributed.warn("fastperc: said once per job")
        fastperc.models.vgg16()  # its random-weights warning
    assert caught == []
    monkeypatch.setenv("RANK", "0")
    with pytest.warns(UserWarning, match="seeded random filters"):
        fastperc.models.vgg16()


def test_sync_batchnorm_is_batchnorm_without_a_group():
    torch.manual_seed(0)
    coords, feats, upstream, weight, bias = worker.scenario_inputs((40,), torch.float64)
    plain = worker.run_layer(snn.SparseBatchNorm(worker.CHANNELS).double(), coords, feats, upstream, weight, bias)
    synced = worker.run_layer(snn.SparseSyncBatchNorm(worker.CHANNELS).double(), coords, feats, upstream, weight, bias)
    for key in plain:
        torch.testing.assert_close(synced[key], plain[key], rtol=0, atol=0)


def test_convert_sync_batchnorm_keeps_parameters_statistics_dtype_and_mode():
    net = fastperc.models.MinkUNet().double()
    with torch.no_grad():
        net.stem[1].running_mean.fill_(0.25)
        net.stem[1].weight.fill_(2.0)
    net.stem[1].bias.requires_grad_(False)
    net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    converted = snn.convert_sync_batchnorm(net)
    assert converted is net
    norms = [m for m in net.modules() if isinstance(m, snn.SparseBatchNorm)]
    assert norms and all(isinstance(m, snn.SparseSyncBatchNorm) for m in norms)
    assert all(not m.training and m.weight.dtype == torch.float64 for m in norms)
    assert not net.stem[1].bias.requires_grad and net.stem[1].weight.requires_grad
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key
    single = snn.convert_sync_batchnorm(snn.SparseBatchNorm(3, affine=False, track_running_stats=False))
    assert isinstance(single, snn.SparseSyncBatchNorm) and single.weight is None


# ----------------------------------------------------------------------------------- 2 processes

def test_sync_batchnorm_equals_batchnorm_on_the_union_of_all_ranks(tmp_path):
    torchrun(WORKER, "syncbn", tmp_path)
    per_rank = [torch.load(tmp_path / f"syncbn_rank{r}.pt") for r in range(RANKS)]
    for name, counts, dtype, options in worker.SCENARIOS:
        coords, feats, upstream, weight, bias = worker.scenario_inputs(counts, dtype)
        union = worker.run_layer(snn.SparseBatchNorm(worker.CHANNELS, **options).to(dtype), coords, feats, upstream,
                                 weight, bias)
        tol = tolerance(dtype)
        for r, got in enumerate(per_rank):
            rows = worker.rank_rows(counts, r)
            got = got[name]
            for key in ("y", "grad_x"):
                for step, (a, b) in enumerate(zip(got[key], union[key])):
                    torch.testing.assert_close(a, b[rows], **tol, msg=lambda m: f"{name} rank {r} {key}[{step}]: {m}")
            torch.testing.assert_close(got["eval_y"], union["eval_y"][rows], **tol)
            torch.testing.assert_close(got["running_mean"], union["running_mean"], **tol)
            torch.testing.assert_close(got["running_var"], union["running_var"], **tol)
        # Parameter gradients are each rank's share; DDP's average (here the sum) is the union's.
        for key in ("grad_weight", "grad_bias"):
            for step, expected in enumerate(union[key]):
                torch.testing.assert_close(sum(p[name][key][step] for p in per_rank), expected, **tol)


def test_every_loss_module_and_sparse_layer_under_ddp_equals_one_process(tmp_path, monkeypatch):
    # SSIM, MS-SSIM, L1+SSIM, MAE, MSE, RMSE, PSNR, perceptual, VGG style and LPIPS losses on a conv
    # layer's output, and every sparse layer (SparseSyncBatchNorm for the norm) on 4 clouds of different
    # sizes: 2 SGD steps on a global batch of 4, split 2 + 2 over the ranks.
    torchrun(WORKER, "modules", tmp_path)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random VGG / AlexNet filters
        single = worker.train_modules()
    assert_same_state(single, torch.load(tmp_path / "modules.pt"))
    # cleanup() destroyed the group: no gloo thread (socket loop or worker) runs into interpreter exit.
    for r in range(RANKS):
        threads = (tmp_path / f"threads_rank{r}.txt").read_text().split() if sys.platform == "linux" else []
        assert not [t for t in threads if "gloo" in t], f"rank {r} still runs {threads}"


def printed_losses(stdout: str) -> list[float]:
    return [float(v) for v in re.findall(r"^step .*?loss ([0-9.e+-]+) ", stdout, re.M)]


def test_minkunet_under_ddp_on_split_scan_equals_one_process(tmp_path):
    # The scan's 4 sector tiles: one process holds all of them, each of 2 ranks holds 2 (different site
    # counts), with SparseSyncBatchNorm and the loss averaged over every rank's sites.
    script = ROOT / "examples" / "minkunet_scan.py"
    args = ["--voxel", "0.5", "--steps", "3", "--tiles", "4", "--dtype", "float64"]
    single = run_python(script, *args, "--checkpoint", tmp_path / "single.pt")
    ranks = torchrun(script, *args, "--checkpoint", tmp_path / "ddp.pt")
    assert "rank 0 of 2 holds tiles [0, 2]" in ranks.stdout
    losses = printed_losses(single.stdout)
    assert len(losses) == 3 and losses[-1] < losses[0]
    torch.testing.assert_close(printed_losses(ranks.stdout), losses, rtol=1e-9, atol=0)
    assert_same_state(torch.load(tmp_path / "single.pt"), torch.load(tmp_path / "ddp.pt"))


def test_feedforward_style_under_compiled_ddp_equals_one_process(tmp_path):
    # Perceptual, style, TV and L1 + SSIM losses; a global batch of 4 split 2 + 2; torch.compile on top
    # of DDP (aot_eager: dynamo, DDP's bucketed graph splitting and AOT autograd, without the minutes
    # of C++ code generation inductor takes here; the inductor run is recorded in RESULTS.md).
    script = ROOT / "examples" / "feedforward_style.py"
    args = ["--steps", "3", "--size", "32", "--batch", "4", "--dtype", "float64", "--pixel-weight", "1"]
    single = run_python(script, *args, "--checkpoint", tmp_path / "single.pt", "-o", tmp_path / "single.png")
    ranks = torchrun(script, *args, "--compile", "aot_eager", "--checkpoint", tmp_path / "ddp.pt",
                     "-o", tmp_path / "ddp.png")
    assert len(printed_losses(single.stdout)) == 3
    torch.testing.assert_close(printed_losses(ranks.stdout), printed_losses(single.stdout), rtol=1e-9, atol=0)
    assert_same_state(torch.load(tmp_path / "single.pt"), torch.load(tmp_path / "ddp.pt"))
    # Rank 0 alone wrote, and said so once: one copy of each line, one note on random weights.
    assert ranks.stdout.count("wrote") == 2 and ranks.stderr.count("seeded random filters") == 1


# ----------------------------------------------------------------------------------- compare

@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two folders of 9 pairs: noisy copies at two sizes (MS-SSIM needs > 160 px), an identical pair (PSNR
    inf), a grayscale image against an RGB one, and a file only in one folder."""
    from fastperc.image import write_image

    root = tmp_path_factory.mktemp("pairs")
    (root / "a").mkdir()
    (root / "b").mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(7):
        x = torch.rand(1, 3, 200 if i % 3 else 64, 180, generator=g)
        y = x if i == 2 else (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
        write_image(x, root / "a" / f"img{i}.png")
        write_image(y, root / "b" / f"img{i}.png")
    write_image(torch.rand(1, 1, 64, 64, generator=g), root / "a" / "gray.png")
    write_image(torch.rand(1, 3, 64, 64, generator=g), root / "b" / "gray.png")
    write_image(torch.rand(1, 3, 64, 64, generator=g), root / "a" / "lonely.png")
    return root


def test_compare_writes_every_pair_as_csv_and_json(folders, tmp_path):
    import csv
    import json

    from fastperc.apps import compare

    out = run_python("-m", "fastperc.cli", "compare", "a", "b", "--csv", tmp_path / "m.csv", "--json", tmp_path / "m.json",
                     cwd=folders)
    assert "lonely.png is only in a" in out.stderr and "grayscale expanded" in out.stderr
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    doc = json.load(open(tmp_path / "m.json"))
    names = [f"img{i}.png" for i in range(7)]
    assert [r["pair"] for r in rows] == [p["pair"] for p in doc["pairs"]] == ["gray.png"] + names
    assert doc["metrics"] == list(compare.DEFAULT_METRICS)
    for row, entry in zip(rows, doc["pairs"]):
        a, b, _ = compare.load_pair(folders / row["a"], folders / row["b"])
        expected = compare.compute(a, b, compare.DEFAULT_METRICS)
        for m, value in expected.items():
            if value is None:  # MS-SSIM of images under 161 px
                assert row[m] == "" and entry[m] is None
            elif value == float("inf"):  # the identical pair
                assert row[m] == entry[m] == "inf" and row["pair"] == "img2.png"
            else:
                assert float(row[m]) == entry[m] == pytest.approx(value, rel=1e-6, abs=1e-7)
    # The means skip the pairs where a metric does not apply, as the table's last row does.
    ms = [e["ms-ssim"] for e in doc["pairs"] if e["ms-ssim"] is not None]
    assert len(ms) == 4 and doc["mean"]["ms-ssim"] == pytest.approx(sum(ms) / 4, rel=1e-12)
    assert doc["mean"]["psnr"] == "inf"
    assert f"{doc['mean']['ssim']:.4f}" in out.stdout.splitlines()[-3]


def test_compare_under_torchrun_equals_one_process(folders, tmp_path):
    single = run_python("-m", "fastperc.cli", "compare", "a", "b", "--csv", tmp_path / "1.csv",
                        "--json", tmp_path / "1.json", cwd=folders)
    ranks = torchrun("-m", "fastperc.cli", "compare", "a", "b", "--csv", tmp_path / "2.csv",
                     "--json", tmp_path / "2.json", cwd=folders)
    # Exactly: per-pair values computed alike, gathered (no arithmetic across ranks), means in pair order.
    assert (tmp_path / "1.csv").read_bytes() == (tmp_path / "2.csv").read_bytes()
    assert (tmp_path / "1.json").read_bytes() == (tmp_path / "2.json").read_bytes()
    assert ranks.stdout.replace("2.csv", "1.csv").replace("2.json", "1.json") == single.stdout
    # One voice: each note once, the progress line from rank 0 only (its 4 of the 8 pairs).
    assert ranks.stderr.count("lonely.png is only in a") == 1 and ranks.stderr.count("grayscale expanded") == 1
    progress = [line for line in ranks.stderr.splitlines() if line.startswith("compare")]
    assert progress and all(line.startswith("compare (rank 0 of 2)") for line in progress)
    assert progress[-1].startswith("compare (rank 0 of 2) 4/4")


def test_compare_under_torchrun_stops_every_rank_on_a_bad_file(folders, tmp_path):
    import shutil

    for side in ("a", "b"):
        shutil.copytree(folders / side, tmp_path / side)
        (tmp_path / side / "img3.png").write_bytes(b"not a png")  # a pair of rank 1's
    out = torchrun("-m", "fastperc.cli", "compare", "a", "b", "--csv", tmp_path / "m.csv", cwd=tmp_path, check=False,
                   timeout=300)
    assert out.returncode != 0 and out.stderr.count("error: ") == 1 and "img3.png" in out.stderr
    assert not (tmp_path / "m.csv").exists()


def test_one_process_commands_refuse_to_run_under_a_launcher(monkeypatch, capsys):
    from fastperc import cli

    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, said in (("0", 1), ("1", 0)):
        monkeypatch.setenv("RANK", rank)
        assert cli.main(["texture", "style.png", "-o", "out.png"]) == 2
        assert cli.main(["bench", "--quick"]) == 2
        err = capsys.readouterr().err
        assert err.count("runs in one process") == 2 * said


def test_readme_distributed_block_runs_under_torchrun(tmp_path):
    import test_readme

    blocks = [p.values[0] for p in test_readme.python_blocks() if "distributed.setup" in p.values[0]]
    assert len(blocks) == 1
    script = tmp_path / "readme_ddp.py"
    # Each rank reports to its own file (two processes' prints can interleave on one pipe).
    script.write_text(blocks[0] + "open(f'rank{distributed.rank()}.txt', 'w').write(f'{distributed.world_size()} "
                                  "{len(x.coords)} {float(loss)}')\n")
    torchrun(script, cwd=tmp_path)
    said = [(tmp_path / f"rank{r}.txt").read_text().split() for r in range(RANKS)]
    assert [s[0] for s in said] == ["2", "2"]
    # Each rank voxelised its half of the points, and the loss is each rank's share of the global mean.
    sites = [int(s[1]) for s in said]
    assert 0 < sites[0] != sites[1] > 0
