#!/usr/bin/env bash
# One call on a CUDA machine: build, CUDA tests, compute-sanitizer, GPU benchmarks; writes a report.
# Usage (repository root, torch with CUDA already installed): bash benchmarks/gpu_check.sh [REPORT_DIR]
# Peers, if wanted, are installed from wheels carried along (no network there): pip install --no-index wheels/*.whl
# (pytorch-msssim, kornia, torchmetrics, piq, spconv-cu*, and fused-ssim built for that GPU: the bench adds each
# one it can import, fused-ssim to ssim and l1ssim in float32 on CUDA).
# Stages run in order; pick some with GPU_CHECK_STAGES (a device call is limited to 10 minutes, so a
# lease can run, e.g., "build tests" in one call and "sanitize" and "bench ncu" in the next ones; the
# build stays in place between calls on a warm machine).
set -uo pipefail
cd "$(dirname "$0")/.."
STAGES=${GPU_CHECK_STAGES:-"build tests sanitize bench ncu"}
want() { [[ " $STAGES " == *" $1 "* ]]; }
REPORT_DIR=${1:-${OUT:-benchmarks/gpu_report}}
mkdir -p "$REPORT_DIR"
REPORT="$REPORT_DIR/gpu_check.txt"
: > "$REPORT"
log() { echo "$@" | tee -a "$REPORT"; }
section() { log; log "=== $* ==="; }

section "machine"
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc;
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } 2>&1 | tee -a "$REPORT"

if want build; then
  section "build"
  export MAX_JOBS=${MAX_JOBS:-16}
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-"8.0;9.0"}
  ( time pip install --no-build-isolation -e . -q ) 2>&1 | tail -5 | tee -a "$REPORT"
fi
fastperc info 2>&1 | tee -a "$REPORT"

CUDA_TESTS="tests/test_cuda.py tests/test_cuda_kernels.py tests/test_cuda_sparse.py tests/test_knn_kernels.py tests/test_build.py"
if want tests; then
  section "tests: every CUDA kernel on the GPU (and under the emulator); the CPU suite is CI's"
  python -m pytest $CUDA_TESTS -q -rs 2>&1 | tail -25 | tee -a "$REPORT"
fi

if want sanitize; then
  section "compute-sanitizer (memcheck, racecheck, synccheck, initcheck) on the CUDA tests"
  for tool in memcheck racecheck synccheck initcheck; do
    compute-sanitizer --tool "$tool" --error-exitcode 1 --target-processes all \
      python -m pytest $CUDA_TESTS -q -x -k "not compile and not grid_limit and not emulated and not api_forward" \
      2>&1 | tail -4 | sed "s/^/[$tool] /" | tee -a "$REPORT"
  done
fi

if want bench; then
section "benchmarks (fastperc bench --device cuda)"
for dtype in float32 float16; do
  fastperc bench --device cuda --dtype "$dtype" --json "$REPORT_DIR/bench_cuda_$dtype.json" 2>&1 | tee -a "$REPORT"
done
fastperc bench --device cuda --op ssim3d --json "$REPORT_DIR/bench_cuda_ssim3d.json" 2>&1 | tee -a "$REPORT"
fastperc bench --device cuda --op perceptual --json "$REPORT_DIR/bench_cuda_perceptual.json" 2>&1 | tee -a "$REPORT"
fastperc bench --device cuda --op chamfer --json "$REPORT_DIR/bench_cuda_chamfer.json" 2>&1 | tee -a "$REPORT"
for dtype in float32 float16; do
  fastperc bench --device cuda --op subm --dtype "$dtype" --json "$REPORT_DIR/bench_cuda_subm_$dtype.json" 2>&1 | tee -a "$REPORT"
done
fi

if want ncu; then
section "SSIM under ncu (one launch of each kernel, key metrics)"
ncu --launch-count 12 --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__throughput.avg.pct_of_peak_sustained_elapsed \
  python -c "import torch, fastperc; x=torch.rand(1,3,1080,1920,device='cuda',requires_grad=True); y=torch.rand_like(x); fastperc.ssim(x,y,1.0).backward()" 2>&1 | tail -60 | tee -a "$REPORT"
fi
log
log "report: $REPORT"
