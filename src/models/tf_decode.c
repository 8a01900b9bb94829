/*
 * tf_decode.c — the transformer's single-token decode: one token through
 * every block, the final norm and the output projection inside ONE parallel
 * region, for sampling with a KV cache (duet_tf_feed with one new token).
 *
 * Why: a decoded token is ~10 small steps per block (norm, q/k/v, RoPE,
 * attention, wo, norm, MLP up, activation, down). Through the graph each is
 * an op with its own parallel region, and on a 2-core machine a region's
 * fork/join (waking the other thread when it has gone to sleep) costs tens
 * of microseconds: for small models that was a third of the time per token.
 * Here the threads stay in one region; the work between matrix products
 * runs on one thread (`omp single`, a barrier after it) and each product's
 * rows — of every matrix that reads the same input at once: q, k and v;
 * gate and up — go to the threads in chunks (dynamic schedule).
 *
 * Same arithmetic as the graph path where it reads the same weights: the
 * norms, activations, RoPE and attention call the same row kernels, and a
 * weight row is one dot of the same quantized kernel with the same prepared
 * vector (kernels/quant_mv.h), so for a model sampling from converted or
 * external weights the logits are the graph's bits. (f32 weights a duet
 * model holds itself go through the f32 dot here and the SGEMM's gemv
 * there: equal to rounding.) Results do not depend on the thread count.
 *
 * What it is not: the prompt path (several tokens at once stay on the graph,
 * whose GEMMs reuse each weight across the batch), nor training.
 * DUET_TF_GRAPH_DECODE=1 in the environment turns it off (for comparisons).
 */
#include "core/internal.h"
#include "kernels/act.h"
#include "kernels/kernels.h"
#include "kernels/quant_mv.h"
#include "models/tf_model.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define DEC_SLOTS 3 /* matrices that read one input in one step (q, k, v) */

typedef struct tf_decoder {
    float *buf;
    float *x, *h, *q, *ao, *tmp, *f1, *f3, *att, *cs;
    uint8_t *qs;         /* DEC_SLOTS prepared vectors */
    int64_t qslot;       /* bytes per slot */
    duet_qmv mv[DEC_SLOTS];
} tf_decoder;

/* One matrix of a step: y[r] = W[r] . x (+ bias[r]) for r < M. */
typedef struct mv_job {
    const void *W;
    duet_qtype t;
    int64_t M, K;
    float *y;
    const float *bias;
} mv_job;

void tf_decode_free(duet_tf *m) {
    if (!m->dec) return;
    duet_free(m->dec->buf);
    duet_free(m->dec->qs);
    duet_free(m->dec);
    m->dec = NULL;
}

static tf_decoder *dec_alloc(duet_tf *m) {
    const duet_tf_params *p = &m->p;
    const int64_t C = p->dim, Q = p->heads * m->HS, NH = p->heads;
    const int64_t H = p->layers > 0 ? m->layers[0].w1->shape[0] : 0;
    const int64_t KM = DUET_MAX(DUET_MAX(C, Q), H);
    tf_decoder *d = duet_alloc(sizeof *d);
    if (!d) return NULL;
    memset(d, 0, sizeof *d);
    /* 16-float aligned pieces */
    const int64_t sz[] = {C, C, Q, Q, C, H, H, NH * p->ctx, m->HS};
    int64_t total = 0;
    for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) total += (sz[i] + 15) & ~(int64_t)15;
    d->buf = duet_alloc((size_t)total * sizeof(float));
    /* a slot holds the vector prepared for any weight type */
    int64_t slot = 0;
    for (int t = 0; t < DUET_QTYPE_COUNT; t++)
        if (duet_qtype_supported(t)) slot = DUET_MAX(slot, duet_qmv_scratch_bytes((duet_qtype)t, KM));
    d->qslot = (slot + 127) & ~(int64_t)63;
    d->qs = duet_alloc((size_t)(DEC_SLOTS * d->qslot) + 64);
    if (!d->buf || !d->qs) {
        duet_free(d->buf);
        duet_free(d->qs);
        duet_free(d);
        return NULL;
    }
    float *f = d->buf;
    float **dst[] = {&d->x, &d->h, &d->q, &d->ao, &d->tmp, &d->f1, &d->f3, &d->att, &d->cs};
    for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) {
        *dst[i] = f;
        f += (sz[i] + 15) & ~(int64_t)15;
    }
    return d;
}

/* The matrix a sampling linear reads: a converted copy or external view,
 * else the f32 parameter itself. */
static mv_job job(const duet_tf *m, const duet_tensor *w, const duet_tensor *b, float *y) {
    const int64_t i = w - m->tensors;
    mv_job j = {m->wptr[i], (duet_qtype)m->wtype[i], w->shape[0], w->shape[1], y,
                b ? (const float *)b->data : NULL};
    if (!j.W) j.W = w->data, j.t = DUET_QTYPE_F32;
    return j;
}

static void norm_row(const duet_tf *m, float *out, const float *x, const duet_tensor *w,
                     const duet_tensor *b) {
    if (m->p.arch == DUET_TF_ARCH_GPT2)
        duet_k.layernorm_rows(out, NULL, NULL, x, w->data, b ? (const float *)b->data : NULL, 1,
                              m->p.dim, m->p.norm_eps);
    else
        duet_k.rmsnorm_rows(out, NULL, x, w->data, 1, m->p.dim, m->p.norm_eps);
}

static void add_row(float *x, const float *a, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = x[i] + a[i];
}

/* Which prepared vector each job reads: jobs of one weight type (and width)
 * share one. Every thread derives the same answer from the shared jobs. */
static void share(const mv_job *jobs, int nj, int *slot) {
    for (int j = 0; j < nj; j++) {
        slot[j] = j;
        for (int i = 0; i < j; i++)
            if (jobs[i].t == jobs[j].t && jobs[i].K == jobs[j].K) {
                slot[j] = slot[i];
                break;
            }
    }
}

/* Prepares x for the jobs' weight types; call from inside `omp single`. */
static void prepare(tf_decoder *d, const mv_job *jobs, int nj, const float *x, const int *slot) {
    for (int j = 0; j < nj; j++)
        if (slot[j] == j)
            duet_qmv_prepare(&d->mv[j], jobs[j].t, jobs[j].K, x, d->qs + j * d->qslot);
}

/* The rows of every job, in chunks handed out dynamically; ends with the
 * worksharing loop's barrier. Call from every thread of the region, after
 * prepare (and its barrier). Chunks hold 1/16 of the step's weights, 16 to
 * 128 KB, so a preempted thread holds up little; their rows are a multiple
 * of four (the multi-row kernels' groups) and do not depend on the thread
 * count, so neither do the results. */
static void run_jobs(const tf_decoder *d, const mv_job *jobs, int nj, const int *slot) {
    int64_t rows[DEC_SLOTS], nch[DEC_SLOTS], bytes = 0, total = 0;
    for (int j = 0; j < nj; j++) bytes += jobs[j].M * d->mv[slot[j]].wrb;
    const int64_t cb = DUET_MAX((int64_t)16384, DUET_MIN((int64_t)131072, bytes / 16));
    for (int j = 0; j < nj; j++) {
        rows[j] = DUET_MAX(4, (cb / d->mv[slot[j]].wrb) & ~(int64_t)3);
        nch[j] = (jobs[j].M + rows[j] - 1) / rows[j];
        total += nch[j];
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < total; c++) {
        int j = 0;
        int64_t cc = c;
        while (cc >= nch[j]) cc -= nch[j++];
        const mv_job *jb = &jobs[j];
        const duet_qmv *mv = &d->mv[slot[j]];
        const int64_t r0 = cc * rows[j], r1 = DUET_MIN(jb->M, r0 + rows[j]);
        duet_qmv_rows(mv, jb->W, r0, r1, jb->y);
        if (jb->bias)
            for (int64_t r = r0; r < r1; r++) jb->y[r] += jb->bias[r];
    }
}

/* Query head h over the S cached positions: the kernel the graph's
 * attention uses for one query row. */
static void attend(const duet_tf *m, tf_decoder *d, int64_t l, int64_t h, int64_t S) {
    const duet_tf_params *p = &m->p;
    const int64_t HS = m->HS, NH = p->heads, NKV = p->kv_heads, row = NKV * HS;
    const float scale = 1.0f / sqrtf((float)HS);
    const int64_t g = h / (NH / NKV);
    const float *kg = m->kcache + l * p->ctx * row + g * HS;
    const float *vg = m->vcache + l * p->ctx * row + g * HS;
    const float *qh = d->q + h * HS;
    float *at = d->att + h * p->ctx, *oh = d->ao + h * HS;
    duet_k.attend_row(oh, at, qh, kg, vg, row, S, HS, scale);
}

static void rope(const duet_tf *m, tf_decoder *d, float *x, int64_t nh, int64_t pos) {
    if (m->rope_freq_scale == 1.0f && !m->rope_freqs)
        duet_rope_forward(x, x, 1, 1, nh, m->HS, pos, m->p.rope_theta, m->neox);
    else
        tf_rope_scaled_rows(m, x, x, 1, 1, nh, pos, d->cs);
}

int tf_decode_one(duet_tf *m, int32_t id, float *logits, duet_status *st) {
    *st = DUET_OK;
    if (m->dec_state == 0) {
        const char *e = getenv("DUET_TF_GRAPH_DECODE");
        m->dec_state = e && *e && strcmp(e, "0") ? -1 : 1;
        if (m->dec_state == 1 && !(m->dec = dec_alloc(m))) m->dec_state = -1;
    }
    if (m->dec_state != 1) return 0;
    tf_decoder *d = m->dec;
    const duet_tf_params *p = &m->p;
    const int gpt2 = p->arch == DUET_TF_ARCH_GPT2;
    const int64_t C = p->dim, NH = p->heads, NKV = p->kv_heads, row = NKV * m->HS;
    const int64_t pos = m->pos, S = pos + 1, L = p->layers;

    /* embedding (and GPT-2's position row) */
    {
        const int64_t ti = m->tok_emb - m->tensors;
        if (m->nat_ptr[ti])
            duet_dequantize_row((duet_qtype)m->nat_type[ti],
                                (const uint8_t *)m->nat_ptr[ti] +
                                    id * duet_qtype_row_bytes(m->nat_type[ti], C),
                                d->x, C);
        else
            memcpy(d->x, (const float *)m->tok_emb->data + id * C, (size_t)C * sizeof(float));
        if (gpt2) {
            const int64_t pi = m->pos_emb - m->tensors;
            if (m->nat_ptr[pi]) {
                duet_dequantize_row((duet_qtype)m->nat_type[pi],
                                    (const uint8_t *)m->nat_ptr[pi] +
                                        pos * duet_qtype_row_bytes(m->nat_type[pi], C),
                                    d->tmp, C);
                add_row(d->x, d->tmp, C);
            } else {
                add_row(d->x, (const float *)m->pos_emb->data + pos * C, C);
            }
        }
    }

    /* threads: a model this small is done before a second thread wakes */
    int64_t wbytes = 0;
    {
        mv_job o = job(m, m->output, NULL, logits);
        wbytes = o.M * duet_qtype_row_bytes(o.t, o.K);
        if (L > 0) {
            mv_job a = job(m, m->layers[0].w1, NULL, d->f1);
            wbytes += L * a.M * duet_qtype_row_bytes(a.t, a.K) * 3;
        }
    }
    const int nt = wbytes < ((int64_t)1 << 20) ? 1 : duet_get_threads();

#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        mv_job jobs[DEC_SLOTS];
        int slot[DEC_SLOTS];
        for (int64_t l = 0; l < L; l++) {
            const tf_layer *ly = &m->layers[l];
            float *kc = m->kcache + (l * p->ctx + pos) * row;
            float *vc = m->vcache + (l * p->ctx + pos) * row;
            /* norm; q, k, v (k and v straight into the cache row) */
            jobs[0] = job(m, ly->wq, ly->bq, d->q);
            jobs[1] = job(m, ly->wk, ly->bk, kc);
            jobs[2] = job(m, ly->wv, ly->bv, vc);
            share(jobs, 3, slot);
#pragma omp single
            {
                norm_row(m, d->h, d->x, ly->attn_norm_w, ly->attn_norm_b);
                prepare(d, jobs, 3, d->h, slot);
            }
            run_jobs(d, jobs, 3, slot);
            if (!gpt2) {
#pragma omp single
                {
                    rope(m, d, d->q, NH, pos);
                    rope(m, d, kc, NKV, pos);
                }
            }
            /* attention over the cache, a head per task */
#pragma omp for schedule(static)
            for (int64_t h = 0; h < NH; h++) attend(m, d, l, h, S);
            /* output projection */
            jobs[0] = job(m, ly->wo, ly->bo, d->tmp);
            share(jobs, 1, slot);
#pragma omp single
            prepare(d, jobs, 1, d->ao, slot);
            run_jobs(d, jobs, 1, slot);
            /* residual, norm; MLP up (GPT-2) or gate and up (SwiGLU) */
            int nj = 0;
            jobs[nj++] = job(m, ly->w1, ly->b1, d->f1);
            if (!gpt2) jobs[nj++] = job(m, ly->w3, NULL, d->f3);
            share(jobs, nj, slot);
#pragma omp single
            {
                add_row(d->x, d->tmp, C);
                norm_row(m, d->h, d->x, ly->ffn_norm_w, ly->ffn_norm_b);
                prepare(d, jobs, nj, d->h, slot);
            }
            run_jobs(d, jobs, nj, slot);
            /* activation; down projection */
            const int64_t H = ly->w1->shape[0];
            jobs[0] = job(m, ly->w2, ly->b2, d->tmp);
            share(jobs, 1, slot);
#pragma omp single
            {
                if (gpt2)
                    duet_act()->gelu_tanh_fwd(d->f1, d->f1, H);
                else
                    duet_act()->swiglu_fwd(d->f1, d->f1, d->f3, H);
                prepare(d, jobs, 1, d->f1, slot);
            }
            run_jobs(d, jobs, 1, slot);
#pragma omp single
            add_row(d->x, d->tmp, C);
        }
        /* final norm, output projection */
        jobs[0] = job(m, m->output, NULL, logits);
        share(jobs, 1, slot);
#pragma omp single
        {
            norm_row(m, d->h, d->x, m->norm_w, m->norm_b);
            prepare(d, jobs, 1, d->h, slot);
        }
        run_jobs(d, jobs, 1, slot);
    }
    return 1;
}
