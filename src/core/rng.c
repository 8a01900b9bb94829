/*
 * rng.c — Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as
 * 1, 2, 3", SC'11), counter-based: draw i is a pure function of (seed, i), so
 * results do not depend on how work is split across threads.
 */
#include "core/internal.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void duet_philox(uint64_t seed, uint64_t ctr, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)ctr, c1 = (uint32_t)(ctr >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

void duet_rng_init(duet_rng *r, uint64_t seed) {
    r->seed = seed;
    r->offset = 0;
}

static inline float u24(uint32_t x) { return (float)(x >> 8) * (1.0f / 16777216.0f); }

void duet_rng_uniform(duet_rng *r, float *out, int64_t n) {
    uint64_t seed = r->seed, base = r->offset;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        uint32_t w[4];
        duet_philox(seed, base + (uint64_t)i, w);
        out[i] = u24(w[0]);
    }
    r->offset += (uint64_t)n;
}

float duet_rng_next(duet_rng *r) {
    uint32_t w[4];
    duet_philox(r->seed, r->offset++, w);
    return u24(w[0]);
}

void duet_rng_normal(duet_rng *r, float *out, int64_t n, float mean, float std) {
    uint64_t seed = r->seed, base = r->offset;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        uint32_t w[4];
        duet_philox(seed, base + (uint64_t)i, w);
        /* Box–Muller on two 32-bit words; u1 in (0, 1] avoids log(0). */
        double u1 = ((double)w[0] + 1.0) * (1.0 / 4294967296.0);
        double u2 = (double)w[1] * (1.0 / 4294967296.0);
        double z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
        out[i] = mean + std * (float)z;
    }
    r->offset += (uint64_t)n;
}
