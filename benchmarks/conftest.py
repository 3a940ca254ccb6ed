import os

import pytest
import torch


@pytest.fixture(scope="session")
def device():
    """FASTPERC_BENCH_DEVICE=cuda benchmarks the CUDA kernels (default: cpu)."""
    dev = os.environ.get("FASTPERC_BENCH_DEVICE", "cpu")
    if dev == "cuda" and not torch.cuda.is_available():
        pytest.skip("FASTPERC_BENCH_DEVICE=cuda but no CUDA device is visible")
    return dev
