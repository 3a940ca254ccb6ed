"""Cross-compiles the CPU extension for aarch64 (Grace Hopper, Jetson, Graviton, Ampere hosts) with
Debian's g++-aarch64-linux-gnu against the headers and libraries of an aarch64 torch wheel.

Used by tests/test_aarch64.py (every CPU source must compile and link for aarch64, in CI) and by
tests/aarch64_qemu.sh (the parity tests run on the result under qemu-user). The sources are the ones
setup.py picks for aarch64 (cpu_sources), the flags the ones setup.py gives the CPU build.

    python tests/aarch64_build.py TORCH_DIR OUT_DIR [PYTHON_INCLUDE[:MORE_INCLUDES]]

TORCH_DIR holds torch/include and torch/lib of the aarch64 wheel (unzip the wheel there).
"""
import concurrent.futures
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CXX = os.environ.get("FASTPERC_AARCH64_CXX", "aarch64-linux-gnu-g++")


def aarch64_sources():
    """setup.py's cpu_sources("aarch64"), read from setup.py without running its setup()."""
    spec = importlib.util.spec_from_file_location("fastperc_setup", os.path.join(ROOT, "setup.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.cpu_sources("aarch64")


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


def cross_compile(torch_dir, out_dir, python_include=None, opt="-O2", jobs=None):
    """Compiles every aarch64 CPU source into out_dir and links fastperc/_C for aarch64. Returns the
    path of the shared object. Raises CalledProcessError with the compiler's output on failure."""
    import pybind11

    os.makedirs(out_dir, exist_ok=True)
    include = os.path.join(torch_dir, "torch", "include")
    flags = [opt, "-std=c++20", "-fPIC", "-fopenmp", "-Wall", "-Wno-psabi", "-fno-math-errno", "-ffp-contract=off",
             "-DTORCH_API_INCLUDE_EXTENSION_H", "-DTORCH_EXTENSION_NAME=_C", "-D_GLIBCXX_USE_CXX11_ABI=1",
             "-I", os.path.join(ROOT, "csrc"), "-I", include, "-I", os.path.join(include, "torch", "csrc", "api", "include"),
             "-I", pybind11.get_include()]
    # PYTHON_INCLUDE: one or more folders (os.pathsep between); Debian's arm64 Python needs its
    # multiarch parent too (/usr/include, for aarch64-linux-gnu/python3.11/pyconfig.h).
    for folder in (python_include or sysconfig.get_paths()["include"]).split(os.pathsep):
        flags += ["-I", folder]
    if python_include is None:
        flags += debian_pyconfig_shim(sysconfig.get_paths()["include"], out_dir)

    def compile_one(source):
        obj = os.path.join(out_dir, source.replace("/", "_") + ".o")
        result = subprocess.run([CXX, *flags, "-c", os.path.join(ROOT, source), "-o", obj], capture_output=True,
                                text=True)
        if result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, result.args, result.stdout, result.stderr)
        return obj

    sources = aarch64_sources()
    with concurrent.futures.ThreadPoolExecutor(jobs or os.cpu_count() or 2) as pool:
        objects = list(pool.map(compile_one, sources))
    lib = os.path.join(torch_dir, "torch", "lib")
    so = os.path.join(out_dir, "_C.cpython-%d%d-aarch64-linux-gnu.so" % sys.version_info[:2])
    link = [CXX, "-shared", "-fopenmp", *objects, "-L", lib, "-lc10", "-ltorch_cpu", "-ltorch", "-o", so]
    result = subprocess.run(link, capture_output=True, text=True)
    if result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, link, result.stdout, result.stderr)
    return so


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    try:
        print(cross_compile(*sys.argv[1:]))
    except subprocess.CalledProcessError as exc:
        sys.exit(f"{' '.join(exc.cmd[:3])} ... failed:\n{exc.stderr}")
