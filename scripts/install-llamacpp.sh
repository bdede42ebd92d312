#!/usr/bin/env bash
# The llama.cpp peer column (pip install -e '.[llamacpp]'), built so it runs on this x86 runner.
#
# llama-cpp-python builds llama.cpp from source with -march=native. On an AMX Xeon that compiles in ggml's AMX
# matmul, which segfaults in the first eval (ggml-org/llama.cpp#20824; #26954: worker threads run tile instructions
# without the kernel's per-thread XTILEDATA permission). So where the CPU has AVX-512, the ISA is named instead of
# "native": AVX-512 (+ VNNI, + BF16 where present), never AMX. Elsewhere (AVX2) native is right. --no-cache-dir:
# pip's wheel cache is keyed by the sdist, not by CMAKE_ARGS, and would hand back the old build.
#   scripts/install-llamacpp.sh            build and install (~10 min on 2 cores)
#   scripts/install-llamacpp.sh --dry-run  print the CMAKE_ARGS and wheel key it would use ($CPUINFO: another cpuinfo)
#   LLAMACPP_WHEELS=DIR scripts/install-llamacpp.sh
#                                        keep the built wheel in DIR/<key> and install from there next time (seconds):
#                                        the key hashes the pin, CMAKE_ARGS, the CPU's flags, the compiler, Python and
#                                        this script, so a runner whose CPU, compiler, pin or build recipe changed
#                                        builds anew
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
cd "$(dirname "$0")/.."
pin=$(sed -n 's/^llamacpp = \["\(.*\)"\]$/\1/p' pyproject.toml)   # the extra's one pin
compiler=$( (${CC:-cc} --version 2>/dev/null || echo "no cc") | head -1)
interpreter=$(python -c 'import sys, sysconfig; print(sys.version, sysconfig.get_platform())' 2>/dev/null || echo "no python")
script=$(sha256sum < scripts/install-llamacpp.sh)   # the code that builds it
key=$(printf '%s\n' "$pin" "$args" "$flags" "$compiler" "$interpreter" "$script" | sha256sum | cut -c1-16)
echo "install-llamacpp: CMAKE_ARGS=${args:-<native>} wheel key=$key" >&2
[ "${1:-}" = --dry-run ] && exit 0

build() {  # build <pip verb and its options>: llama-cpp-python from its sdist with this CPU's CMAKE_ARGS
  CMAKE_ARGS="$args" python -m pip "$@" --no-cache-dir --no-deps --no-binary llama-cpp-python "$pin"
}
if [ -n "${LLAMACPP_WHEELS:-}" ]; then
  wheels="$LLAMACPP_WHEELS/$key"
  if ! compgen -G "$wheels/llama_cpp_python-*.whl" > /dev/null; then
    mkdir -p "$LLAMACPP_WHEELS"
    building=$(mktemp -d "$LLAMACPP_WHEELS/.building-XXXXXX")
    trap 'rm -rf "$building"' EXIT
    build wheel --wheel-dir "$building"
    mv -T "$building" "$wheels" 2> /dev/null || true   # atomic; a runner that won the race built the same wheel
  fi
  echo "install-llamacpp: installing $(cd "$wheels" && ls llama_cpp_python-*.whl)" >&2
  python -m pip install --force-reinstall --no-deps "$wheels"/llama_cpp_python-*.whl
else
  build install --force-reinstall
fi
python -m pip install --quiet -c constraints.txt -e ".[llamacpp]"   # its dependencies (the build above already satisfies the pin)
python -c "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
