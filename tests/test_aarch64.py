"""Every CPU source compiles and links for aarch64 (GH200 / Jetson / Graviton hosts), against the
headers and libraries of an aarch64 torch wheel, with the sources setup.py picks for aarch64: no x86
header, cpuid call or `#pragma GCC target` may reach that build. The CUDA build's units compile for an
aarch64 host too (GH200): the .cu files through nvcc with the aarch64 g++ as its host compiler.

Needs aarch64-linux-gnu-g++ and the wheel unpacked in FASTPERC_AARCH64_TORCH (.ci/run installs both).
Without them the test is skipped, unless FASTPERC_REQUIRE_AARCH64=1 (CI) makes that a failure. The
parity tests themselves ran on the result under qemu (tests/aarch64_qemu.sh, benchmarks/RESULTS.md).
"""
import os
import subprocess

import pytest

from aarch64_build import (NVCC, aarch64_sources, compiler_available, cross_compile, cross_compile_cuda,
                           cuda_dependent_cpu_sources, cuda_sources)

TORCH_DIR = os.environ.get("FASTPERC_AARCH64_TORCH", "")
REQUIRED = os.environ.get("FASTPERC_REQUIRE_AARCH64") == "1"


EM_AARCH64 = 183
OPT = "-O1"  # a compile and link check, not a build anyone runs


def _elf_machine(path):
    header = open(path, "rb").read(20)
    assert header[:4] == b"\x7fELF", path
    return int.from_bytes(header[18:20], "little")


def _ready(cuda=False):
    missing = []
    if cuda and not os.path.isfile(NVCC):
        missing.append(f"nvcc ({NVCC}; set CUDA_HOME)")
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


@pytest.fixture(scope="module")
def cpu_build(tmp_path_factory):
    """The aarch64 CPU build, once: its folder (whose objects the CUDA build reuses) and its library."""
    _ready()
    out_dir = str(tmp_path_factory.mktemp("aarch64"))
    try:
        return out_dir, cross_compile(TORCH_DIR, out_dir, opt=OPT)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"aarch64 build failed:\n{exc.stderr[-6000:]}")


def test_every_cpu_source_cross_compiles_and_links_for_aarch64(cpu_build):
    assert _elf_machine(cpu_build[1]) == EM_AARCH64


def test_the_cuda_build_compiles_and_links_for_an_aarch64_host(cpu_build):
    _ready(cuda=True)
    assert cuda_sources() and {"csrc/ops.cpp", "csrc/module.cpp"} <= set(cuda_dependent_cpu_sources())
    try:
        so, cuda_objects = cross_compile_cuda(TORCH_DIR, cpu_build[0], opt=OPT)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"aarch64 CUDA build failed:\n{exc.stderr[-6000:]}")
    assert len(cuda_objects) == len(cuda_sources()) + len(cuda_dependent_cpu_sources())
    assert all(_elf_machine(obj) == EM_AARCH64 for obj in cuda_objects + [so])
    # The CUDA kernels' registration reached the library: ops.cpp compiled with FASTPERC_WITH_CUDA.
    assert b"ssim_backward_cuda" in open(so, "rb").read()
