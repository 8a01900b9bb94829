/*
 * quant_avx2.c — AVX2 quantized dot products (being written).
 */
#include "kernels/quant.h"

const duet_quant_kernels duet_quant_kernels_avx2 = {.isa = "avx2"};
