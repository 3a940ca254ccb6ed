"""The NEON (aarch64) micro-kernels compile to register code, as tests/test_vector_codegen.py checks
the x86 ones: the Gram and sparse tiles' multiply loops store nothing (their accumulators stay in
registers), the SSIM filter loops store no vector to the stack, and its per-pixel stages divide in
vectors.

No ARM hardware times the NEON path here, so this is what shows that its loops are the ones written.
Under `#pragma GCC unroll 4`, the NEON tiles of 5 to 8 vectors a row kept every accumulator in
memory; tiles needing more than the 32 q registers kept two there; the 11- and 15-tap SSIM passes
spilled under GCC's first scheduling pass, and the 13- and 15-tap H passes with their tap pairs folded
(see csrc/cpu/isa/*_neon.cpp and vec_neon.inc). Each file is compiled with setup.py's flags by Debian's
aarch64-linux-gnu-g++ (or the host's g++ on aarch64) and disassembled. Skipped without that compiler,
unless FASTPERC_REQUIRE_AARCH64=1 (CI) makes that a failure.
"""
import os
import re
import shutil
import subprocess

import pytest

from test_vector_codegen import (AARCH64_BRANCH, HOT, compile_command, functions, loop_bodies, pairs_tile_prefetches,
                                  tile_multiply_loops, tile_shape)

NATIVE = os.uname().machine == "aarch64"
CXX = os.environ.get("FASTPERC_AARCH64_CXX", "g++" if NATIVE else "aarch64-linux-gnu-g++")
OBJDUMP = "objdump" if NATIVE else "aarch64-linux-gnu-objdump"
# A store of a SIMD/FP register: str/stp/stur q0 (d0, s0), st1 {v0.4s}.
SIMD_STORE = r"^(?:st[rpu]\w*\s+[qdsh]\d+|st[1-4]\s+\{v)"


def require_aarch64_tools(*more, packages="g++-aarch64-linux-gnu"):
    """Skip the test without the aarch64 compiler and objdump (and `more` tools), or fail where CI asked
    for them (FASTPERC_REQUIRE_AARCH64=1)."""
    missing = [tool for tool in (CXX, OBJDUMP, *more) if shutil.which(tool) is None]
    if missing:
        message = f"needs {' and '.join(missing)} (apt-get install {packages})"
        if os.environ.get("FASTPERC_REQUIRE_AARCH64") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def compiled_neon(tmp_path_factory):
    require_aarch64_tools()
    folder = tmp_path_factory.mktemp("neon")
    sources = ("gram_tile_neon", "sparse_tile_neon", "ssim_tile_neon")
    jobs = {source: subprocess.Popen(compile_command(source, folder / f"{source}.o", CXX)) for source in sources}
    for source, job in jobs.items():
        assert job.wait() == 0, f"{source} did not compile"
    return {source: functions(str(folder / f"{source}.o"), OBJDUMP) for source in sources}


def test_neon_tile_multiply_loops_keep_accumulators_in_registers(compiled_neon):
    loops = {}
    for source in ("gram_tile_neon", "sparse_tile_neon"):
        loops.update(tile_multiply_loops(compiled_neon[source], r"(fmla|fmul)\s", AARCH64_BRANCH))
    assert len(loops) >= 14, f"found only {len(loops)} tile functions: {sorted(loops)}"
    for name, bodies in loops.items():
        assert bodies, f"{name}: no multiply loop found"
        for body in bodies:
            stores = [text for text in body if re.match(SIMD_STORE, text)]
            assert not stores, f"{name}: SIMD stores in its multiply loop: {stores}"


def test_neon_tiles_load_their_row_values_as_vectors(compiled_neon):
    # A Gram or pairs tile step multiplies its rows by MR contiguous values of a. NEON loads them as
    # MR / W vectors and multiplies by lane (`fmla v0.4s, v1.4s, v2.s[3]`): no scalar load in the loop,
    # and its vector loads are the NV of b and those MR / W. With a scalar load per value, llvm-mca's
    # Neoverse V2 model put the pairs tiles' loops at the load pipes' limit (benchmarks/RESULTS.md,
    # twentieth session). The 2 x 8 float pairs tile (MR = 2 < W = 4) and the rows tiles, whose rows
    # are not contiguous, load scalars.
    checked = 0
    for source in ("gram_tile_neon", "sparse_tile_neon"):
        for name, bodies in tile_multiply_loops(compiled_neon[source], r"fmla\s", AARCH64_BRANCH).items():
            rows, vectors, vector_bytes = tile_shape(name)
            width = vector_bytes // (4 if "F32x4" in name else 8)
            if "rows_tile<" in name or rows % width:
                continue
            for body in bodies:
                scalar = [text for text in body if re.match(r"(ldu?r\s+[sd]\d+|ld1r\s)", text)]
                assert not scalar, f"{name}: scalar loads in its multiply loop: {scalar}"
                loaded = sum(1 if text.startswith("ldr") else 2 for text in body if re.match(r"ld[rp]\s+q\d+", text))
                assert loaded == vectors + rows // width, f"{name}: {loaded} vector loads a step"
                assert any(re.search(r"\.[sd]\[[1-3]\]$", text) for text in body), f"{name}: no multiply by lane"
            checked += 1
    assert checked == 7, f"checked {checked} tiles"


def test_neon_pairs_tiles_prefetch_each_line_once(compiled_neon):
    # As test_pairs_tiles_prefetch_each_line_once on x86: one prefetch per 64-byte line of b, not four.
    loops = tile_multiply_loops(compiled_neon["sparse_tile_neon"], r"fmla\s", AARCH64_BRANCH)
    pairs = {name: bodies for name, bodies in loops.items() if "pairs_tile<" in name}
    assert len(pairs) == 6, f"found {len(pairs)} pairs tiles"
    for name, bodies in pairs.items():
        issued = max(sum(text.startswith("prfm") for text in body) for body in bodies)
        assert issued == pairs_tile_prefetches(name), f"{name}: {issued} prefetches a step"


def test_neon_ssim_filter_loops_keep_vectors_in_registers(compiled_neon):
    checked = 0
    for name, code in compiled_neon["ssim_tile_neon"].items():
        if not any(f"{hot}<" in name for hot in HOT):
            continue
        # The stack: sp, or a register the function set from it (add x6, sp, #0xa0).
        frame = {"sp"} | {m.group(1) for _, text in code for m in [re.match(r"(?:add|mov)\s+(x\d+),\s*sp\b", text)]
                          if m}
        for start, body in loop_bodies(code, AARCH64_BRANCH):
            spills = [text for text in body if re.match(SIMD_STORE, text)
                      and re.search(r"\[(" + "|".join(sorted(frame)) + r")\b", text)]
            assert not spills, f"{name}: SIMD spills in the loop at {start:#x}: {spills}"
            checked += 1
    assert checked >= 8, f"found only {checked} filter loops to check"


def test_neon_ssim_per_pixel_stages_are_vectorised(compiled_neon):
    # As test_ssim_per_pixel_stages_are_vectorised on x86: each per-pixel stage divides in packed
    # vectors (fdiv v.4s / v.2d) in its loops; the gradients' two (with and without the CS weight).
    found = 0
    for name, code in compiled_neon["ssim_tile_neon"].items():
        if not re.search(r"\bssim_pixel(s|_grads)<(float|double)>", name):
            continue
        found += 1
        packed = [body for _, body in loop_bodies(code, AARCH64_BRANCH)
                  if any(re.match(r"fdiv\s+v\d+\.(4s|2d)", text) for text in body)]
        assert len(packed) >= (2 if "grads" in name else 1), f"{name}: no packed division in its loops"
    assert found == 4, f"found {found} per-pixel stage functions"
