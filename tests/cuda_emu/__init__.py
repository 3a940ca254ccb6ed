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

    load(name="fastperc_cuda_emu", sources=[os.path.join(HERE, "emu_ops.cpp")], extra_include_paths=[CSRC, HERE],
         extra_cflags=["-O2", "-std=c++20"], is_python_module=False, verbose=False)
    return torch.ops.fastperc_emu
