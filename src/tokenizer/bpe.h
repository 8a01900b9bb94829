/*
 * bpe.h — private internals of the byte-level BPE (src/tokenizer/bpe.c)
 * exposed for tests; not part of the public API.
 */
#ifndef DUET_TOKENIZER_BPE_H
#define DUET_TOKENIZER_BPE_H

#include "duet.h"

#include <stdint.h>

/* End (exclusive) of the pre-token of s[0..n) that starts at p (0 <= p < n):
 * GPT-2's pattern over byte classes (see the tokenizer section of duet.h). */
int64_t duet_bpe_pretoken_end(const unsigned char *s, int64_t n, int64_t p);

/* Merge `rank` of t: (left, right) -> out. Returns 0 when rank is out of range. */
int duet_bpe_merge(const duet_tokenizer *t, int64_t rank, int32_t *left, int32_t *right,
                   int32_t *out);

#endif
