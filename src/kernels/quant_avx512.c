/*
 * quant_avx512.c — AVX-512 quantized dot products (being written).
 */
#include "kernels/quant.h"

const duet_quant_kernels duet_quant_kernels_avx512 = {.isa = "avx512"};
const duet_quant_kernels duet_quant_kernels_avx512_vnni = {.isa = "avx512-vnni"};
