#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of the CPU kernel tests, and of the CUDA kernels
# under the CPU emulator (tests/cuda_emu, built with the same flags).
#
# Builds a sanitized copy of the extension (FASTPERC_SANITIZE in setup.py) in a scratch copy of the
# tree, so the normal build stays as it is, then runs the kernel tests there with libasan preloaded
# into Python. Any report fails the run: ASan aborts on the first error, UBSan halts on it.
#
#   bash tests/sanitize.sh                  # with the venv that has torch active; prints a summary
#   bash tests/sanitize.sh -k layouts       # extra arguments go to pytest
#   FASTPERC_SANITIZE_DIR=/tmp/san bash tests/sanitize.sh   # keep the build for the next run
#
# Pitfall (../ENGINEERING notes): preloading libasan alone aborts at the first C++ exception a
# TORCH_CHECK throws; libstdc++ must be preloaded after it.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${FASTPERC_SANITIZE_DIR:-$(mktemp -d -t fastperc-sanitize.XXXXXX)}
SANITIZERS=${FASTPERC_SANITIZE:-address,undefined}
# The kernel tests: parity, layouts, fuzzing, bad and raw input, threads, autograd, opcheck, and the
# emulated CUDA kernels. The applications, CLI and model tests run no kernel code of their own.
TESTS=${FASTPERC_SANITIZE_TESTS:-"tests/test_ssim.py tests/test_ssim_api.py tests/test_gram.py tests/test_style_loss.py
  tests/test_sparse.py tests/test_layouts.py tests/test_fuzz.py tests/test_raw_ops.py tests/test_bad_input.py
  tests/test_autograd.py tests/test_opcheck.py tests/test_cuda_kernels.py tests/test_cuda_sparse.py
  tests/test_knn_kernels.py tests/test_chamfer.py"}

mkdir -p "$WORK"
echo "sanitize: copying the tree to $WORK"
git -C "$ROOT" ls-files -z --cached --others --exclude-standard | (cd "$ROOT" && tar --null -T - -cf -) | tar -C "$WORK" -xf -
cd "$WORK"
start=$(date +%s)
echo "sanitize: building with -fsanitize=$SANITIZERS (CPU kernels; several minutes on 2 cores)"
FASTPERC_SANITIZE=$SANITIZERS FASTPERC_FORCE_CPU=1 MAX_JOBS=${MAX_JOBS:-2} python setup.py -q build_ext --inplace >build-sanitize.log 2>&1 \
  || { tail -40 build-sanitize.log; exit 1; }
built=$(date +%s)

export FASTPERC_SANITIZE=$SANITIZERS
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so.6)"
# Python's own allocations are never freed at exit: leak reports would be noise.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# The tests import the sanitized fastperc of this copy (the current directory comes first on sys.path).
where=$(python -c "import fastperc._C, os; print(os.path.dirname(os.path.dirname(fastperc._C.__file__)))")
[ "$where" = "$PWD" ] || { echo "sanitize: imported fastperc from $where, not from $PWD" >&2; exit 1; }
set +e
# shellcheck disable=SC2086
# The largest emulated sparse cases run each CUDA thread as a fiber under ASan for minutes; the same
# kernels and paths run at the smaller sizes.
python -m pytest $TESTS -q -p no:cacheprovider -k "not (emulated and sizes2) and not several_splits" "$@"
status=$?
set -e
echo "sanitize: build $((built - start)) s, tests $(($(date +%s) - built)) s, pytest exit $status ($SANITIZERS)"
exit "$status"
