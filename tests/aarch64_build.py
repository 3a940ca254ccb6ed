"""Cross-compiles the CPU extension for aarch64 (Grace Hopper, Jetson, Graviton, Ampere hosts) with
Debian's g++-aarch64-linux-gnu against the headers and libraries of an aarch64 torch wheel.

Used by tests/test_aarch64.py (every CPU source must compile and link for aarch64, in CI) and by
tests/aarch64_qemu.sh (the parity tests run on the result under qemu-user). The sources are the ones
setup.py picks for aarch64 (cpu_sources), the flags the ones setup.py gives the CPU build.
cross_compile_cuda does the same for the CUDA build's units (a GH200 host is aarch64): the .cu files
through nvcc with the aarch64 g++ as host compiler (tests/test_aarch64.py, in CI).

    python tests/aarch64_build.py TORCH_DIR OUT_DIR [PYTHON_INCLUDE[:MORE_INCLUDES]]

TORCH_DIR holds torch/include and torch/lib of the aarch64 wheel (unzip the wheel there).
"""
import concurrent.futures
import functools
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CXX = os.environ.get("FASTPERC_AARCH64_CXX", "aarch64-linux-gnu-g++")


@functools.cache
def _setup_module():
    """setup.py, loaded without running its setup()."""
    spec = importlib.util.spec_from_file_location("fastperc_setup", os.path.join(ROOT, "setup.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def aarch64_sources():
    """setup.py's cpu_sources("aarch64")."""
    return _setup_module().cpu_sources("aarch64")


def cuda_sources():
    """setup.py's cuda_sources(): the .cu units of a CUDA build."""
    return _setup_module().cuda_sources()


def compiler_available() -> bool:
    return shutil.which(CXX) is not None


def debian_pyconfig_shim(host_include, out_dir):
    """Include flags that let the host's Python headers compile for aarch64 when they are Debian's system
    Python's: its pyconfig.h only includes <ARCH-linux-gnu/python3.X/pyconfig.h>, and the aarch64 one is
    not installed. A shim of that name includes the x86-64 one instead: both are LP64 Linux, and this
    build is a compile and link check (the qemu run uses an arm64 Python's own headers). [] otherwise."""
    path = os.path.join(host_include, "pyconfig.h")
    if not os.path.isfile(path):
        return []
    with open(path) as fh:
        text = fh.read()
    version = os.path.basename(host_include.rstrip("/"))  # python3.11
    if f"aarch64-linux-gnu/{version}/pyconfig.h" not in text:
        return []
    host = os.path.join(os.path.dirname(host_include), "x86_64-linux-gnu", version, "pyconfig.h")
    shim = os.path.join(out_dir, "pyconfig-shim", "aarch64-linux-gnu", version)
    os.makedirs(shim, exist_ok=True)
    with open(os.path.join(shim, "pyconfig.h"), "w") as fh:
        fh.write(f'#include "{host}"\n')
    return ["-I", os.path.join(out_dir, "pyconfig-shim")]


def _run(command):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, command, result.stdout, result.stderr)


def _compile_all(compile_one, sources, jobs):
    with concurrent.futures.ThreadPoolExecutor(jobs or os.cpu_count() or 2) as pool:
        return list(pool.map(compile_one, sources))


def _object_path(out_dir, source, variant=""):
    return os.path.join(out_dir, variant + source.replace("/", "_") + ".o")


def _defines_and_includes(torch_dir, out_dir, python_include=None):
    """The preprocessor flags of the extension's units (setup.py's, with the aarch64 wheel's headers)."""
    import pybind11

    include = os.path.join(torch_dir, "torch", "include")
    defines = ["-DTORCH_API_INCLUDE_EXTENSION_H", "-DTORCH_EXTENSION_NAME=_C", "-D_GLIBCXX_USE_CXX11_ABI=1"]
    includes = ["-I", os.path.join(ROOT, "csrc"), "-I", include, "-I", os.path.join(include, "torch", "csrc", "api", "include"),
                "-I", pybind11.get_include()]
    # PYTHON_INCLUDE: one or more folders (os.pathsep between); Debian's arm64 Python needs its
    # multiarch parent too (/usr/include, for aarch64-linux-gnu/python3.11/pyconfig.h).
    for folder in (python_include or sysconfig.get_paths()["include"]).split(os.pathsep):
        includes += ["-I", folder]
    if python_include is None:
        includes += debian_pyconfig_shim(sysconfig.get_paths()["include"], out_dir)
    return defines, includes


def _cxx_flags(opt):
    return [opt, "-std=c++20", "-fPIC", "-fopenmp", "-Wall", "-Wno-psabi", "-fno-math-errno", "-ffp-contract=off"]


def _link(objects, torch_dir, so):
    _run([CXX, "-shared", "-fopenmp", *objects, "-L", os.path.join(torch_dir, "torch", "lib"), "-lc10", "-ltorch_cpu",
          "-ltorch", "-o", so])
    return so


def cross_compile(torch_dir, out_dir, python_include=None, opt="-O2", jobs=None):
    """Compiles every aarch64 CPU source into out_dir and links fastperc/_C for aarch64. Returns the
    path of the shared object. Raises CalledProcessError with the compiler's output on failure."""
    os.makedirs(out_dir, exist_ok=True)
    defines, includes = _defines_and_includes(torch_dir, out_dir, python_include)
    flags = _cxx_flags(opt) + defines + includes

    def compile_one(source):
        obj = _object_path(out_dir, source)
        _run([CXX, *flags, "-c", os.path.join(ROOT, source), "-o", obj])
        return obj

    objects = _compile_all(compile_one, aarch64_sources(), jobs)
    return _link(objects, torch_dir, os.path.join(out_dir, "_C.cpython-%d%d-aarch64-linux-gnu.so" % sys.version_info[:2]))


# --- the CUDA build's host side (GH200: an aarch64 host with an sm_90 GPU) ---------------------------

NVCC = os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")
CUDA_MACRO = "FASTPERC_WITH_CUDA"


def cuda_dependent_cpu_sources():
    """The C++ units whose text changes in a CUDA build: those that test FASTPERC_WITH_CUDA. Only .cpp
    files may test it (checked here), so a unit that does not name it compiles the same either way and
    the CPU build's object stands in for it."""
    headers = [p for ext in ("h", "inc") for p in glob.glob(os.path.join(ROOT, "csrc", "**", "*." + ext), recursive=True)]
    for header in headers:
        if CUDA_MACRO in open(header).read():
            raise AssertionError(f"{os.path.relpath(header, ROOT)} tests {CUDA_MACRO}: only .cpp files may")
    return [s for s in aarch64_sources() if CUDA_MACRO in open(os.path.join(ROOT, s)).read()]


def cuda_include_dirs():
    """The toolkit's headers for an aarch64 host. A cross toolkit has targets/sbsa-linux; without it the
    x86_64 folder serves, since those headers are the same text for both hosts (the host's
    architecture is tested by #if inside them, which the aarch64 compiler evaluates)."""
    targets = os.path.join(os.path.dirname(os.path.dirname(NVCC)), "targets")
    for target in ("sbsa-linux", "aarch64-linux", "x86_64-linux"):
        include = os.path.join(targets, target, "include")
        if os.path.isdir(include):
            return [include, os.path.join(include, "cccl")]  # CUDA 13 keeps thrust/cub under cccl/
    raise FileNotFoundError(f"no CUDA headers under {targets}")


def cross_compile_cuda(torch_dir, out_dir, opt="-O1", jobs=None, archs=("90",)):
    """The CUDA build of fastperc/_C for an aarch64 host: every .cu through nvcc with the aarch64 g++
    as its host compiler (device code for archs; GH200 is sm_90), the CUDA-dependent C++ units again
    with FASTPERC_WITH_CUDA, the other units' objects from cross_compile (run it first, into the same
    out_dir), all linked into one aarch64 shared object. The CUDA libraries stay unresolved in it: the
    aarch64 libcudart is not on an x86-64 machine. Returns the shared object's path and the objects of the CUDA units."""
    from torch.utils import cpp_extension

    defines, includes = _defines_and_includes(torch_dir, out_dir)
    defines += [f"-D{CUDA_MACRO}=1", '-DFASTPERC_CUDA_ARCHS="%s"' % ";".join(a[0] + "." + a[1:] for a in archs)]
    includes += [flag for folder in cuda_include_dirs() for flag in ("-isystem", folder)]
    cxx_flags = _cxx_flags(opt) + defines + includes
    # torch's own nvcc flags for extensions (half/bfloat16 operators off, relaxed constexpr), as setup.py gets them.
    nvcc_flags = [*cpp_extension.COMMON_NVCC_FLAGS, "-std=c++20", "-ccbin", CXX, "-Xcompiler", f"-fPIC,{opt},-fno-math-errno",
                  *defines, *includes, *[f for a in archs for f in ("-gencode", f"arch=compute_{a},code=sm_{a}")]]

    def compile_one(source):
        obj = _object_path(out_dir, source, "cuda_")
        command = [NVCC, *nvcc_flags] if source.endswith(".cu") else [CXX, *cxx_flags]
        _run([*command, "-c", os.path.join(ROOT, source), "-o", obj])
        return obj

    replaced = cuda_dependent_cpu_sources()
    cuda_objects = _compile_all(compile_one, replaced + cuda_sources(), jobs)
    objects = [_object_path(out_dir, s) for s in aarch64_sources() if s not in replaced] + cuda_objects
    so = os.path.join(out_dir, "_C_cuda.cpython-%d%d-aarch64-linux-gnu.so" % sys.version_info[:2])
    return _link(objects, torch_dir, so), cuda_objects


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    try:
        print(cross_compile(*sys.argv[1:]))
    except subprocess.CalledProcessError as exc:
        sys.exit(f"{' '.join(exc.cmd[:3])} ... failed:\n{exc.stderr}")
