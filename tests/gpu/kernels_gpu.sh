#!/usr/bin/env bash
# Runs mpiray's Kokkos kernels (libs/kernels) on an NVIDIA GPU and checks their values.
#
#   tests/gpu/kernels_gpu.sh [build-dir]      (default: build-gpu-kernels)
#
# Needs an NVIDIA GPU and a Kokkos built with CUDA, found through KOKKOS_ROOT (or Kokkos_DIR),
# or Spack (`spack install kokkos+cuda+wrapper cuda_arch=90`; the script asks
# `spack location -i kokkos+cuda`). It configures a separate build of mpiray against that
# Kokkos (Kokkos' nvcc_wrapper compiles only the Kokkos targets), then runs, with the kernels'
# default execution space on the GPU:
#   * the C++ kernel tests (reductions of every op x dtype, GAE and returns against references,
#     the environments, Views as objects: device Views copied to and from the store once);
#   * the Python kernel tests (environments against Gymnasium step by step, GAE against numpy,
#     reductions against numpy/torch), which then move their arrays to the GPU and back;
#   * a check that the kernels did run on CUDA.
# Exit status: 0 all passed; 1 a check failed; 77 skipped (no GPU, or no CUDA Kokkos), with the
# reason on stderr.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$repo/build-gpu-kernels}
PY=${PYTHON:-$(command -v python3)}

skip() { echo "kernels_gpu: SKIPPED: $*" >&2; exit 77; }

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  skip "no NVIDIA GPU on this machine (nvidia-smi lists none)"
fi
nvidia-smi -L

kokkos_root=${KOKKOS_ROOT:-}
if [ -z "$kokkos_root" ] && [ -n "${Kokkos_DIR:-}" ]; then kokkos_root=$Kokkos_DIR; fi
if [ -z "$kokkos_root" ] && command -v spack >/dev/null 2>&1; then
  kokkos_root=$(spack location -i kokkos+cuda 2>/dev/null || true)
fi
[ -n "$kokkos_root" ] || skip "no Kokkos with CUDA: set KOKKOS_ROOT, or spack install kokkos+cuda+wrapper"
cfg=$(find "$kokkos_root" -name KokkosConfig.cmake -print -quit 2>/dev/null || true)
[ -n "$cfg" ] || skip "no KokkosConfig.cmake under $kokkos_root"
if ! grep -rqi 'CUDA' "$(dirname "$cfg")"/KokkosConfig*.cmake; then
  skip "the Kokkos under $kokkos_root has no CUDA backend"
fi
echo "kernels_gpu: Kokkos from $kokkos_root"

cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPython_EXECUTABLE="$PY" -DKokkos_ROOT="$kokkos_root" -DMPIRAY_WITH_KOKKOS=ON \
  -DMPIRAY_WERROR=OFF -DMPIRAY_BUILD_EXAMPLES=OFF
cmake --build "$build" -j "${JOBS:-8}" --target mpiray_kernels_tests mpiray_kernels_python

export PYTHONPATH="$repo/python" MPIRAY_BUILD_DIR="$build"
backend=$("$PY" -c 'import mpiray.kernels as k; print(k.backend())')
echo "kernels_gpu: backend: $backend"
case "$backend" in
  *Cuda*) ;;
  *) echo "kernels_gpu: FAILED: the kernels run on '$backend', not on CUDA" >&2; exit 1 ;;
esac

(cd "$build" && ctest -R '^kernels/' --output-on-failure)
"$PY" -m pytest -q "$repo/tests/python/kernels"
"$PY" -m mpiray.bench_kernels --quick
echo "kernels_gpu: OK (kernels on $backend)"
