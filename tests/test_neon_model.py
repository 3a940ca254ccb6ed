"""benchmarks/neon_model.py, llvm-mca's model of the NEON loops (what stands in for ARM timings), runs: it
finds the Gram and pairs tiles' multiply loops in the cross-compiled objects and models each on Neoverse
V2 (Grace) with that core's own model, not a stand-in (LLVM 16 timed neoverse-n1 with Cortex-A57's).
Needs llvm-mca-19 and the aarch64 cross compiler; skipped without them, unless FASTPERC_REQUIRE_AARCH64=1
(CI installs both).
"""
import contextlib
import io
import os
import re
import shutil
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NATIVE = os.uname().machine == "aarch64"


def test_neon_model_times_every_gram_and_pairs_tile_on_the_cores_own_model():
    needed = ["llvm-mca-19"] + ([] if NATIVE else ["aarch64-linux-gnu-g++", "aarch64-linux-gnu-objdump"])
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if missing:
        message = f"needs {', '.join(missing)} (apt-get install llvm-19 g++-aarch64-linux-gnu)"
        if os.environ.get("FASTPERC_REQUIRE_AARCH64") == "1":
            pytest.fail(message)
        pytest.skip(message)
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import neon_model

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = neon_model.main(["--isa", "neon", "--mca", "llvm-mca-19", "--cpus", "neoverse-v2",
                                  "--match", r"(gram_tile|pairs_tile)<"])
    assert status == 0
    rows = [line for line in out.getvalue().splitlines() if line.startswith("neon ")]
    tiles = {re.search(r"\w+_tile<[^>]*>", row)[0] for row in rows}
    assert len(tiles) == 8, f"expected the 2 Gram and 6 pairs tiles, got {sorted(tiles)}"
    for row in rows:
        assert "not its model" not in row, row
        cycles, share = re.search(r"\|\s+([\d.]+) \(\s*(\d+)%\)", row).groups()
        assert float(cycles) > 0 and 0 < int(share) <= 101, row
