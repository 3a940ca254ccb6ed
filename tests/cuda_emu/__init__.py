"""Builds and loads the CUDA kernel drivers under the CPU emulator (emulate.h, emu_ops.cpp) once per
test session: torch.ops.fastperc_emu.* take CPU tensors and run the same kernel source as the GPU."""
import functools
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(os.path.dirname(os.path.dirname(HERE)), "csrc")


@functools.lru_cache(maxsize=None)
def load_emulated_ops():
    from torch.utils.cpp_extension import load

    # Under tests/sanitize.sh the emulated CUDA kernels are sanitized too (a separate build name, so the
    # plain and the sanitized builds never overwrite each other's cache).
    sanitize = os.environ.get("FASTPERC_SANITIZE")
    flags = ["-O2", "-std=c++20"] + (["-g", "-fno-omit-frame-pointer", f"-fsanitize={sanitize}"] if sanitize else [])
    load(name="fastperc_cuda_emu" + ("_sanitized" if sanitize else ""), sources=[os.path.join(HERE, "emu_ops.cpp")],
         extra_include_paths=[CSRC, HERE], extra_cflags=flags,
         extra_ldflags=[f"-fsanitize={sanitize}"] if sanitize else [], is_python_module=False, verbose=False)
    return torch.ops.fastperc_emu
