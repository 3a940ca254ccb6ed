#!/usr/bin/env bash
# The parity tests of every op on aarch64, on an x86-64 machine: qemu-user runs an arm64 Debian Python
# with PyPI's aarch64 torch (CPU build) and fastperc cross-compiled for aarch64 (tests/aarch64_build.py).
# Slow (torch alone takes ~30 s to import under emulation): run by hand, not by CI; CI cross-compiles
# every source (tests/test_aarch64.py). The last run's result is in benchmarks/RESULTS.md.
#
#   bash tests/aarch64_qemu.sh [pytest arguments]     (root; the venv with torch and pybind11 active)
#
# Needs (Debian): apt-get install g++-aarch64-linux-gnu qemu-user-static debootstrap. No binfmt_misc
# is needed: qemu-aarch64-static -L runs the arm64 binaries with the arm64 tree as their root.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${FASTPERC_AARCH64_WORK:-/tmp/fastperc-aarch64}
SYSROOT=$WORK/sysroot        # arm64 Debian: Python 3.11 and its headers, libgomp, libstdc++
SITE=$WORK/site-packages     # aarch64 wheels: torch (CPU build), numpy, pytest, hypothesis
TORCH=${FASTPERC_AARCH64_TORCH_VERSION:-2.9.1}  # the newest aarch64 torch on PyPI without CUDA libraries
TESTS=${FASTPERC_AARCH64_TESTS:-"tests/test_gram.py tests/test_style_loss.py tests/test_ssim.py tests/test_sparse.py
  tests/test_layouts.py tests/test_raw_ops.py"}
mkdir -p "$WORK"

if [ ! -x "$SYSROOT/usr/bin/python3.11" ]; then
  echo "aarch64: arm64 Debian userland (debootstrap, first stage only: unpacked, never run)"
  debootstrap --arch=arm64 --foreign --variant=minbase --include=python3,python3-dev,libpython3.11-dev,libgomp1 \
    bookworm "$SYSROOT" http://deb.debian.org/debian >"$WORK/debootstrap.log"
  for deb in "$SYSROOT"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$SYSROOT"; done
fi
if [ ! -d "$SITE/torch" ]; then
  echo "aarch64: wheels for cp311 manylinux aarch64 (torch $TORCH without its CUDA dependencies)"
  target=(--target "$SITE" --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64
          --platform manylinux_2_17_aarch64 --implementation cp --python-version 3.11 --only-binary=:all: -q)
  pip install "${target[@]}" --no-deps "torch==$TORCH"
  pip install "${target[@]}" numpy pytest hypothesis filelock typing-extensions sympy networkx jinja2 fsspec
fi

echo "aarch64: cross-compiling fastperc._C against torch $TORCH's aarch64 headers"
rm -rf "$WORK/repo" && mkdir -p "$WORK/repo"
git -C "$ROOT" ls-files -z --cached --others --exclude-standard | (cd "$ROOT" && tar --null -T - -cf -) | tar -C "$WORK/repo" -xf -
so=$(python "$ROOT/tests/aarch64_build.py" "$SITE" "$WORK/build" "$SYSROOT/usr/include/python3.11:$SYSROOT/usr/include")
cp "$so" "$WORK/repo/fastperc/"

cd "$WORK/repo"
run() {
  qemu-aarch64-static -L "$SYSROOT" -E PYTHONPATH="$SITE:$WORK/repo" -E LD_LIBRARY_PATH="$SITE/torch/lib" \
    -E FASTPERC_AARCH64_QEMU=1 "$SYSROOT/usr/bin/python3.11" "$@"
}
run -c "import platform, torch, fastperc; print('aarch64:', platform.machine(), 'torch', torch.__version__); fastperc.info()"
start=$(date +%s)
set +e
# shellcheck disable=SC2086
# Not here: torch.compile (inductor would call the host's x86 compiler), the CUDA emulator (built by
# the host's g++ too) and the example run as a subprocess (without binfmt_misc the kernel cannot exec
# an arm64 Python); all are covered on x86-64.
run -m pytest $TESTS -q -p no:cacheprovider -k "not compile and not emulated and not example_trains" "$@"
status=$?
set -e
echo "aarch64: tests $(($(date +%s) - start)) s under qemu, pytest exit $status"
exit "$status"
