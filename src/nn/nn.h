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
