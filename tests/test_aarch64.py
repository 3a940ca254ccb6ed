"""Every CPU source compiles and links for aarch64 (GH200 / Jetson / Graviton hosts), against the
headers and libraries of an aarch64 torch wheel, with the sources setup.py picks for aarch64: no x86
header, cpuid call or `#pragma GCC target` may reach that build.

Needs aarch64-linux-gnu-g++ and the wheel unpacked in FASTPERC_AARCH64_TORCH (.ci/run installs both).
Without them the test is skipped, unless FASTPERC_REQUIRE_AARCH64=1 (CI) makes that a failure. The
parity tests themselves ran on the result under qemu (tests/aarch64_qemu.sh, benchmarks/RESULTS.md).
"""
import os
import subprocess

import pytest

from aarch64_build import aarch64_sources, compiler_available, cross_compile

TORCH_DIR = os.environ.get("FASTPERC_AARCH64_TORCH", "")
REQUIRED = os.environ.get("FASTPERC_REQUIRE_AARCH64") == "1"


def _ready():
    missing = []
    if not compiler_available():
        missing.append("aarch64-linux-gnu-g++ (apt-get install g++-aarch64-linux-gnu)")
    if not os.path.isdir(os.path.join(TORCH_DIR, "torch", "include")):
        missing.append("an aarch64 torch wheel unpacked in $FASTPERC_AARCH64_TORCH")
    if missing:
        message = "cannot cross-compile for aarch64; missing: " + "; ".join(missing)
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)


def test_aarch64_sources_exclude_x86_and_include_neon():
    sources = aarch64_sources()
    assert not [s for s in sources if "_avx" in s]
    assert {"csrc/cpu/isa/gram_tile_neon.cpp", "csrc/cpu/isa/sparse_tile_neon.cpp",
            "csrc/cpu/isa/ssim_tile_neon.cpp"} <= set(sources)
    for source in sources:
        text = open(os.path.join(os.path.dirname(os.path.dirname(__file__)), source)).read()
        assert "immintrin.h" not in text and "GCC target(\"avx" not in text, source


def test_every_cpu_source_cross_compiles_and_links_for_aarch64(tmp_path):
    _ready()
    try:
        so = cross_compile(TORCH_DIR, str(tmp_path), opt="-O1")
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"aarch64 build failed:\n{exc.stderr[-6000:]}")
    header = open(so, "rb").read(20)
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183  # EM_AARCH64
