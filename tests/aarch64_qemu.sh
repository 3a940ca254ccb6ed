#!/usr/bin/env bash
# The parity tests of every op on aarch64, on an x86-64 machine: qemu-user runs an arm64 Debian Python
# with PyPI's aarch64 torch (CPU build) and fastperc cross-compiled for aarch64 (tests/aarch64_build.py).
# Slow (torch alone takes ~30 s to import under emulation): run by hand, not by CI; CI cross-compiles
# every source (tests/test_aarch64.py). The last run's result is in benchmarks/RESULTS.md.
#
#   bash tests/aarch64_qemu.sh [pytest arguments]     (root; the venv with torch and pybind11 active)
#
# Needs (Debian): apt-get install g++-aarch64-linux-gnu qemu-user-static debootstrap. qemu-aarch64-static
# -L runs the arm64 Python with the arm64 tree as its root; the tests that start a subprocess also need
# binfmt_misc, which this script registers for arm64 when it can (below).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${FASTPERC_AARCH64_WORK:-/tmp/fastperc-aarch64}
SYSROOT=$WORK/sysroot        # arm64 Debian: Python 3.11 and its headers, libgomp, libstdc++
SITE=$WORK/site-packages     # aarch64 wheels: torch (CPU build), numpy, pillow, pytest, hypothesis
TORCH=${FASTPERC_AARCH64_TORCH_VERSION:-2.9.1}  # the newest aarch64 torch on PyPI without CUDA libraries
TESTS=${FASTPERC_AARCH64_TESTS:-"tests/test_gram.py tests/test_style_loss.py tests/test_ssim.py tests/test_sparse.py
  tests/test_layouts.py tests/test_raw_ops.py tests/test_fallback.py"}
mkdir -p "$WORK"

if [ ! -x "$SYSROOT/usr/bin/python3.11" ]; then
  echo "aarch64: arm64 Debian userland (debootstrap, first stage only: unpacked, never run)"
  debootstrap --arch=arm64 --foreign --variant=minbase --include=python3,python3-dev,libpython3.11-dev,libgomp1 \
    bookworm "$SYSROOT" http://deb.debian.org/debian >"$WORK/debootstrap.log"
  for deb in "$SYSROOT"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$SYSROOT"; done
fi
target=(--target "$SITE" --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64
        --platform manylinux_2_17_aarch64 --implementation cp --python-version 3.11 --only-binary=:all: -q)
if [ ! -d "$SITE/torch" ]; then
  echo "aarch64: wheels for cp311 manylinux aarch64 (torch $TORCH without its CUDA dependencies)"
  pip install "${target[@]}" --no-deps "torch==$TORCH"
  pip install "${target[@]}" numpy pytest hypothesis filelock typing-extensions sympy networkx jinja2 fsspec
fi
if [ ! -d "$SITE/PIL" ]; then  # the rest of fastperc's dependencies, and the CLI's bench suites
  pip install "${target[@]}" pillow pytest-benchmark
fi

echo "aarch64: cross-compiling fastperc._C against torch $TORCH's aarch64 headers"
rm -rf "$WORK/repo" && mkdir -p "$WORK/repo"
git -C "$ROOT" ls-files -z --cached --others --exclude-standard | (cd "$ROOT" && tar --null -T - -cf -) | tar -C "$WORK/repo" -xf -
so=$(python "$ROOT/tests/aarch64_build.py" "$SITE" "$WORK/build" "$SYSROOT/usr/include/python3.11:$SYSROOT/usr/include")
cp "$so" "$WORK/repo/fastperc/"

# The wheels' folder is on the arm64 Python's path through a .pth file, not PYTHONPATH, which the
# tests that start a subprocess set to the repo alone.
echo "$SITE" > "$SYSROOT/usr/lib/python3/dist-packages/fastperc-aarch64-wheels.pth"

# The tests that start a Python subprocess (the CLI and its benches, the fallback without an extension,
# the examples) need the kernel to hand an arm64 binary to qemu: binfmt_misc, registered here when this
# root may, and left registered (the F flag opens qemu once, for every namespace). qemu finds the
# child's libraries through QEMU_LD_PREFIX. Where it cannot be registered, those tests are deselected.
# tests/test_cli.py's bench runs outlast their 600 s timeouts under emulation; its other tests pass.
BINFMT=/proc/sys/fs/binfmt_misc
QEMU=$(command -v qemu-aarch64-static)
[ -e "$BINFMT/register" ] || mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null || true
if [ ! -e "$BINFMT/qemu-aarch64" ] && [ -e "$BINFMT/register" ]; then
  echo ":qemu-aarch64:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:$QEMU:F" \
    >"$BINFMT/register" 2>/dev/null || true
fi
deselect="not compile and not emulated"
if QEMU_LD_PREFIX="$SYSROOT" "$SYSROOT/usr/bin/python3.11" -c "" 2>/dev/null; then
  echo "aarch64: binfmt_misc runs arm64 binaries: the subprocess tests run too"
  # The console script, as pip would write it, for tests/test_cli.py.
  mkdir -p "$WORK/bin"
  printf '#!%s\nimport sys\nfrom fastperc.cli import main\nsys.exit(main())\n' "$SYSROOT/usr/bin/python3.11" \
    >"$WORK/bin/fastperc"
  chmod +x "$WORK/bin/fastperc"
else
  echo "aarch64: no binfmt_misc for arm64 binaries: the subprocess tests are deselected"
  deselect="$deselect and not example_trains and not without_extension and not test_cli"
fi

cd "$WORK/repo"
run() {
  qemu-aarch64-static -L "$SYSROOT" -E PYTHONPATH="$WORK/repo" -E LD_LIBRARY_PATH="$SITE/torch/lib" \
    -E QEMU_LD_PREFIX="$SYSROOT" -E PATH="$WORK/bin:$PATH" "$SYSROOT/usr/bin/python3.11" "$@"
}
run -c "import platform, torch, fastperc; print('aarch64:', platform.machine(), 'torch', torch.__version__); fastperc.info()"
start=$(date +%s)
set +e
# Not here: torch.compile (inductor would call the host's x86 compiler) and the CUDA emulator (built by
# the host's g++ too); both are covered on x86-64.
# shellcheck disable=SC2086
run -m pytest $TESTS -q -p no:cacheprovider -k "$deselect" "$@"
status=$?
set -e
echo "aarch64: tests $(($(date +%s) - start)) s under qemu, pytest exit $status"
exit "$status"
