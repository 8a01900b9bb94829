/*
 * kernels_avx2.c — AVX2 + FMA kernel set (compiled with -mavx2 -mfma).
 * Entries left NULL fall back to the scalar reference.
 */
#include "core/internal.h"
#include "kernels/kernels.h"

const duet_kernels duet_kernels_avx2 = {
    .isa = "avx2",
};
