"""llvm-mca's model of fastperc's NEON hot loops on Arm's server cores: what stands in for timings until
ARM hardware runs them. A model, not a measurement.

Compiles the aarch64 tile and SSIM sources with setup.py's flags (Debian's aarch64-linux-gnu-g++, or g++
on an aarch64 host), takes every innermost loop of the Gram, sparse, k-NN and SSIM functions that does
vector floating-point work (the loops tests/test_vector_codegen_neon.py checks), and runs llvm-mca on
each for each core. Per loop it gives its instructions, vector FP instructions (compares and the bit
selects of minima included), multiply-adds (NEON's fmla; the generic build's fmul, each with an fadd)
and loads. Per core it gives the model's cycles per iteration and how close that is to the vector FP
pipes' bound: the FP instructions over the core's FP pipes (2 on Neoverse N1 and N2, 4 on V1, V2 and
V3). 100% is a loop that only the FP pipes hold back. Cycles per multiply-add compare the NEON and
generic builds.

    python benchmarks/neon_model.py [--isa neon,generic] [--mca llvm-mca-19,llvm-mca-22]
                                    [--cpus neoverse-n1,neoverse-v2] [--match REGEX]

Needs llvm-mca 17 or newer (`apt-get install llvm-19`). LLVM 16 has no Neoverse N1, V1 or V2 model of
its own: it times neoverse-n1 with Cortex-A57's and V1/V2 with N2's, and this script says so in
the row (the resource names llvm-mca prints give it away). Models of one core differ between LLVM
releases (LLVM 22 gives N1 a dispatch width of 3 where 19 gives 8), so give more than one.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from test_vector_codegen import AARCH64_BRANCH, compile_command, functions, loop_bodies  # noqa: E402
from test_vector_codegen_neon import CXX, OBJDUMP  # noqa: E402

SOURCES = ("gram_tile", "sparse_tile", "knn_tile", "ssim_tile")
FP_PIPES = {"neoverse-n1": 2, "neoverse-n2": 2, "neoverse-v1": 4, "neoverse-v2": 4, "neoverse-v3": 4}
# The hot functions: the tiles' multiply loops (Gram, sparse, k-NN distances) and the SSIM filter passes.
DEFAULT_MATCH = r"(gram_tile|rows_tile|pairs_tile|distances_3d|correlate_\w+)<"
# The vector FP pipes' work: arithmetic, compares and the bit selects that pick by them (k-NN's minima).
VECTOR_FP = r"(f(mla|mls|mul|add|sub|div|max|min|abd|cm\w+)\w*\s+v\d+\.\d*[sd]|(bsl|bif|bit)\s+v\d+\.16b)"


def short_name(name: str) -> str:
    name = re.sub(r"fastperc::cpu::\(anonymous namespace\)::|void |\(.*", "", name)
    return re.sub(r"\(anonymous namespace\)::", "", name)


def model(mca: str, cpu: str, asm: str, iterations: int = 300):
    """(cycles per iteration, whether llvm-mca used the core's own model)."""
    out = subprocess.run([mca, "-mtriple=aarch64", f"-mcpu={cpu}", f"-iterations={iterations}"], input=asm,
                         capture_output=True, text=True)
    cycles = re.search(r"Total Cycles:\s+(\d+)", out.stdout)
    if cycles is None:
        return float("nan"), False
    own = cpu.split("-")[-1].upper() + "Unit"  # neoverse-v2 -> V2Unit, the prefix of its resources
    return int(cycles[1]) / iterations, own in out.stdout


def loops(obj: str, objdump: str, match: str):
    """(function, loop start, instructions) of each innermost loop with vector FP work."""
    for name, code in functions(obj, objdump).items():
        if not re.search(match, name):
            continue
        for start, body in loop_bodies(code, AARCH64_BRANCH):
            if any(re.match(VECTOR_FP, text) for text in body):
                yield name, start, body


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--isa", default="neon", help="comma-separated: neon, generic (the aarch64 generic build)")
    parser.add_argument("--mca", default="llvm-mca-19,llvm-mca-22", help="comma-separated llvm-mca binaries")
    parser.add_argument("--cpus", default="neoverse-n1,neoverse-n2,neoverse-v2", help="comma-separated -mcpu names")
    parser.add_argument("--match", default=DEFAULT_MATCH, help="regex on the demangled function names")
    args = parser.parse_args(argv)
    mcas = [m for m in args.mca.split(",") if shutil.which(m)]
    missing = [tool for tool in (CXX, OBJDUMP) if shutil.which(tool) is None] + (["llvm-mca"] if not mcas else [])
    if missing:
        print(f"needs {', '.join(missing)} (apt-get install g++-aarch64-linux-gnu llvm-19)", file=sys.stderr)
        return 2
    cpus = args.cpus.split(",")
    columns = [(mca, cpu) for mca in mcas for cpu in cpus]
    print("model cycles per loop iteration (% of the vector FP pipes' bound); "
          + ", ".join(f"{m}/{c}" for m, c in columns))
    with tempfile.TemporaryDirectory() as folder:
        for isa in args.isa.split(","):
            for source in SOURCES:
                obj = os.path.join(folder, f"{source}_{isa}.o")
                subprocess.run(compile_command(f"{source}_{isa}", obj, CXX), check=True)
                for name, start, body in loops(obj, OBJDUMP, args.match):
                    fp = sum(bool(re.match(VECTOR_FP, text)) for text in body)
                    # Multiply-adds: NEON's fmla, or the generic build's fmul (each with its fadd).
                    madds = sum(bool(re.match(r"f(mla|mls|mul)\s+v", text)) for text in body)
                    loads = sum(bool(re.match(r"(ld|prfm)", text)) for text in body)
                    asm = "\n".join(text for text in body if not re.match(AARCH64_BRANCH, text)) + "\n"
                    cells = []
                    for mca, cpu in columns:
                        cycles, own = model(mca, cpu, asm)
                        bound = fp / FP_PIPES.get(cpu, 2)
                        cells.append(f"{cycles:6.1f} ({100 * bound / cycles:3.0f}%)" + ("" if own else " not its model"))
                    print(f"{isa:7s} {short_name(name)[:44]:44s} @{start:#06x} {len(body):3d} insns {fp:3d} fp "
                          f"{madds:3d} madd {loads:2d} ld | " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
