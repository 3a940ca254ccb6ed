"""The built extension: CPU kernels for every op; with a CUDA torch, CUDA kernels compiled, linked,
loaded and registered for every op; with a CPU torch, the CUDA sources at least compile."""
import glob
import os
import re
import shutil
import subprocess

import pytest
import torch

from fastperc import _backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cpu_kernel_for_every_op():
    for op in _backend.OPS:
        assert _backend.KERNELS[(op, "cpu")], op
    info = _backend.build_info()
    assert info["openmp"], "built without OpenMP: at::parallel_for would run on one thread"
    assert info["cpu_isa_active"] in ("generic", "avx2", "avx512", "neon")
    assert info["cpu_isa_active"] in info["cpu_isas"].split(",")


def test_every_schema_has_a_kernel_per_device():
    """Each op: a schema, a registration in the one registration unit (ops.cpp, through kernels.h), and a
    definition `<op>_<device>(` in that device's sources (composites of several devices: csrc/common)."""
    def read(pattern):
        return " ".join(open(p).read() for p in glob.glob(os.path.join(ROOT, "csrc", pattern)))

    schemas, registry, declared = read("op_schemas.h"), read("ops.cpp"), read("kernels.h")
    for op in _backend.OPS:
        assert f'\n    "{op}(' in schemas  # a schema string starts with the op's name
        assert f'm.impl("{op}", &fastperc::ns::{op}_##ns)' in registry, op
        assert f" {op}_##suffix(" in declared, op
        for device in ("cpu", "cuda"):
            ext = "*.c*" if device == "cpu" else "*.cu"
            sources = read(os.path.join(device, ext)) + read(os.path.join("common", "*.cpp"))
            # CPU_ONLY_OPS must list exactly the ops without a CUDA kernel (they run the reference there).
            expected = not (device == "cuda" and op in _backend.CPU_ONLY_OPS)
            defined = re.search(rf"(\s|::){op}_{device}\(", sources) is not None
            assert defined == expected, (op, device)


@pytest.mark.skipif(torch.version.cuda is None, reason="CPU build of torch: covered by the nvcc compile test")
def test_cuda_kernels_compiled_and_registered():
    info = _backend.build_info()
    assert info["cuda"], "torch is a CUDA build but fastperc._C was built without CUDA kernels"
    assert info["cuda_archs"]
    for op in _backend.OPS:
        assert _backend.KERNELS[(op, "cuda")] == (op not in _backend.CPU_ONLY_OPS), op


@pytest.mark.skipif(torch.version.cuda is not None, reason="CUDA torch: the full build compiled the .cu files")
def test_cuda_sources_compile_against_cpu_torch_headers(tmp_path):
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
    if nvcc is None:
        pytest.skip("no nvcc on this machine")
    from torch.utils.cpp_extension import include_paths

    incs = [f"-I{p}" for p in include_paths()] + [f"-I{os.path.join(ROOT, 'csrc')}"]
    for cu in glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")):
        cmd = [nvcc, "-std=c++20", "-c", cu, "-o", str(tmp_path / "k.o"), "-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE",
               "--expt-relaxed-constexpr", "-arch=sm_80", *incs]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-4000:]
