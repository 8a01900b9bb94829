/*
 * nn.h — private helpers for tape op wrappers (the files in src/nn). Each op file
 * holds the raw forward/backward, the tape wrapper duet_nn_<op>, and a static
 * <op>_tape_backward that the wrapper stores in its record.
 */
#ifndef DUET_NN_H
#define DUET_NN_H

#include "core/internal.h"

/* The gradient buffer to accumulate into, or NULL when t needs none. */
static inline float *nn_grad(const duet_tensor *t) {
    return t && t->requires_grad ? t->grad : NULL;
}
static inline float *nn_f32(const duet_tensor *t) { return (float *)t->data; }

/* Column sums over N rows (bias and norm parameter gradients): the width of
 * one task's range of the C columns, so that each thread takes one range
 * and sweeps it row after row (one sequential stream a row; blocks of 64
 * columns read with a whole row's stride ran at a third of the read
 * bandwidth). A multiple of 16, at most cap (cap >= 16). *par: worth
 * threads at all. */
static inline int64_t nn_col_range(int64_t N, int64_t C, int64_t cap, int *par) {
    *par = duet_omp_enough(N * C);
    const int64_t nt = *par ? duet_get_threads() : 1, per = (C + nt - 1) / nt;
    return DUET_MIN(cap, DUET_MAX(16, (per + 15) / 16 * 16)); /* C = 0: no task */
}

/* Sets a sticky error on the graph (returns NULL for convenience). */
duet_tensor *nn_fail(duet_graph *g, duet_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Checks that t is a contiguous tensor of dtype dt; sets an error otherwise. */
int nn_check(duet_graph *g, const duet_tensor *t, duet_dtype dt, const char *op,
             const char *what);
/* New f32 output with the given shape (NULL + graph error on failure). */
duet_tensor *nn_out(duet_graph *g, int ndim, const int64_t *shape);
/* New f32 output with t's shape. */
duet_tensor *nn_out_like(duet_graph *g, const duet_tensor *t);
/* Product of shape[from..ndim). */
int64_t nn_inner(const duet_tensor *t, int from);
/* Same shapes? */
int nn_same_shape(const duet_tensor *a, const duet_tensor *b);

#endif
