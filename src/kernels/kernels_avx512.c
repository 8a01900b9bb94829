/*
 * kernels_avx512.c — AVX-512 kernel set (compiled with -mavx512f/bw/vl/dq).
 * Entries left NULL fall back to the scalar reference.
 */
#include "core/internal.h"
#include "kernels/kernels.h"

const duet_kernels duet_kernels_avx512 = {
    .isa = "avx512",
};
