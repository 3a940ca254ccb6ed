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
import sys

from test_vector_codegen_neon import require_aarch64_tools

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_neon_model_times_every_gram_and_pairs_tile_on_the_cores_own_model():
    require_aarch64_tools("llvm-mca-19", packages="g++-aarch64-linux-gnu llvm-19")
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
