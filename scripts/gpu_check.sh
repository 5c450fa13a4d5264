#!/usr/bin/env bash
# One prepared GPU run of dlr-engine (issues 14 and 15), within ~7 minutes:
#   1. environment: GPU, torch, triton, nvcc;
#   2. build both extensions by the README's route
#      (DLR_ENGINE_BUILD_CUDA=1 pip install --no-build-isolation --no-deps -e .);
#   3. GPU tests compiled (TRITON_INTERPRET=0): tests/test_gpu_real_shapes.py (published
#      geometry, 30 s clips, batch 1 and 4, fresh random inputs, every backend and precision
#      against a CPU float64 reference; every mel preset) and the default model's inference
#      form on the GPU (tests/test_runtime.py), the ncms form's NCMS (tests/test_ncms.py).
#      Not the small-shape kernel tests:
#      compiled, each of their geometries would autotune anew (minutes);
#   4. dlr-bench dlr,mel,tempogram,inference --device cuda --quick --json (inference: the
#      model families eager vs their inference forms, issue 15);
#   5. a short table last (scripts/gpu_check_summary.py), kept as OUT/<gpu-name>.json with the
#      commit measured: copy it to bench/results/ and commit it.
# Needs no network and carries nothing: steps whose tools are missing (pybind11, cmake, nvcc,
# pytest; librosa inside the bench) are skipped with a message.
#
#   scripts/gpu_check.sh [--dry-run] [OUT_DIR]     (OUT_DIR default: $OUT, else ./gpu_check_out)
#
# --dry-run (CI, no GPU needed): reports what it would run, runs the CPU-side checks (the Triton
# kernels compiled for sm_90 with their tensor-core instructions, registers and spills; the GPU
# tests collected) and exits 0 when they pass.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
OUT_DIR="${1:-${OUT:-gpu_check_out}}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
PYTHON="${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}"
START=$SECONDS
FAILED=()

step() { echo; echo "== [$((SECONDS - START)) s] $*"; }
have_module() { "$PYTHON" -c "import $1" >/dev/null 2>&1; }
# run LIMIT_S NAME CMD...: runs CMD (or, dry, prints it), recording a failure by NAME.
run() {
    local limit="$1" name="$2"; shift 2
    if (( DRY )); then echo "would run (<= ${limit} s): $*"; return 0; fi
    echo "+ $*"
    timeout "$limit" "$@"
    local rc=$?
    if (( rc != 0 )); then FAILED+=("$name (exit $rc)"); fi
    return $rc
}

step "environment"
"$PYTHON" - <<'EOF'
import torch
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"GPU: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
try:
    import triton
    print(f"triton {triton.__version__}")
except ImportError:
    print("triton: not installed (the triton backend and its tests are skipped)")
EOF
command -v nvcc >/dev/null && nvcc --version | tail -1 || echo "nvcc: not on PATH"
GPU=$("$PYTHON" -c "import torch; print(int(torch.cuda.is_available()))")
if (( ! DRY && ! GPU )); then
    echo "no CUDA GPU visible to torch: nothing to measure; run with --dry-run for the CPU-side checks"
    exit 1
fi

step "build both extensions (README route)"
if ! have_module pybind11 || ! command -v cmake >/dev/null; then
    echo "skipped: needs pybind11 and cmake (the package still runs: triton and torch backends)"
else
    CUDA_FLAG=1
    command -v nvcc >/dev/null || { CUDA_FLAG=0; echo "nvcc missing: the CPU extension only"; }
    # the README's route; setup.py in place if pip cannot (e.g. an old setuptools offline)
    run 120 build env DLR_ENGINE_BUILD_CUDA=$CUDA_FLAG DLR_ENGINE_REQUIRE_EXTENSION=1 \
        "$PYTHON" -m pip install --no-build-isolation --no-deps --no-index -q -e . \
        || run 120 "build in place" env DLR_ENGINE_BUILD_CUDA=$CUDA_FLAG \
            DLR_ENGINE_REQUIRE_EXTENSION=1 "$PYTHON" setup.py -q build_ext --inplace
    (( CUDA_FLAG )) && run 20 "import _dlr_cuda" "$PYTHON" -c \
        "import dlr_engine._dlr_cuda, dlr_engine._dlr_cpu; print('both extensions import')"
fi

# kernels/ and bench/ install as dlr_engine.kernels and dlr_engine.bench; if the install above
# could not run (no pybind11 / cmake / setuptools offline), link them so the rest still runs.
if ! "$PYTHON" -c "import dlr_engine.kernels, dlr_engine.bench" >/dev/null 2>&1; then
    if (( DRY )); then
        echo "would link dlr_engine/kernels -> ../kernels and dlr_engine/bench -> ../bench"
    else
        echo "dlr_engine.kernels / dlr_engine.bench not importable: linking the folders"
        ln -sfn ../kernels dlr_engine/kernels && ln -sfn ../bench dlr_engine/bench
    fi
fi

GPU_TESTS=(tests/test_gpu_real_shapes.py tests/test_runtime.py::test_inference_form_on_gpu
           tests/test_ncms.py::test_ncms_fused_on_gpu)
step "GPU tests, compiled Triton, real shapes"
if ! have_module pytest; then
    echo "skipped: pytest is not installed"
elif (( DRY )); then
    run 110 tests env TRITON_INTERPRET=0 DLR_GPU_CHECK_JSON="$OUT_DIR/errors.jsonl" \
        "$PYTHON" -m pytest -q -rs "${GPU_TESTS[@]}"
    echo "CPU-side check: the GPU tests collect"
    TRITON_INTERPRET=0 "$PYTHON" -m pytest -q --collect-only "${GPU_TESTS[@]}" | tail -1 \
        || FAILED+=("collect GPU tests")
else
    rm -f "$OUT_DIR/errors.jsonl"
    run 110 tests env TRITON_INTERPRET=0 DLR_GPU_CHECK_JSON="$OUT_DIR/errors.jsonl" \
        "$PYTHON" -m pytest -q -rs "${GPU_TESTS[@]}"
fi

step "Triton kernels compiled for Hopper (sm_90): tensor-core instructions, registers, spills"
if have_module triton; then
    if (( DRY )); then
        TRITON_INTERPRET=0 "$PYTHON" scripts/triton_sm90.py 2>&1 | grep -v -i warn \
            || FAILED+=("triton_sm90")
    else
        echo "(in --dry-run only: on a GPU the tests and the bench compile them for real)"
    fi
else
    echo "skipped: triton is not installed"
fi

step "dlr-bench dlr,mel,tempogram,inference on the GPU"
run 280 bench env TRITON_INTERPRET=0 "$PYTHON" -m dlr_engine.bench.cli dlr,mel,tempogram,inference \
    --device cuda --quick --json "$OUT_DIR/bench.json"

step "summary"
if (( DRY )); then
    echo "would run: $PYTHON scripts/gpu_check_summary.py $OUT_DIR/bench.json $OUT_DIR/errors.jsonl $OUT_DIR/<gpu-name>.json --commit <HEAD>"
else
    COMMIT=$(git rev-parse HEAD 2>/dev/null || echo "${GPU_CHECK_COMMIT:-unknown}")
    NAME=$("$PYTHON" -c "import torch; print(torch.cuda.get_device_name().replace(' ', '_'))")
    "$PYTHON" scripts/gpu_check_summary.py "$OUT_DIR/bench.json" "$OUT_DIR/errors.jsonl" \
        "$OUT_DIR/$NAME.json" --commit "$COMMIT"
fi
echo
echo "gpu_check: $((SECONDS - START)) s$( (( DRY )) && echo ' (dry run)'), ${#FAILED[@]} failed step(s)${FAILED[*]:+: ${FAILED[*]}}"
(( ${#FAILED[@]} == 0 ))
