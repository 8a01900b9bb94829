/*
 * init.c — library start-up: CPU feature detection (CPUID + XGETBV, so a
 * feature counts only when the OS saves its registers), thread count, and the
 * choice of kernel set.
 */
#include "core/internal.h"
#include "kernels/kernels.h"

#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

duet_kernels duet_k;  /* zero until duet_init; every entry is non-NULL after */

static unsigned cpu_features;
static int n_threads;

#if defined(__x86_64__)
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

static unsigned detect_features(void) {
    unsigned f = 0;
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (c & (1u << 20)) f |= DUET_CPU_SSE42;
    int osxsave = (c & (1u << 27)) != 0;
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    int ymm_ok = (xcr0 & 0x6) == 0x6;
    int zmm_ok = ymm_ok && (xcr0 & 0xe0) == 0xe0;
    int amx_ok = (xcr0 & 0x60000) == 0x60000;
    if (ymm_ok && (c & (1u << 28))) f |= DUET_CPU_AVX;
    if (ymm_ok && (c & (1u << 12))) f |= DUET_CPU_FMA;
    if (ymm_ok && (c & (1u << 29))) f |= DUET_CPU_F16C;
    unsigned maxleaf = __get_cpuid_max(0, NULL);
    if (maxleaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if (ymm_ok && (b & (1u << 5))) f |= DUET_CPU_AVX2;
        if (zmm_ok && (b & (1u << 16))) f |= DUET_CPU_AVX512F;
        if (zmm_ok && (b & (1u << 17))) f |= DUET_CPU_AVX512DQ;
        if (zmm_ok && (b & (1u << 30))) f |= DUET_CPU_AVX512BW;
        if (zmm_ok && (b & (1u << 31))) f |= DUET_CPU_AVX512VL;
        if (zmm_ok && (c & (1u << 11))) f |= DUET_CPU_AVX512_VNNI;
        if (amx_ok && (d & (1u << 22))) f |= DUET_CPU_AMX_BF16;
        if (amx_ok && (d & (1u << 24))) f |= DUET_CPU_AMX_TILE;
        if (amx_ok && (d & (1u << 25))) f |= DUET_CPU_AMX_INT8;
        unsigned a1, b1, c1, d1;
        __cpuid_count(7, 1, a1, b1, c1, d1);
        if (zmm_ok && (a1 & (1u << 5))) f |= DUET_CPU_AVX512_BF16;
        if (ymm_ok && (a1 & (1u << 4))) f |= DUET_CPU_AVX_VNNI;
    }
#endif
    return f;
}

static const char *const feature_names[] = {
    "sse4.2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
    "avx512dq", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "avx_vnni",
};

char *duet_cpu_features_string(char *buf, size_t size) {
    duet_init();
    size_t n = 0;
    buf[0] = 0;
    for (unsigned i = 0; i < sizeof feature_names / sizeof *feature_names; i++) {
        if (!(cpu_features & (1u << i))) continue;
        int w = snprintf(buf + n, size - n, n ? " %s" : "%s", feature_names[i]);
        if (w < 0 || (size_t)w >= size - n) break;
        n += (size_t)w;
    }
    return buf;
}

/* Copies a kernel set over the scalar one, entry by entry, so an ISA set may
 * leave entries NULL. */
static void install(const duet_kernels *k) {
    duet_k = duet_kernels_scalar;
    duet_k.quant = duet_quant_kernels_select(k ? k->isa : "scalar", cpu_features);
    if (!k) return;
    duet_k.isa = k->isa;
    if (k->sgemm) duet_k.sgemm = k->sgemm;
    if (k->softmax_rows) duet_k.softmax_rows = k->softmax_rows;
    if (k->layernorm_rows) duet_k.layernorm_rows = k->layernorm_rows;
    if (k->rmsnorm_rows) duet_k.rmsnorm_rows = k->rmsnorm_rows;
    if (k->dot) duet_k.dot = k->dot;
    if (k->axpy) duet_k.axpy = k->axpy;
    if (k->attend_row) duet_k.attend_row = k->attend_row;
    if (k->attend_row_f16) duet_k.attend_row_f16 = k->attend_row_f16;
}

static int can_avx2(void) {
    unsigned need = DUET_CPU_AVX2 | DUET_CPU_FMA | DUET_CPU_F16C;
    return (cpu_features & need) == need;
}
static int can_avx512(void) {
    unsigned need = DUET_CPU_AVX512F | DUET_CPU_AVX512BW | DUET_CPU_AVX512VL |
                    DUET_CPU_AVX512DQ | DUET_CPU_FMA;
    return (cpu_features & need) == need;
}

/* duet_kernel_force without duet_init: init_once itself calls this for
 * DUET_ISA (through duet_kernel_force it re-entered pthread_once and hung). */
static duet_status force_isa(const char *isa) {
    if (strcmp(isa, "scalar") == 0) {
        install(NULL);
        return DUET_OK;
    }
#if defined(__x86_64__)
    if (strcmp(isa, "avx2") == 0) {
        if (!can_avx2()) return duet_set_error(DUET_ERR_UNSUPPORTED, "this CPU lacks AVX2/FMA");
        install(&duet_kernels_avx2);
        return DUET_OK;
    }
    if (strcmp(isa, "avx512") == 0) {
        if (!can_avx512())
            return duet_set_error(DUET_ERR_UNSUPPORTED, "this CPU lacks AVX-512 (F/BW/VL/DQ)");
        install(&duet_kernels_avx512);
        return DUET_OK;
    }
#endif
    return duet_set_error(DUET_ERR_UNSUPPORTED, "unknown or unavailable kernel set '%s'", isa);
}

duet_status duet_kernel_force(const char *isa) {
    duet_init();
    return force_isa(isa);
}

static void init_once(void) {
    cpu_features = detect_features();
    install(NULL);
#if defined(__x86_64__)
    const char *want = getenv("DUET_ISA"); /* override for debugging: scalar|avx2|avx512 */
    if (want && *want) {
        if (force_isa(want) != DUET_OK)
            fprintf(stderr, "duet: DUET_ISA=%s ignored: %s\n", want, duet_last_error());
    } else if (can_avx512()) {
        install(&duet_kernels_avx512);
    } else if (can_avx2()) {
        install(&duet_kernels_avx2);
    }
#endif
    int nt = omp_get_num_procs();
    const char *env = getenv("DUET_THREADS");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == 0 && v > 0 && v <= 1024) nt = (int)v;
        else fprintf(stderr, "duet: DUET_THREADS=%s ignored (want a number 1..1024)\n", env);
    }
    n_threads = nt > 0 ? nt : 1;
    omp_set_num_threads(n_threads);
}

static pthread_once_t once = PTHREAD_ONCE_INIT;

void duet_init(void) { pthread_once(&once, init_once); }

/* Measured with bench_train_text (gpt2 small, 2 threads, this 2-core VM):
 * sampling 1.55 ms/token with GOMP_SPINCOUNT 3000 or 10000, 1.71 with
 * 100000, 3.3-5.5 with PASSIVE; training the same within noise, also with
 * one core taken by another process. */
void duet_prefer_short_spin(char **argv) {
    if (!argv || getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    if (setenv("GOMP_SPINCOUNT", "3000", 1) != 0) return;
    execv("/proc/self/exe", argv);
    unsetenv("GOMP_SPINCOUNT"); /* exec failed (no /proc?): carry on as we are */
}

unsigned duet_cpu_features(void) {
    duet_init();
    return cpu_features;
}

const char *duet_kernel_isa(void) {
    duet_init();
    return duet_k.isa;
}

void duet_set_threads(int n) {
    duet_init();
    n_threads = n > 0 ? n : 1;
    omp_set_num_threads(n_threads);
}

int duet_get_threads(void) {
    duet_init();
    return n_threads;
}

const char *duet_compiler(void) {
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown compiler";
#endif
}
