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
 * Here the threads stay in one region. Each product's rows — of every
 * matrix that reads the same input at once: q, k and v; gate and up — go
 * to the threads in chunks (dynamic schedule); the short vector work
 * between products (residual adds, norms, the activation, quantizing the
 * next input) every thread does for itself on its own copy of the residual
 * stream, so a block has five barriers: after q/k/v, attention (a kv group
 * per task: RoPE of its key, then its query heads), wo, gate/up and down.
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
#include "kernels/quant_x16.h"
#include "models/tf_model.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define DEC_SLOTS 3 /* matrices that read one input in one step (q, k, v) */

/* What each thread keeps for itself: the residual stream, the normed or
 * activated input of the next product, that input prepared for the weight
 * types (DEC_SLOTS vectors), RoPE's cos/sin for this position. */
typedef struct dec_thread {
    float *x, *h, *f, *cs, *rope_u;
    uint8_t *qs;
    duet_qmv mv[DEC_SLOTS];
} dec_thread;

typedef struct tf_decoder {
    float *buf;                      /* shared: q, ao, tmp, f1, f3, att, knew, vnew */
    float *q, *ao, *tmp, *f1, *f3, *att;
    float *knew, *vnew;              /* f16 cache: this token's k and v before rounding */
    int nthreads;                    /* dec_thread entries */
    dec_thread *th;
    float *tbuf;                     /* per-thread floats, back to back */
    uint8_t *tqs;                    /* per-thread prepared vectors */
    int64_t qslot;                   /* bytes per slot */
} tf_decoder;

/* One matrix of a step: y[r] = W[r] . x (+ bias[r]) for r < M. */
typedef struct mv_job {
    const void *W;
    duet_qtype t;
    int x16;            /* W in the 16-row layout (kernels/quant_x16.h) */
    int64_t M, K;
    float *y;
    const float *bias;
} mv_job;

static void dec_free_threads(tf_decoder *d) {
    duet_free(d->th);
    duet_free(d->tbuf);
    duet_free(d->tqs);
    d->th = NULL;
    d->tbuf = NULL;
    d->tqs = NULL;
    d->nthreads = 0;
}

void tf_decode_free(duet_tf *m) {
    if (!m->dec) return;
    dec_free_threads(m->dec);
    duet_free(m->dec->buf);
    duet_free(m->dec);
    m->dec = NULL;
}

static int64_t pad16(int64_t n) { return (n + 15) & ~(int64_t)15; }

static int64_t hidden_of(const duet_tf *m) {
    return m->p.layers > 0 ? m->layers[0].w1->shape[0] : 0;
}

/* Per-thread state for nt threads (grown when more are asked for). */
static int dec_threads(duet_tf *m, tf_decoder *d, int nt) {
    if (d->nthreads >= nt) return 1;
    dec_free_threads(d);
    const int64_t C = m->p.dim, HS = m->HS, H = hidden_of(m);
    const int64_t per = pad16(C) + pad16(C) + pad16(H) + pad16(HS) + pad16(HS);
    d->th = duet_alloc(sizeof(dec_thread) * (size_t)nt);
    d->tbuf = duet_alloc(sizeof(float) * (size_t)(per * nt));
    d->tqs = duet_alloc((size_t)(DEC_SLOTS * d->qslot * nt) + 64);
    if (!d->th || !d->tbuf || !d->tqs) {
        dec_free_threads(d);
        return 0;
    }
    uint8_t *q = (uint8_t *)(((uintptr_t)d->tqs + 63) & ~(uintptr_t)63);
    for (int t = 0; t < nt; t++) {
        dec_thread *th = &d->th[t];
        memset(th, 0, sizeof *th);
        float *f = d->tbuf + per * t;
        th->x = f, f += pad16(C);
        th->h = f, f += pad16(C);
        th->f = f, f += pad16(H);
        th->cs = f, f += pad16(HS);
        th->rope_u = f;
        th->qs = q + DEC_SLOTS * d->qslot * t;
    }
    d->nthreads = nt;
    return 1;
}

static tf_decoder *dec_alloc(duet_tf *m) {
    const duet_tf_params *p = &m->p;
    const int64_t C = p->dim, Q = p->heads * m->HS, NH = p->heads, H = hidden_of(m);
    const int64_t KM = DUET_MAX(DUET_MAX(C, Q), H);
    tf_decoder *d = duet_alloc(sizeof *d);
    if (!d) return NULL;
    memset(d, 0, sizeof *d);
    const int64_t KV = p->kv_heads * m->HS;
    const int64_t sz[] = {Q, Q, C, H, H, NH * p->ctx, KV, KV};
    int64_t total = 0;
    for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) total += pad16(sz[i]);
    d->buf = duet_alloc((size_t)total * sizeof(float));
    /* a slot holds the vector prepared for any weight type */
    int64_t slot = 0;
    for (int t = 0; t < DUET_QTYPE_COUNT; t++)
        if (duet_qtype_supported(t)) slot = DUET_MAX(slot, duet_qmv_scratch_bytes((duet_qtype)t, KM));
    if (m->rep) { /* or for the repacked types' kernels (widths rounded up to their blocks) */
        slot = DUET_MAX(slot, duet_qmv_scratch_bytes_x16(DUET_QTYPE_Q4_0, (KM + 31) & ~(int64_t)31));
        slot = DUET_MAX(slot, duet_qmv_scratch_bytes_x16(DUET_QTYPE_Q4_K, (KM + 255) & ~(int64_t)255));
        slot = DUET_MAX(slot, duet_qmv_scratch_bytes_x16(DUET_QTYPE_Q6_K, (KM + 255) & ~(int64_t)255));
    }
    d->qslot = (slot + 127) & ~(int64_t)63;
    if (!d->buf) {
        duet_free(d);
        return NULL;
    }
    float *f = d->buf;
    float **dst[] = {&d->q, &d->ao, &d->tmp, &d->f1, &d->f3, &d->att, &d->knew, &d->vnew};
    for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) {
        *dst[i] = f;
        f += pad16(sz[i]);
    }
    return d;
}

/* The matrix a sampling linear reads: a converted copy or external view,
 * else the f32 parameter itself. */
static mv_job job(const duet_tf *m, const duet_tensor *w, const duet_tensor *b, float *y) {
    const int64_t i = w - m->tensors;
    mv_job j = {m->wptr[i], (duet_qtype)m->wtype[i], 0, w->shape[0], w->shape[1], y,
                b ? (const float *)b->data : NULL};
    if (!j.W) j.W = w->data, j.t = DUET_QTYPE_F32;
    else if (m->rep && m->rep[i] && j.W == m->nat_ptr[i]) j.W = m->rep[i], j.x16 = 1;
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
 * share one. */
static void share(const mv_job *jobs, int nj, int *slot) {
    for (int j = 0; j < nj; j++) {
        slot[j] = j;
        for (int i = 0; i < j; i++)
            if (jobs[i].t == jobs[j].t && jobs[i].K == jobs[j].K && jobs[i].x16 == jobs[j].x16) {
                slot[j] = slot[i];
                break;
            }
    }
}

/* This thread's copy of x prepared for the jobs' weight types. */
static void prepare(const tf_decoder *d, dec_thread *th, const mv_job *jobs, int nj,
                    const float *x, const int *slot) {
    for (int j = 0; j < nj; j++)
        if (slot[j] == j && jobs[j].x16)
            duet_qmv_prepare_x16(&th->mv[j], jobs[j].t, jobs[j].K, x, th->qs + j * d->qslot);
        else if (slot[j] == j)
            duet_qmv_prepare(&th->mv[j], jobs[j].t, jobs[j].K, x, th->qs + j * d->qslot);
}

/* The rows of every job, in chunks handed out dynamically; ends with the
 * worksharing loop's barrier. Every thread calls it with its own prepared
 * vectors (the same values). Chunks hold 1/8 of the step's weights, 16 KB
 * to 1 MB, so a preempted thread holds up little; their rows are a multiple
 * of four (the multi-row kernels' groups) and do not depend on the thread
 * count, so neither do the results. Each chunk is a new stream for the
 * prefetchers: two threads reading 32 / 128 / 512 KB / 2 MB chunks got
 * 29 / 38 / 41 / 44 GB/s here, and 1/8 up to 1 MB instead of 1/16 up to
 * 128 KB took decode up 2-17% (110M Q4_0 477 -> 507, F16 164 -> 192 tok/s;
 * 1.1B Q4_0 53.9 -> 59.2; alternating binaries, medians of 3). */
static void run_jobs(const dec_thread *th, const mv_job *jobs, int nj, const int *slot) {
    int64_t rows[DEC_SLOTS], nch[DEC_SLOTS], bytes = 0, total = 0;
    for (int j = 0; j < nj; j++) bytes += jobs[j].M * th->mv[slot[j]].wrb;
    const int64_t cb = DUET_MAX((int64_t)16384, DUET_MIN((int64_t)1048576, bytes / 8));
    for (int j = 0; j < nj; j++) {
        const int64_t grp = jobs[j].x16 ? 16 : 4; /* the kernels' row groups */
        rows[j] = DUET_MAX(grp, (cb / th->mv[slot[j]].wrb) & ~(grp - 1));
        nch[j] = (jobs[j].M + rows[j] - 1) / rows[j];
        total += nch[j];
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < total; c++) {
        int j = 0;
        int64_t cc = c;
        while (cc >= nch[j]) cc -= nch[j++];
        const mv_job *jb = &jobs[j];
        const duet_qmv *mv = &th->mv[slot[j]];
        const int64_t r0 = cc * rows[j], r1 = DUET_MIN(jb->M, r0 + rows[j]);
        duet_qmv_rows(mv, jb->W, r0, r1, jb->y);
        if (jb->bias)
            for (int64_t r = r0; r < r1; r++) jb->y[r] += jb->bias[r];
    }
}

/* cos / sin of RoPE's pairs at pos, exactly as the graph's RoPE forms them:
 * the rotation applied to a vector of (1, 0) pairs. */
static void rope_table(const duet_tf *m, dec_thread *th, int64_t pos) {
    const int64_t HS = m->HS, P = HS / 2, e0 = m->neox ? 1 : 2, off = m->neox ? P : 1;
    float *u = th->rope_u;
    for (int64_t i = 0; i < HS; i++) u[i] = 0.0f;
    for (int64_t i = 0; i < P; i++) u[i * e0] = 1.0f;
    if (m->rope_freq_scale == 1.0f && !m->rope_freqs)
        duet_rope_forward(u, u, 1, 1, 1, HS, pos, m->p.rope_theta, m->neox);
    else
        tf_rope_scaled_rows(m, u, u, 1, 1, 1, pos, th->cs);
    for (int64_t i = 0; i < P; i++) {
        th->cs[2 * i] = u[i * e0];
        th->cs[2 * i + 1] = u[i * e0 + off];
    }
}

/* One head's rotation with the table (the graph's float operations). */
static void rope_head(const duet_tf *m, const dec_thread *th, float *x) {
    const int64_t P = m->HS / 2, e0 = m->neox ? 1 : 2, off = m->neox ? P : 1;
    const float *cs = th->cs;
    for (int64_t i = 0; i < P; i++) {
        const int64_t a = i * e0;
        const float x0 = x[a], x1 = x[a + off], c = cs[2 * i], s = cs[2 * i + 1];
        x[a] = x0 * c - x1 * s;
        x[a + off] = x0 * s + x1 * c;
    }
}

/* KV group g at layer l: RoPE of its new key (llama) — with an f16 cache,
 * then this token's key and value rounded into the cache — and each of its
 * query heads (RoPE, attention over the S cached positions). */
static void attend_group(const duet_tf *m, tf_decoder *d, const dec_thread *th, int64_t l,
                         int64_t g, int64_t pos, int rope) {
    const duet_tf_params *p = &m->p;
    const int64_t HS = m->HS, NH = p->heads, NKV = p->kv_heads, row = NKV * HS, S = pos + 1;
    const int64_t per = NH / NKV, base = l * p->ctx * row + g * HS;
    const float scale = 1.0f / sqrtf((float)HS);
    if (m->cache_type == DUET_QTYPE_F16) {
        if (rope) rope_head(m, th, d->knew + g * HS);
        duet_f32_to_f16(m->kc16 + base + pos * row, d->knew + g * HS, HS);
        duet_f32_to_f16(m->vc16 + base + pos * row, d->vnew + g * HS, HS);
    } else if (rope) {
        rope_head(m, th, m->kcache + base + pos * row);
    }
    for (int64_t h = g * per; h < (g + 1) * per; h++) {
        float *qh = d->q + h * HS;
        if (rope) rope_head(m, th, qh);
        if (m->cache_type == DUET_QTYPE_F16)
            duet_k.attend_row_f16(d->ao + h * HS, d->att + h * p->ctx, qh, m->kc16 + base,
                                  m->vc16 + base, row, S, HS, scale);
        else
            duet_k.attend_row(d->ao + h * HS, d->att + h * p->ctx, qh, m->kcache + base,
                              m->vcache + base, row, S, HS, scale);
    }
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
    const int64_t C = p->dim, NKV = p->kv_heads, row = NKV * m->HS;
    const int64_t pos = m->pos, L = p->layers, H = hidden_of(m);

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
    if (!dec_threads(m, d, nt)) return 0; /* no memory: the graph path */

#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        dec_thread *th = &d->th[omp_get_thread_num()];
        mv_job jobs[DEC_SLOTS];
        int slot[DEC_SLOTS];
        /* embedding (and GPT-2's position row), RoPE's table: every thread */
        {
            const int64_t ti = m->tok_emb - m->tensors;
            if (m->nat_ptr[ti])
                tf_table_row(m, ti, id, th->x);
            else
                memcpy(th->x, (const float *)m->tok_emb->data + id * C, (size_t)C * sizeof(float));
            if (gpt2) {
                const int64_t pi = m->pos_emb - m->tensors;
                if (m->nat_ptr[pi]) {
                    tf_table_row(m, pi, pos, th->h);
                    add_row(th->x, th->h, C);
                } else {
                    add_row(th->x, (const float *)m->pos_emb->data + pos * C, C);
                }
            } else {
                rope_table(m, th, pos);
            }
        }
        for (int64_t l = 0; l < L; l++) {
            const tf_layer *ly = &m->layers[l];
            const int f16 = m->cache_type == DUET_QTYPE_F16;
            float *kc = f16 ? d->knew : m->kcache + (l * p->ctx + pos) * row;
            float *vc = f16 ? d->vnew : m->vcache + (l * p->ctx + pos) * row;
            /* norm; q, k, v (k and v straight into an f32 cache row) */
            jobs[0] = job(m, ly->wq, ly->bq, d->q);
            jobs[1] = job(m, ly->wk, ly->bk, kc);
            jobs[2] = job(m, ly->wv, ly->bv, vc);
            share(jobs, 3, slot);
            norm_row(m, th->h, th->x, ly->attn_norm_w, ly->attn_norm_b);
            prepare(d, th, jobs, 3, th->h, slot);
            run_jobs(th, jobs, 3, slot);
            /* attention, a kv group per task */
#pragma omp for schedule(static)
            for (int64_t g = 0; g < NKV; g++) attend_group(m, d, th, l, g, pos, !gpt2);
            /* output projection */
            jobs[0] = job(m, ly->wo, ly->bo, d->tmp);
            share(jobs, 1, slot);
            prepare(d, th, jobs, 1, d->ao, slot);
            run_jobs(th, jobs, 1, slot);
            /* residual, norm; MLP up (GPT-2) or gate and up (SwiGLU) */
            int nj = 0;
            jobs[nj++] = job(m, ly->w1, ly->b1, d->f1);
            if (!gpt2) jobs[nj++] = job(m, ly->w3, NULL, d->f3);
            share(jobs, nj, slot);
            add_row(th->x, d->tmp, C);
            norm_row(m, th->h, th->x, ly->ffn_norm_w, ly->ffn_norm_b);
            prepare(d, th, jobs, nj, th->h, slot);
            run_jobs(th, jobs, nj, slot);
            /* activation; down projection; residual */
            jobs[0] = job(m, ly->w2, ly->b2, d->tmp);
            share(jobs, 1, slot);
            if (gpt2)
                duet_act()->gelu_tanh_fwd(th->f, d->f1, H);
            else
                duet_act()->swiglu_fwd(th->f, d->f1, d->f3, H);
            prepare(d, th, jobs, 1, th->f, slot);
            run_jobs(th, jobs, 1, slot);
            add_row(th->x, d->tmp, C);
        }
        /* final norm, output projection */
        jobs[0] = job(m, m->output, NULL, logits);
        share(jobs, 1, slot);
        norm_row(m, th->h, th->x, m->norm_w, m->norm_b);
        prepare(d, th, jobs, 1, th->h, slot);
        run_jobs(th, jobs, 1, slot);
    }
    return 1;
}
