"""The `fastperc` console script: info and bench, through a subprocess as a user runs them."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, timeout=600):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "fastperc.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_console_script_is_installed():
    script = shutil.which("fastperc", path=os.path.dirname(sys.executable)) or shutil.which("fastperc")
    assert script, "the fastperc console script is not installed (pip install --no-build-isolation -e .)"
    out = subprocess.run([script, "info"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "fastperc" in out.stdout


def test_info_reports_build():
    out = run_cli("info")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for key in ("fastperc", "torch", "extension", "cpu_isa", "openmp", "cuda_kernels", "cuda_archs", "devices"):
        assert key in text
    assert "loaded" in text
    if torch.version.cuda:
        assert "8.0;9.0+PTX" in text or "cuda_kernels        True" in text


def test_bench_quick_table_and_json(tmp_path):
    path = tmp_path / "bench.json"
    out = run_cli("bench", "--quick", "--op", "gram", "--json", str(path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("device=cpu dtype=float32")
    for impl in ("fastperc", "reference", "torch"):
        assert any(f" {impl} " in line for line in lines)
    assert any("geometric-mean speedup" in line for line in lines)
    data = json.loads(path.read_text())
    rows = data["rows"]
    assert {r["impl"] for r in rows} == {"fastperc", "reference", "torch"}
    assert {r["mode"] for r in rows} == {"fwd", "fwd+bwd"}
    for r in rows:
        assert r["ms"] > 0 and r["err"] < 1e-4, r


def test_bench_rejects_missing_cuda_and_bad_op():
    if not torch.cuda.is_available():
        out = run_cli("bench", "--device", "cuda")
        assert out.returncode == 2 and "no CUDA device" in out.stderr
    out = run_cli("bench", "--op", "conv")
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_bench_quick_ssim_against_peers(tmp_path):
    path = tmp_path / "ssim.json"
    out = run_cli("bench", "--quick", "--op", "ssim", "--json", str(path))
    assert out.returncode == 0, out.stderr
    rows = json.loads(path.read_text())["rows"]
    impls = {r["impl"] for r in rows}
    assert {"fastperc", "reference"} <= impls
    for r in rows:
        assert r["mpx_s"] > 0 and r["err"] < 1e-4, r
        if r["impl"] == "fastperc":
            assert r["fastperc_speedup"] == 1.0
    # the summary names what fastperc was compared with: the peers that ran (or the only one)
    others = sorted({r["impl"] for r in rows if r["impl"] not in ("fastperc", "reference") and r["ms"] == r["ms"]})
    named = others[0] if len(others) == 1 else "the fastest of " + ", ".join(others)
    assert others and f"fastperc ssim fwd: geometric-mean speedup over {named} " in out.stdout, out.stdout


def test_bench_isa_all_runs_every_isa_capped_and_side_by_side(tmp_path):
    from conftest import supported_isas

    from fastperc import bench

    path = tmp_path / "isa.json"
    out = run_cli("bench", "--quick", "--op", "gram", "--isa", "all", "--json", str(path))
    assert out.returncode == 0, out.stderr
    combined = json.loads(path.read_text())
    assert combined["isas"] == supported_isas()
    for isa in supported_isas():
        result = combined["per_isa"][isa]
        assert result["isa"] == isa and result["cpu"]["model"]  # fastperc ran capped to it
        if isa == "generic":
            assert result["capability"] == "DEFAULT"  # so did torch's own kernels
        # %pk's GEMM keeps to the cap below the CPU's best ISA (MKL ignores its cap on AMD; oneDNN does not)
        # (uncapped, the faster of torch.mm and oneDNN's: MKL's may not use the widest vectors). aarch64
        # has no ISA below ASIMD to cap the GEMM libraries to: every run there is uncapped.
        best = isa == supported_isas()[-1] or "ONEDNN_MAX_CPU_ISA" not in bench.isa_env(isa)
        source = result["gemm_peak_source"]
        assert (source == "torch.mm" or source.startswith("oneDNN; torch.mm ")) if best else source.startswith(
            "oneDNN under ONEDNN_MAX_CPU_ISA="), source
        assert f"GEMM peak ({result['gemm_peak_source']})" in out.stdout
        assert {"fastperc", "torch", "reference"} <= {r["impl"] for r in result["rows"]}
        # below the best ISA, the composite's products also run in oneDNN under the cap (fwd and fwd+bwd
        # of the two quick shapes), and agree with the reference
        capped = [r for r in result["rows"] if r["impl"] == bench.CAPPED_GEMM]
        assert len(capped) == (0 if best or not torch.backends.mkldnn.is_available() else 4), capped
        assert all(r["err"] < 1e-5 for r in capped), capped
    assert "fastperc per CPU ISA, side by side" in out.stdout
    assert all(f"{isa} ms" in out.stdout and f"=== as a {isa} CPU runs it ===" in out.stdout for isa in supported_isas())
    assert f"[{supported_isas()[0]}] fastperc gram fwd: geometric-mean speedup over torch" in out.stdout
    if len(supported_isas()) > 1 and torch.backends.mkldnn.is_available():
        assert f"[{supported_isas()[0]}] fastperc gram fwd: geometric-mean speedup over {bench.CAPPED_GEMM}" in out.stdout
    bad = run_cli("bench", "--quick", "--op", "gram", "--isa", "sse9")
    assert bad.returncode == 2 and "this CPU runs" in bad.stderr


def test_isa_runs_cap_what_the_architecture_has():
    from fastperc import bench

    x86 = bench.isa_env("generic", "x86_64")
    assert x86["FASTPERC_CPU_ISA"] == "generic" and x86["ATEN_CPU_CAPABILITY"] == "default"
    assert x86["ONEDNN_MAX_CPU_ISA"] == "SSE41" and x86["MKL_ENABLE_INSTRUCTIONS"] == "SSE4_2"
    assert x86["MKL_CBWR"] == "COMPATIBLE"  # the cap MKL keeps on AMD too
    assert bench.isa_env("avx2", "x86_64")["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    # aarch64: no x86 ISA names; below neon, fastperc's generic build and torch's kernels without SVE
    assert bench.isa_env("generic", "aarch64") == {"FASTPERC_CPU_ISA": "generic", "ATEN_CPU_CAPABILITY": "default"}
    assert bench.isa_env("neon", "aarch64") == {"FASTPERC_CPU_ISA": "neon"}


GRACE_CPUINFO = """processor\t: 0
BogoMIPS\t: 2000.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svebf16 i8mm bf16 dgh bti
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd4f
CPU revision\t: 0
"""


def test_cpu_model_names_arm_cores_and_the_architecture():
    from fastperc import bench

    grace = bench.cpu_model(GRACE_CPUINFO, "aarch64")
    assert grace == {"model": "Neoverse V2", "flags": "asimd sve sve2", "machine": "aarch64"}
    unknown = bench.cpu_model(GRACE_CPUINFO.replace("0xd4f", "0xd99"), "aarch64")
    assert unknown["model"] == "Arm implementer 0x41 part 0xd99"
    x86 = bench.cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 9B45\nflags\t\t: fpu sse2 avx2 fma avx512f\n", "x86_64")
    assert x86 == {"model": "AMD EPYC 9B45", "flags": "avx2 fma avx512f", "machine": "x86_64"}
    head = bench.format_table({"device": "cpu", "dtype": "float32", "threads": 2, "gemm_peak_gflops": 0, "rows": [],
                               "cpu": grace, "isa": "neon", "capability": "DEFAULT"}).splitlines()[0]
    assert "cpu=Neoverse V2 (asimd sve sve2) aarch64 fastperc isa=neon" in head


@pytest.mark.parametrize("op,workload", [("chamfer", "2 x 512 vs 512 same shape"), ("voxnet", "8 x 16^3")])
def test_bench_isa_runs_the_benches_with_their_own_tables(op, workload):
    # These benches print their own tables; `--isa` once failed on them looking for the GEMM peak.
    from conftest import supported_isas

    out = run_cli("bench", "--quick", "--op", op, "--isa", "all")
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith(op) and workload in line)
    assert len(re.findall(r"\d+\.\d{3}\s+-\s+\d+\.\d\dx", row)) == len(supported_isas()), row  # ms, %pk, x per ISA


def test_bench_quick_perceptual_step(tmp_path):
    path = tmp_path / "perceptual.json"
    out = run_cli("bench", "--quick", "--op", "perceptual", "--json", str(path))
    assert out.returncode == 0, out.stderr
    assert "torch (bmm + mse)" in out.stdout
    rows = json.loads(path.read_text())["rows"]
    assert {(r["what"], r["impl"]) for r in rows} == {(w, i) for w in ("step", "loss only") for i in ("fastperc", "torch")}
    for r in rows:
        assert r["ms"] > 0
        assert r["err"] < 1e-4, r  # float32 step or losses against the float64 composite
        assert r.get("wrong", False) is False, r


def test_benchmark_suites_collect():
    """The pytest-benchmark files import and parametrize against the current bench API."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", os.path.join(ROOT, "benchmarks")],
                         env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "test_bench_perceptual.py" in out.stdout and "test_bench_gram.py" in out.stdout


def test_bench_quick_ssim3d(tmp_path):
    path = tmp_path / "ssim3d.json"
    out = run_cli("bench", "--quick", "--op", "ssim3d", "--json", str(path))
    assert out.returncode == 0, out.stderr
    rows = json.loads(path.read_text())["rows"]
    assert {"fastperc", "reference"} <= {r["impl"] for r in rows}
    for r in rows:
        assert r["shape"].count("x") == 4 and r["err"] < 1e-4, r


def test_bench_quick_subm_with_dense_crop(tmp_path):
    path = tmp_path / "subm.json"
    out = run_cli("bench", "--quick", "--op", "subm", "--json", str(path))
    assert out.returncode == 0, out.stderr
    assert json.loads(path.read_text())["source"].startswith("lidar_scan.npz (shipped")  # never a silent synthetic
    assert "scan: lidar_scan.npz (shipped with fastperc, 196k points)" in out.stdout
    rows = json.loads(path.read_text())["rows"]
    impls = {r["impl"] for r in rows}
    assert {"fastperc", "reference", "dense conv3d"} <= impls
    for r in rows:
        if r["impl"] in ("fastperc", "reference", "dense conv3d") and r["err"] is not None:
            assert r["err"] < 1e-5, r  # float32 against the float64 reference
    result = json.loads(path.read_text())
    if result["spconv"] and result["threads"] > 1:  # spconv's forward where it gives the right answer, too
        (one_thread,) = [r for r in rows if r["impl"] == "spconv 1 thread" and "crop" not in r["shape"]]
        assert one_thread["mode"] == "fwd" and one_thread["err"] < 1e-5 and one_thread["ms"] > 0, one_thread
        assert "spconv 1 thread" in out.stdout
    crop = [r for r in rows if "crop" in r["shape"]]
    assert {(r["mode"], r["impl"]) for r in crop} == {(m, i) for m in ("fwd", "fwd+bwd")
                                                       for i in ("fastperc", "dense conv3d")}
    # GEMM efficiency: useful flop / time for the convolution rows, none for map rows
    for r in rows:
        assert ("gflops" in r) == (r["mode"] != "map" and r["ms"] == r["ms"]), r
        if "gflops" in r:
            assert r["gflops"] > 0 and r["peak_pct"] == pytest.approx(100 * r["gflops"] / json.loads(
                path.read_text())["gemm_peak_gflops"])


def test_bench_subm_scan_missing_file_is_an_error_and_synthetic_only_when_asked(tmp_path):
    out = run_cli("bench", "--quick", "--op", "subm", "--scan", str(tmp_path / "nope.npz"))
    assert out.returncode == 2 and "nope.npz not found" in out.stderr and "Traceback" not in out.stderr
    (tmp_path / "bad.npz").write_text("not a zip")
    out = run_cli("bench", "--quick", "--op", "subm", "--scan", str(tmp_path / "bad.npz"))
    assert out.returncode == 2 and "not a readable .npz" in out.stderr, out.stderr
    out = run_cli("bench", "--quick", "--op", "subm", "--scan", "synthetic")
    assert out.returncode == 0 and "scan: synthetic" in out.stdout, out.stderr


def test_bench_offers_fused_ssim_only_where_it_runs(monkeypatch):
    # fused-ssim (CUDA-only, float32) joins the ssim and l1ssim comparisons when it imports; a stand-in
    # module shows where: not on the CPU, not in other dtypes.
    import types

    from fastperc import bench

    fake = types.ModuleType("fused_ssim")
    fake.fused_ssim = lambda x, y, padding="same", train=True: x.mean()
    monkeypatch.setitem(sys.modules, "fused_ssim", fake)
    assert "fused_ssim" in bench.IMAGE_IMPLS["ssim"]() and "fused_ssim" in bench.IMAGE_IMPLS["l1ssim"]()
    for op in ("ssim", "l1ssim"):
        assert "fused_ssim" not in {c.impl for c in bench.cases(op, "fwd", (1, 3, 16, 16), "cpu")}
    assert "fused_ssim" not in bench.IMAGE_IMPLS["ssim3d"]()


def test_bench_quick_chamfer(tmp_path):
    path = tmp_path / "chamfer.json"
    out = run_cli("bench", "--quick", "--op", "chamfer", "--json", str(path))
    assert out.returncode == 0, out.stderr
    assert "Chamfer distance" in out.stdout and "torch cdist+min" in out.stdout
    rows = json.loads(path.read_text())["rows"]
    assert {r["impl"] for r in rows} == {"fastperc", "reference", "torch cdist+min"}
    assert {r["shape"] for r in rows} == {"2 x 512 vs 512 same shape", "2 x 512 vs 512 other shape"}
    for r in rows:
        assert r["ms"] > 0 and r["err"] < 1e-4, r  # float32 against the float64 kernel


def test_bench_quick_voxnet_dense_and_sparse(tmp_path):
    path = tmp_path / "voxnet.json"
    out = run_cli("bench", "--quick", "--op", "voxnet", "--json", str(path))
    assert out.returncode == 0, out.stderr
    rows = json.loads(path.read_text())["rows"]
    assert [r["impl"] for r in rows] == ["dense conv3d", "fastperc sparse"]
    assert all(r["ms"] > 0 and r["logit_gap"] < 1e-4 for r in rows)


def test_bench_isa_recheck_times_flagged_rows_again_interleaved():
    """A row flagged "slower than the ISA below" is timed again in one process with the ISAs interleaved,
    and the table says whether it still is: a flag from a noisy machine shows as such."""
    from conftest import supported_isas
    from fastperc import bench

    from fastperc import _backend

    isas = supported_isas()
    active = _backend._C.cpu_isa()
    rows = lambda ms: [{"op": "gram", "mode": "fwd", "shape": "1x16x8x8", "impl": "fastperc", "ms": ms},  # noqa: E731
                       {"op": "gram", "mode": "fwd", "shape": "1x16x8x8", "impl": "torch", "ms": 1.0}]
    # every ISA "ran" slower than the one below it: each pair is flagged
    combined = {"isas": isas, "per_isa": {isa: {"dtype": "float32", "rows": rows(1.0 + i)} for i, isa in enumerate(isas)}}
    recheck = bench.recheck_slower(combined, rounds=2, min_time=0.0)
    if len(isas) < 2:
        assert recheck == {}
        return
    again = recheck["gram|fwd|1x16x8x8"]
    assert set(again) == set(isas) and all(v > 0 for v in again.values())
    text = bench.format_per_isa(combined, table=lambda result: "")
    assert "SLOWER THAN THE ISA BELOW" in text and "interleaved in one process: " in text
    assert ("still slower: " in text) == bool(bench._slower_pairs(isas, again))
    assert _backend._C.cpu_isa() == active  # restored


def test_bench_isa_recheck_rebuilds_the_sparse_and_chamfer_rows():
    """The recheck covers the subm and chamfer benches too: their rows' calls are rebuilt from the row's
    mode and shape (crops, which it cannot rebuild, are left flagged without a recheck)."""
    from conftest import supported_isas
    from fastperc import bench, bench_chamfer, bench_sparse

    isas = supported_isas()
    if len(isas) < 2:
        pytest.skip("one CPU ISA: nothing is compared")
    subm, chamfer = "40cm C=16 (3k)", "2 x 512 vs 512 other shape"
    keys = [("subm", mode, subm) for mode in ("map", "fwd", "fwd+bwd")] + [("chamfer", "fwd+bwd", chamfer),
                                                                          ("subm", "fwd", "40cm C=16 crop 16x16x8 (1.0%)")]
    rows = lambda ms: [{"op": op, "mode": mode, "shape": shape, "impl": impl, "ms": ms if impl != "spconv" else 1.0}  # noqa: E731
                       for op, mode, shape in keys for impl in ("fastperc", "spconv")]
    combined = {"isas": isas, "per_isa": {isa: {"dtype": "float32", "rows": rows(1.0 + i)} for i, isa in enumerate(isas)}}
    recheck = bench.recheck_slower(combined, rounds=1, min_time=0.0)
    assert set(recheck) == {"|".join(key) for key in keys[:4]}
    assert all(set(again) == set(isas) and all(v > 0 for v in again.values()) for again in recheck.values())
    assert bench_sparse.recheck_call("fwd", keys[4][2]) is None
    g_f = bench_sparse.recheck_call("fwd+bwd", subm)()
    assert g_f.shape[1] == 16 and torch.isfinite(g_f).all()
    loss, grad_x = bench_chamfer.recheck_call("fwd+bwd", chamfer)()
    assert loss.item() > 0 and grad_x.shape == (2, 512, 3)


def test_bench_isa_does_not_compare_rows_whose_code_is_the_same_on_every_isa():
    from conftest import supported_isas
    from fastperc import bench

    isas = supported_isas()
    rows = lambda ms: [{"op": "subm", "mode": "map", "shape": "40cm C=16 (3k)", "impl": "fastperc", "ms": ms,  # noqa: E731
                        "isa_independent": True}]
    combined = {"isas": isas, "per_isa": {isa: {"dtype": "float32", "rows": rows(1.0 + i)} for i, isa in enumerate(isas)}}
    assert bench.recheck_slower(combined, rounds=1, min_time=0.0) == {}
    text = bench.format_per_isa(combined, table=lambda result: "")
    assert "SLOWER" not in text and "(same code on every ISA)" in text


def test_bench_marks_wrong_results_and_the_ratios_over_them():
    """A row whose result is wrong (spconv's racy 2-thread CPU forward: err 0.2-0.34) says so on its own
    line in every table, and a side-by-side ratio over it carries a "!" explained below the table."""
    from conftest import supported_isas
    from fastperc import bench, bench_chamfer, bench_perceptual, bench_sparse

    assert not bench.wrong_result({"err": 4e-5}) and not bench.wrong_result({"err": None})
    assert bench.wrong_result({"err": 0.2}) and bench.wrong_result({"err": float("nan")})
    assert bench.wrong_result({"err": 2e-3}, "float64") and not bench.wrong_result({"err": 2e-3}, "bfloat16")
    assert bench.wrong_result({"err": 0.2}, "float16")

    def line_of(text, impl):
        (line,) = [line for line in text.splitlines() if f" {impl} " in line and "speedup" not in line]  # a row
        return line

    image_row = dict(op="ssim", mode="fwd", shape="1x3x8x8", ms=1.0, gflops=1.0, peak_pct=1.0, mpx_s=1.0,
                     fastperc_speedup=1.0)
    result = dict(device="cpu", dtype="float32", threads=2, gemm_peak_gflops=100.0, rows=[
        dict(image_row, impl="fastperc", err=1e-7), dict(image_row, impl="kornia", err=0.3, ms=2.0, fastperc_speedup=2.0)])
    text = bench.format_table(result)
    assert "WRONG RESULT (err above 0.001)" in line_of(text, "kornia") and "WRONG" not in line_of(text, "fastperc")
    assert "speedup over kornia 2.00x (min 2.00x, max 2.00x; 1 of 1 over a WRONG RESULT)" in text

    subm_row = dict(op="subm", mode="fwd", shape="5cm C=32 (172k)", ms=1.0, msites_s=1.0, fastperc_speedup=1.0)
    result = dict(source="scan", threads=2, spconv=True, gemm_peak_gflops=100.0, dtype="float32", rows=[
        dict(subm_row, impl="fastperc", err=2e-7), dict(subm_row, impl="spconv", err=0.2, fastperc_speedup=2.5)])
    text = bench_sparse.format_table(result)
    assert "WRONG RESULT" in line_of(text, "spconv") and "WRONG" not in line_of(text, "fastperc")

    chamfer_row = dict(shape="2 x 512 vs 512", ms=1.0, peak_mb=1.0, pair_gflops=1.0, fastperc_speedup=1.0)
    text = bench_chamfer.format_table(dict(device="cpu", dtype="float32", threads=2, rows=[
        dict(chamfer_row, impl="fastperc", err=1e-7), dict(chamfer_row, impl="reference", err=0.5)]))
    assert "WRONG RESULT" in line_of(text, "reference") and "WRONG" not in line_of(text, "fastperc")
    step_row = dict(shape="1x3x64x64", what="step", ms=1.0, fastperc_speedup=1.0)
    text = bench_perceptual.format_table(dict(device="cpu", dtype="bfloat16", threads=2, rows=[
        dict(step_row, impl="fastperc", err=0.05), dict(step_row, impl="torch", err=0.5)]))
    assert "WRONG RESULT (err above 0.1)" in line_of(text, "torch (bmm + mse)")
    assert "WRONG" not in line_of(text, "fastperc")
    # A step's err includes VGG19's own float32 rounding, which the composite's err measures: a ReLU
    # rounding across zero put both rows at 1.6e-3. Only a row well above that floor is wrong.
    assert not bench_perceptual.step_wrong(dict(step_row, err=1.6e-3), 1.6e-3, "float32")
    assert not bench_perceptual.step_wrong(dict(step_row, err=3e-3), 1.6e-3, "float32")
    assert bench_perceptual.step_wrong(dict(step_row, err=4e-3), 1.6e-3, "float32")
    assert bench_perceptual.step_wrong(dict(step_row, err=2e-3), 1e-6, "float32")
    assert not bench_perceptual.step_wrong(dict(step_row, err=5e-4), 1e-7, "float32")
    assert bench_perceptual.step_wrong(dict(step_row, err=float("nan")), float("nan"), "float32")
    # run() stores that judgement as the row's "wrong", which every table and the per-ISA view take
    # over the plain err limit (without it, these rows would be marked).
    for judged, marked in ((False, False), (None, True)):
        floor = [dict(step_row, impl=impl, err=1.6e-3) for impl in ("fastperc", "torch")]
        if judged is not None:
            floor = [dict(r, wrong=judged) for r in floor]
        text = bench_perceptual.format_table(dict(device="cpu", dtype="float32", threads=2, rows=floor))
        assert ("WRONG" in text) == marked
        combined = {"isas": ["generic"], "per_isa": {"generic": {"dtype": "float32", "rows": floor}}}
        assert ("1.00x!" in bench.format_per_isa(combined, table=lambda result: "")) == marked

    isas = supported_isas()
    for err, marked in ((0.2, True), (2e-7, False)):
        rows = [dict(subm_row, impl="fastperc", err=2e-7), dict(subm_row, impl="spconv", err=err, ms=2.5)]
        combined = {"isas": isas, "per_isa": {isa: {"dtype": "float32", "rows": rows} for isa in isas}}
        text = bench.format_per_isa(combined, table=lambda result: "")
        (line,) = [line for line in text.splitlines() if line.startswith("subm ")]
        assert line.count("2.50x!" if marked else "2.50x") == len(isas) and ("!" in line) == marked
        assert ("!: the fastest other implementation's result was wrong" in text) == marked


def test_bench_interleaved_timing_keeps_ratios_while_the_machine_drifts(monkeypatch):
    # A fake clock whose machine slows down as time passes: a call of cost c takes c * (1 + now) s.
    # Timed interleaved, two calls of costs 1 and 3 ms keep their 3x ratio; timed one after the other
    # (time_ms), the second would be timed on a slower machine.
    from fastperc import bench

    clock = {"now": 0.0}
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock["now"])
    order = []

    def call(name, cost):
        def fn():
            order.append(name)
            clock["now"] += cost * (1 + clock["now"])
        return fn

    a, b = call("a", 1e-3), call("b", 3e-3)
    ms_a, ms_b = bench.time_interleaved_ms([a, b], "cpu", min_time=0.3, warmup=1)
    assert ms_b / ms_a == pytest.approx(3, rel=0.01)
    rounds = [order[i:i + 4] for i in range(2, len(order), 4)]  # after the warm-up round
    assert order.count("a") == order.count("b") and len(rounds) >= 5
    # Each timed call follows an untimed one of its own, and each fn's pair follows the other's.
    assert ["a", "a", "b", "b"] in rounds and ["b", "b", "a", "a"] in rounds
    assert all(r in (["a", "a", "b", "b"], ["b", "b", "a", "a"]) for r in rounds)
    blocked = bench.time_ms(b, "cpu", min_time=0.3) / bench.time_ms(a, "cpu", min_time=0.3)
    assert blocked < 2.8  # what the blocks would have reported here: a was timed on the slower machine
    assert bench.time_interleaved_ms([], "cpu") == []
