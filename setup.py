"""Build script for fastperc._C.

CPU kernels are always built; CUDA kernels are built when the installed torch is a CUDA build and nvcc
is found (FASTPERC_FORCE_CUDA=1 / FASTPERC_FORCE_CPU=1 override). Build with
`pip install --no-build-isolation -e .`: an isolated build would compile against a different torch.
"""
import glob
import os
import platform
import shutil

# torch guesses CUDA_HOME from the `nvcc` on PATH; a shim in /usr/local/bin makes it guess /usr/local.
# Pin the real toolkit before torch.utils.cpp_extension reads the variable.
if "CUDA_HOME" not in os.environ and os.path.isfile("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

from setuptools import find_packages, setup  # noqa: E402
import torch  # noqa: E402
from torch.utils import cpp_extension  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))
# Without a visible GPU torch cannot pick an arch and the build dies; A100 and H100 natively, PTX for newer.
DEFAULT_CUDA_ARCHS = "8.0;9.0+PTX"


def want_cuda():
    if os.environ.get("FASTPERC_FORCE_CPU") == "1":
        return False
    if os.environ.get("FASTPERC_FORCE_CUDA") == "1":
        return True
    return torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None and (
        shutil.which("nvcc") is not None or os.path.isfile(os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc"))
    )


def rel(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


# Per-ISA micro-kernels exist per architecture: x86-64 builds the AVX2/AVX-512 ones (immintrin.h,
# `#pragma GCC target`), aarch64 the NEON ones (arm_neon.h); every other file compiles anywhere.
ISA_FILE_ARCH = {"_avx": "x86_64", "_neon": "aarch64"}  # marker in csrc/cpu/isa/<kernel>_<isa>.cpp


def cpu_sources(machine=None):
    """The C++ sources of the CPU kernels for a target architecture (a platform.machine() name)."""
    machine = (machine or platform.machine()).lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)

    def builds_here(path):
        arch = [a for marker, a in ISA_FILE_ARCH.items() if marker in os.path.basename(path)]
        return not arch or arch[0] == machine

    isa = [p for p in rel("csrc/cpu/isa/*.cpp") if builds_here(p)]
    return rel("csrc/*.cpp") + rel("csrc/common/*.cpp") + rel("csrc/cpu/*.cpp") + isa


def cuda_sources():
    """The CUDA units, added to cpu_sources() in a CUDA build (tests/aarch64_build.py compiles them too)."""
    return rel("csrc/cuda/*.cu")


def use_ccache():
    """Compile through ccache when it is installed (FASTPERC_CCACHE=0 opts out): a rebuild of unchanged
    units takes seconds instead of minutes. torch's compiler check rejects CXX="ccache g++", so the
    compilers are reached through a folder of symlinks named gcc/g++/cc/c++ put first on PATH (ccache
    then runs the next compiler of that name on PATH)."""
    ccache = shutil.which("ccache")
    if ccache is None or os.environ.get("FASTPERC_CCACHE") == "0":
        return False
    links = os.path.join(ROOT, "build", "ccache-bin")
    os.makedirs(links, exist_ok=True)
    for name in ("gcc", "g++", "cc", "c++"):
        link = os.path.join(links, name)
        if not os.path.islink(link):
            os.symlink(ccache, link)
    os.environ["PATH"] = links + os.pathsep + os.environ.get("PATH", "")
    os.environ.setdefault("CCACHE_NOHASHDIR", "true")  # hits across clones in other folders
    if "PYTORCH_NVCC" not in os.environ and cpp_extension.CUDA_HOME is not None:
        os.environ["PYTORCH_NVCC"] = "%s %s" % (ccache, os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc"))
    return True


def extension():
    use_cuda = want_cuda()
    sources = cpu_sources()
    # -fopenmp on compile and link, or at::parallel_for silently runs on one thread. No -march=native:
    # the SIMD micro-kernels are compiled per ISA (csrc/cpu/isa) and picked at run time.
    # -ffp-contract=off: GCC contracts a*b+c into FMAs in C++ by default, which breaks exact identities
    # (SSIM(x, x) == 1, symmetric results); kernels that want FMAs ask for them explicitly.
    # -g0: Python's own flags add -g, which doubled the compile time of every unit (debug info for the
    # torch headers) for a symbol table nobody reads; FASTPERC_DEBUG=1 keeps it.
    debug = os.environ.get("FASTPERC_DEBUG") == "1"
    cxx = ["-O3", "-fopenmp", "-Wno-psabi", "-fno-math-errno", "-ffp-contract=off", "-g" if debug else "-g0"]
    link = ["-fopenmp"]
    # FASTPERC_SANITIZE=address,undefined: the sanitizer build of tests/sanitize.sh (never for users).
    sanitize = os.environ.get("FASTPERC_SANITIZE")
    if sanitize:
        cxx += ["-g", "-fno-omit-frame-pointer", "-fsanitize=" + sanitize]
        link += ["-fsanitize=" + sanitize]
    define_macros = []
    if use_cuda:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)
        sources += cuda_sources()
        define_macros.append(("FASTPERC_WITH_CUDA", "1"))
        define_macros.append(("FASTPERC_CUDA_ARCHS", '"%s"' % os.environ["TORCH_CUDA_ARCH_LIST"]))
        nvcc = ["-O3", "-lineinfo", "-Xcompiler=-fno-math-errno", "-Xcompiler=" + ("-g" if debug else "-g0")]
        return cpp_extension.CUDAExtension(
            "fastperc._C",
            sources,
            include_dirs=[os.path.join(ROOT, "csrc")],
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx, "nvcc": nvcc},
            extra_link_args=link,
        )
    return cpp_extension.CppExtension(
        "fastperc._C",
        sources,
        include_dirs=[os.path.join(ROOT, "csrc")],
        define_macros=define_macros,
        extra_compile_args={"cxx": cxx},
        extra_link_args=link,
    )


# Run by pip / setuptools (as __main__); tests/aarch64_build.py imports cpu_sources() and cuda_sources().
if __name__ == "__main__":
    use_ccache()
    setup(
        packages=find_packages(include=["fastperc", "fastperc.*"]),
        ext_modules=[extension()],
        cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
    )
