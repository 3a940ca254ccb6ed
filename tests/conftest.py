import contextlib

import pytest
import torch

import fastperc
from fastperc import _backend

CUDA = torch.cuda.is_available()


@pytest.fixture(params=["cuda", "emulated"])
def backend(request):
    """(ops namespace, device) the CUDA kernels run on: the GPU (skipped without one), or the CPU
    emulator of tests/cuda_emu, which runs the same kernel and driver source on CPU tensors."""
    if request.param == "cuda":
        if not CUDA:
            pytest.skip("no CUDA device")
        return torch.ops.fastperc, "cuda"
    from cuda_emu import load_emulated_ops

    return load_emulated_ops(), "cpu"


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device")


@pytest.fixture
def reference_only(monkeypatch):
    """Run the public API on the pure-PyTorch reference."""
    monkeypatch.setattr(_backend, "force_reference", True)


@contextlib.contextmanager
def num_threads(n):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def cpu_isa(name):
    old = _backend._C.cpu_isa()
    _backend._C.set_cpu_isa(name)
    try:
        yield
    finally:
        _backend._C.set_cpu_isa(old)


def supported_isas():
    """The ISAs this CPU runs, lowest first: generic, avx2, avx512 on x86-64; generic, neon on aarch64."""
    return _backend.build_info()["cpu_isas"].split(",")


def rel_err(a, b):
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


@pytest.fixture(autouse=True, scope="session")
def _extension_is_built():
    # Every kernel test compares the compiled kernel with the reference: without the extension they
    # would silently test the reference against itself.
    assert _backend.extension_loaded(), f"fastperc._C did not load: {_backend.load_error}"
    assert fastperc.info(print_table=False)["reference_fallback"] == [] or not CUDA
