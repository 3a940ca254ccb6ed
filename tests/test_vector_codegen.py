"""The SSIM filter loops of every x86 ISA compile to register code: no vector register is spilled to the
stack in their innermost loops (stored there and read back).

GCC vectors wider than the ISA (the 64-byte vectors every ISA once used) were split into pieces that
spilled to the stack in these loops, and made the avx2 build 1.5x slower than the generic one on an
AVX2-only EPYC (issue 12). Each ISA's stage file is compiled here with setup.py's flags (it includes no
torch header: a few seconds) and disassembled; an innermost loop is the span of a backward branch
with no other backward branch inside it. (Integer reloads of row pointers in the per-pixel tail loops,
which run fewer than one vector's width of times per row, are not what this is about; nor are stack
slots a loop only reads: loop invariants, the window's weights broadcast once, that the 16-register ISAs
keep in memory where the H pass's rows of inputs fill the registers.) The SSIM per-pixel stages must
divide with packed instructions (vectorised loops). The generic Gram and sparse tiles are checked for
spills too, and for how their broadcasts compile. Last, no avx2 or avx512 object may emit a weak
symbol, which the linker could pick for the rest of the library.
"""
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ["-std=c++20", "-O3", "-fPIC", "-Wno-psabi", "-fno-math-errno", "-ffp-contract=off"]  # as setup.py
HOT = ("correlate_block", "correlate_last", "correlate_rows", "correlate_rows_h", "correlate_rows_symmetric",
       "correlate_last_xy")

pytestmark = pytest.mark.skipif(
    not (shutil.which("objdump") and os.uname().machine == "x86_64"), reason="needs objdump on x86-64")


def functions(obj, objdump="objdump"):
    """{demangled name: [(address, instruction text)]} of an object file (comments after `//` dropped)."""
    text = subprocess.run([objdump, "-d", "-C", "--no-show-raw-insn", obj], capture_output=True, text=True,
                          check=True).stdout
    out, name = {}, None
    for line in text.splitlines():
        head = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if head:
            name = head.group(1)
            out[name] = []
            continue
        insn = re.match(r"^\s+([0-9a-f]+):\s+(.*)$", line)
        if insn and name is not None:
            out[name].append((int(insn.group(1), 16), insn.group(2).split("//")[0].strip()))
    return out


X86_JUMP = r"^j\w+\s+([0-9a-f]+)\b"
AARCH64_BRANCH = r"^(?:b|b\.\w+|cbn?z|tbn?z)\s+(?:[^,\s]+,\s*)*([0-9a-f]+)\s+<"  # b.ne 5f0 <f+0x30>


def innermost_loops(code, jump_pattern=X86_JUMP):
    """(start, end) address spans of backward jumps that contain no other backward jump. A span with a
    return in it is no loop: a branch back into the function's shared tail (GCC ends an early exit so)."""
    returns = [address for address, text in code if re.match(r"ret[qw]?\b", text)]
    loops = []
    for address, text in code:
        jump = re.match(jump_pattern, text)
        if jump and int(jump.group(1), 16) <= address:
            start = int(jump.group(1), 16)
            if not any(start <= r <= address for r in returns):
                loops.append((start, address))
    return [(a, b) for a, b in loops if not any((c, d) != (a, b) and a <= c and d <= b for c, d in loops)]


def compile_command(source, obj, cxx="g++"):
    """The command that compiles csrc/cpu/isa/<source>.cpp to obj with setup.py's flags."""
    return [cxx, *FLAGS, "-I", os.path.join(ROOT, "csrc"), "-c",
            os.path.join(ROOT, "csrc", "cpu", "isa", f"{source}.cpp"), "-o", str(obj)]


def compiled(source, tmp_path):
    """functions() of csrc/cpu/isa/<source>.cpp compiled with setup.py's flags."""
    obj = tmp_path / f"{source}.o"
    subprocess.run(compile_command(source, obj), check=True)
    return functions(str(obj))


def loop_bodies(code, jump_pattern=X86_JUMP):
    """(start address, instruction texts) of each innermost loop of a function."""
    for start, end in innermost_loops(code, jump_pattern):
        yield start, [text for address, text in code if start <= address <= end]


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_ssim_filter_inner_loops_keep_vectors_in_registers(isa, tmp_path):
    checked = 0
    for name, code in compiled(f"ssim_tile_{isa}", tmp_path).items():
        if not any(f"{hot}<" in name for hot in HOT):
            continue
        # %rbp addresses the stack only where the function made it a frame pointer; at -O3 it is
        # usually one more data pointer (a row of the filter's input), whose loads are no spill.
        frame = r"%r[sb]p" if any(re.match(r"mov\s+%rsp,%rbp$", text) for _, text in code) else r"%rsp"
        for start, body in loop_bodies(code):
            on_stack = [text for text in body
                        if re.search(r"\(" + frame + r"(,|\))", text) and re.search(r"%[xyz]mm", text)]
            # AT&T syntax: the destination is the last operand, so a store ends with the stack address.
            stores = [text for text in on_stack if re.search(r"\(" + frame + r"(,[^)]*)?\)$", text)]
            assert not stores, f"{isa}: {name}: vector spills in the loop at {start:#x}: {on_stack}"
            checked += 1
    assert checked >= 8, f"{isa}: found only {checked} filter loops to check"


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_ssim_per_pixel_stages_are_vectorised(isa, tmp_path):
    # SSIM and CS per pixel (ssim_pixels) and their moment gradients (ssim_pixel_grads, two loops: with
    # and without the CS weight) divide twice per pixel. GCC 12 left the gradient loops scalar under
    # avx2 and generic when the variance clamp selected a product (it sank the product into the select's
    # arm, where it might trap, and could not if-convert): 2x slower backward stage. Each of their loops
    # that divides must divide packed.
    functions_found = 0
    for name, code in compiled(f"ssim_tile_{isa}", tmp_path).items():
        if not re.search(r"\bssim_pixel(s|_grads)<(float|double)>", name):
            continue
        functions_found += 1
        packed = [body for _, body in loop_bodies(code) if any(re.match(r"v?divp[sd]\s", t) for t in body)]
        assert len(packed) >= (2 if "grads" in name else 1), f"{isa}: {name}: no packed division in its loops"
    assert functions_found == 4, f"{isa}: found {functions_found} per-pixel stage functions"


@pytest.mark.parametrize("source", ["gram_tile_generic", "sparse_tile_generic"])
def test_generic_tile_broadcasts_are_one_shuffle(source, tmp_path):
    # The generic tiles broadcast one scalar per row and k. Written `R{} + s`, each broadcast kept a
    # scalar add (0 + s is not s for s = -0); written lane by lane, GCC 12 built it from five shuffles.
    # Now it is a load and one shufps/unpcklpd: the multiply loops hold no scalar add and at most one
    # shuffle per vector multiply, and no vector spills. The Gram tile loads its a values pre-broadcast
    # (GramTile::a_lanes): no shuffle at all.
    checked = 0
    for name, code in compiled(source, tmp_path).items():
        if not any(f"{tile}<" in name for tile in ("gram_tile", "rows_tile", "pairs_tile")):
            continue
        for _, body in loop_bodies(code):
            multiplies = [text for text in body if re.match(r"mulp[sd]\s", text)]
            if not multiplies:
                continue
            shuffles = [text for text in body if re.match(r"(shufp[sd]|unpck[lh]p[sd]|pshufd|movlhps)\s", text)]
            assert not [text for text in body if re.match(r"adds[sd]\s", text)], f"{name}: scalar adds in the loop"
            allowed = 0 if source == "gram_tile_generic" else len(multiplies)
            assert len(shuffles) <= allowed, f"{name}: {len(shuffles)} shuffles for {len(multiplies)} multiplies"
            assert not [text for text in body if "(%rsp)" in text and re.search(r"%xmm", text)], f"{name}: spills"
            checked += 1
    assert checked >= (2 if source == "gram_tile_generic" else 12), f"{source}: only {checked} multiply loops found"


TILES = ("gram_tile<", "rows_tile<", "pairs_tile<")


def tile_multiply_loops(functions_of_object, multiply, jump_pattern=X86_JUMP):
    """{tile function: [innermost loop bodies that multiply]} of the Gram and sparse tiles."""
    return {name: [body for _, body in loop_bodies(code, jump_pattern) if any(re.match(multiply, t) for t in body)]
            for name, code in functions_of_object.items() if any(tile in name for tile in TILES)}


def tile_shape(name):
    """(rows, vectors, bytes per vector) of a tile function: pairs_tile<...::F32x4, 2, 8>(...) -> (2, 8, 16)."""
    match = re.search(r"_tile<(?:\w+::)*(?:\(anonymous namespace\)::)?(F(32|64)x(\d+)|Vec16<\w+>), (\d+), (\d+)", name)
    assert match, f"no tile shape in {name}"
    vector_bytes = int(match[2]) * int(match[3]) // 8 if match[2] else 16
    return int(match[4]), int(match[5]), vector_bytes


def pairs_tile_prefetches(name):
    """The prefetches one step of a pairs tile issues: one for its a values, one per 64-byte line of b."""
    _, vectors, vector_bytes = tile_shape(name)
    return 1 + -(-vectors * vector_bytes // 64)


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_pairs_tiles_prefetch_each_line_once(isa, tmp_path):
    # The pair tiles fetch a later pair's scattered rows ahead. They did so once per vector: twice a
    # 64-byte line under avx2, four times under generic and NEON, where llvm-mca put the NEON loops at
    # their load pipes' limit. Once per line, the weight gradient took 4-11% less time under avx2 and
    # 8-15% under generic on a Zen 5 (benchmarks/RESULTS.md, twentieth session).
    loops = tile_multiply_loops(compiled(f"sparse_tile_{isa}", tmp_path), r"(v?mulp[sd]|vfn?madd\w*p[sd])\s")
    pairs = {name: bodies for name, bodies in loops.items() if "pairs_tile<" in name}
    assert len(pairs) == 6, f"{isa}: found {len(pairs)} pairs tiles: {sorted(pairs)}"
    for name, bodies in pairs.items():
        issued = max(sum(text.startswith("prefetcht0") for text in body) for body in bodies)
        assert issued == pairs_tile_prefetches(name), f"{isa}: {name}: {issued} prefetches a step"


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_tile_multiply_loops_keep_accumulators_in_registers(isa, tmp_path):
    # A tile's k loop only loads and multiplies: its accumulators are stored once, after the loop. A
    # vector store inside it is an accumulator kept in memory (a loop over the tile's vectors left
    # rolled, or more live values than registers), loaded and stored on every step.
    loops = {}
    for kernel in ("gram_tile", "sparse_tile"):
        loops.update(tile_multiply_loops(compiled(f"{kernel}_{isa}", tmp_path), r"(v?mulp[sd]|vfn?madd\w*p[sd])\s"))
    assert len(loops) >= 9, f"{isa}: found only {len(loops)} tile functions: {sorted(loops)}"
    for name, bodies in loops.items():
        assert bodies, f"{isa}: {name}: no multiply loop found"
        for body in bodies:
            stores = [text for text in body if re.search(r"%[xyz]mm", text) and text.endswith(")")]
            assert not stores, f"{isa}: {name}: vector stores in its multiply loop: {stores}"


def test_isa_objects_share_no_code_through_the_linker(tmp_path):
    # Each avx2 / avx512 translation unit is compiled for its ISA (`#pragma GCC target`). A template or
    # inline function it instantiates with external linkage (std::vector<float>'s constructor, say) is
    # a weak symbol, and the linker keeps one copy for the whole library: possibly this one, whose
    # AVX-512 instructions would then run wherever any file calls it, on CPUs without AVX-512 too. So
    # the ISA objects may define no weak or unique symbols: everything they share is their entry points.
    sources = sorted(os.path.splitext(name)[0] for name in os.listdir(os.path.join(ROOT, "csrc", "cpu", "isa"))
                     if re.search(r"_(avx2|avx512\w*)\.cpp$", name))
    assert len(sources) >= 9, sources
    jobs = {source: subprocess.Popen(compile_command(source, tmp_path / f"{source}.o")) for source in sources}
    for source, job in jobs.items():
        assert job.wait() == 0, f"{source} did not compile"
        symbols = subprocess.run(["nm", "-C", str(tmp_path / f"{source}.o")], capture_output=True, text=True,
                                 check=True).stdout.splitlines()
        shared = [line for line in symbols if re.match(r"^[0-9a-f ]+ [WVu] ", line)]
        assert not shared, f"{source}: weak or unique symbols the linker may pick for other files: {shared}"
