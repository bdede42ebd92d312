#!/usr/bin/env bash
# The llama.cpp peer column (pip install -e '.[llamacpp]'), built so it runs on this x86 runner.
#
# llama-cpp-python builds llama.cpp from source with -march=native. On an AMX Xeon that compiles in ggml's AMX
# matmul, which segfaults in the first eval (ggml-org/llama.cpp#20824; #26954: worker threads run tile instructions
# without the kernel's per-thread XTILEDATA permission). So where the CPU has AVX-512, the ISA is named instead of
# "native": AVX-512 (+ VNNI, + BF16 where present), never AMX. Elsewhere (AVX2) native is right. --no-cache-dir:
# pip's wheel cache is keyed by the sdist, not by CMAKE_ARGS, and would hand back the old build.
#   bench/install-llamacpp.sh            build and install (~10 min on 2 cores)
#   bench/install-llamacpp.sh --dry-run  print the CMAKE_ARGS it would use ($CPUINFO: another cpuinfo file)
set -euo pipefail
flags=$(grep -m1 '^flags' "${CPUINFO:-/proc/cpuinfo}" || true)
has() { [[ " $flags " == *" $1 "* ]]; }
args=""
if has avx512f && has avx512bw && has avx512vl; then
  args="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=ON"
  has avx512_vnni && args+=" -DGGML_AVX512_VNNI=ON"
  has avx512_bf16 && args+=" -DGGML_AVX512_BF16=ON"
  has avx512vbmi && args+=" -DGGML_AVX512_VBMI=ON"
  args+=" -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
fi
echo "install-llamacpp: CMAKE_ARGS=${args:-<native>}" >&2
[ "${1:-}" = --dry-run ] && exit 0
cd "$(dirname "$0")/.."
pin=$(sed -n 's/^llamacpp = \["\(.*\)"\]$/\1/p' pyproject.toml)   # the extra's one pin
CMAKE_ARGS="$args" python -m pip install --no-cache-dir --force-reinstall --no-deps --no-binary llama-cpp-python "$pin"
python -m pip install --quiet -e ".[llamacpp]"   # its dependencies (the build above already satisfies the pin)
python -c "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
