// The CPU's own INT8 and fp32 peaks (AVX-512 VNNI; issue 16): what `investigations/int8_ceiling.py --openvino`'s G MAC/s
// are set beside, to tell a kernel's limit from the hardware's.
//
//   cc -O2 -mavx512f -mavx512vnni -fopenmp investigations/vnni_peak.c -o /tmp/vnni_peak && /tmp/vnni_peak 2
//
// On N threads (one per core: pin them, e.g. `taskset -c $(gpt2compress cores 2)`), three repeats of: the clock
// (a chain of dependent adds, one cycle each), 12 independent `vpdpbusd zmm` chains (64 u8 x s8 multiply-adds
// each) and 12 independent `vfmadd231ps zmm` chains (16 fp32 multiply-adds each). Twelve chains hide the
// instructions' latency, so the rate is the units' throughput. Needs AVX-512 VNNI; elsewhere it is not built.
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CHAINS 12
#define TWELVE(op) op " %%zmm30, %%zmm31, %%zmm0\n\t" op " %%zmm30, %%zmm31, %%zmm1\n\t" \
    op " %%zmm30, %%zmm31, %%zmm2\n\t" op " %%zmm30, %%zmm31, %%zmm3\n\t" op " %%zmm30, %%zmm31, %%zmm4\n\t"    \
    op " %%zmm30, %%zmm31, %%zmm5\n\t" op " %%zmm30, %%zmm31, %%zmm6\n\t" op " %%zmm30, %%zmm31, %%zmm7\n\t"    \
    op " %%zmm30, %%zmm31, %%zmm8\n\t" op " %%zmm30, %%zmm31, %%zmm9\n\t" op " %%zmm30, %%zmm31, %%zmm10\n\t"   \
    op " %%zmm30, %%zmm31, %%zmm11"
#define ZMMS "zmm0", "zmm1", "zmm2", "zmm3", "zmm4", "zmm5", "zmm6", "zmm7", "zmm8", "zmm9", "zmm10", "zmm11"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void adds(long n) {  // 4 dependent adds per iteration: 4 cycles
    long x = 0;
    for (long i = 0; i < n; i++) __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
}

static void int8_macs(long n) {
    for (long i = 0; i < n; i++) __asm__ volatile(TWELVE("vpdpbusd")::: ZMMS);
}

static void fp32_macs(long n) {
    for (long i = 0; i < n; i++) __asm__ volatile(TWELVE("vfmadd231ps")::: ZMMS);
}

static double seconds_on_all(void (*body)(long), long n) {  // every thread runs body(n); the wall time of all
    double start = now();
#pragma omp parallel
    body(n);
    return now() - start;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    long n = argc > 2 ? atol(argv[2]) : 50000000;  // iterations of 12 instructions (about 0.6 s at 3.6 GHz)
    omp_set_num_threads(threads);
    for (int repeat = 0; repeat < 3; repeat++) {
        double ghz = 4.0 * (8 * n) / seconds_on_all(adds, 8 * n) / 1e9;
        double int8 = (double)threads * n * CHAINS * 64 / seconds_on_all(int8_macs, n) / 1e9;
        double fp32 = (double)threads * n * CHAINS * 16 / seconds_on_all(fp32_macs, n) / 1e9;
        printf("threads=%d clock=%.2f GHz  int8 vnni=%.1f G MAC/s (%.1f per cycle per core)  "
               "fp32 fma=%.1f G MAC/s (%.1f per cycle per core)\n",
               threads, ghz, int8, int8 / ghz / threads, fp32, fp32 / ghz / threads);
    }
    return 0;
}
