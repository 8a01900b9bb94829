/*
 * sample.c — the next-token sampler: repetition penalty, temperature,
 * top-k, top-p, min-p, then one draw from a counter-based stream.
 *
 * What it is: the step from one row of logits [V] to one id, with the
 * distribution it used available for tests and --show-probs. What it is not:
 * beam search, grammar constraints, or batched sampling. All buffers are
 * sized by V in duet_sampler_new; sampling allocates nothing.
 *
 * Ties are broken toward the lower id everywhere (greedy, top-k, the order
 * candidates are walked in), so results do not depend on sort stability.
 */
#include "core/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand {
    float v;     /* tempered logit, then (unnormalised) probability */
    int32_t id;
} cand;

struct duet_sampler {
    int64_t V;
    duet_sampler_params p;
    uint64_t seed, offset;  /* the random stream: draw i uses philox(seed, i) */
    float *x;               /* [V] penalised logits */
    cand *c;                /* [V] candidates */
    uint8_t *seen;          /* [V] penalty bookkeeping, all 0 between calls */
};

void duet_sampler_params_default(duet_sampler_params *p) {
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_k = 0;
    p->top_p = 1.0f;
    p->min_p = 0.0f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->seed = 0;
}

duet_sampler *duet_sampler_new(int64_t V, const duet_sampler_params *params) {
    duet_sampler_params dp;
    if (!params) {
        duet_sampler_params_default(&dp);
        params = &dp;
    }
    const duet_sampler_params *p = params;
    if (V < 1 || V > INT32_MAX) {
        duet_set_error(DUET_ERR_ARG, "sampler: vocabulary size %lld must be in [1, 2^31)", (long long)V);
        return NULL;
    }
    if (!(p->temperature >= 0.0f) || !isfinite(p->temperature)) {
        duet_set_error(DUET_ERR_ARG, "sampler: temperature %g must be >= 0 (0 = greedy)",
                       (double)p->temperature);
        return NULL;
    }
    if (p->top_k < 0) {
        duet_set_error(DUET_ERR_ARG, "sampler: top_k %lld must be >= 0 (0 = off)", (long long)p->top_k);
        return NULL;
    }
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f)) {
        duet_set_error(DUET_ERR_ARG, "sampler: top_p %g must be in (0, 1] (1 = off)", (double)p->top_p);
        return NULL;
    }
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f)) {
        duet_set_error(DUET_ERR_ARG, "sampler: min_p %g must be in [0, 1] (0 = off)", (double)p->min_p);
        return NULL;
    }
    if (!(p->repeat_penalty > 0.0f) || !isfinite(p->repeat_penalty)) {
        duet_set_error(DUET_ERR_ARG, "sampler: repeat_penalty %g must be > 0 (1 = off)",
                       (double)p->repeat_penalty);
        return NULL;
    }
    if (p->repeat_last_n < -1) {
        duet_set_error(DUET_ERR_ARG, "sampler: repeat_last_n %lld must be >= -1 (-1 = all, 0 = off)",
                       (long long)p->repeat_last_n);
        return NULL;
    }
    duet_sampler *s = duet_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->V = V;
    s->p = *p;
    s->seed = p->seed;
    s->x = duet_alloc((size_t)V * sizeof *s->x);
    s->c = duet_alloc((size_t)V * sizeof *s->c);
    s->seen = duet_calloc((size_t)V, 1);
    if (!s->x || !s->c || !s->seen) {
        duet_sampler_free(s);
        return NULL;
    }
    return s;
}

void duet_sampler_free(duet_sampler *s) {
    if (!s) return;
    duet_free(s->x);
    duet_free(s->c);
    duet_free(s->seen);
    duet_free(s);
}

void duet_sampler_reset(duet_sampler *s, uint64_t seed) {
    s->seed = seed;
    s->offset = 0;
}

/* a before b: larger value first, then the lower id */
static int cand_before(const cand *a, const cand *b) {
    return a->v > b->v || (a->v == b->v && a->id < b->id);
}

static int cand_cmp(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (cand_before(a, b)) return -1;
    if (cand_before(b, a)) return 1;
    return 0;
}

/* Min-heap on "before" (the root is the worst kept candidate). */
static void sift_down_worst(cand *h, int64_t n, int64_t i) {
    cand v = h[i];
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && cand_before(&h[c], &h[c + 1])) c++; /* the worse child */
        if (!cand_before(&v, &h[c])) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
}

/* Keeps the k best of c[0..n) in c[0..k), sorted best first. O(n log k). */
static void select_top_k(cand *c, int64_t n, int64_t k) {
    for (int64_t i = k / 2 - 1; i >= 0; i--) sift_down_worst(c, k, i);
    for (int64_t i = k; i < n; i++) {
        if (cand_before(&c[i], &c[0])) {
            c[0] = c[i];
            sift_down_worst(c, k, 0);
        }
    }
    /* heap sort: repeatedly move the worst to the end */
    for (int64_t m = k - 1; m > 0; m--) {
        cand t = c[0];
        c[0] = c[m];
        c[m] = t;
        sift_down_worst(c, m, 0);
    }
}

/* Penalised logits into s->x. */
static void penalise(duet_sampler *s, const float *logits, const int32_t *recent, int64_t n_recent) {
    memcpy(s->x, logits, (size_t)s->V * sizeof *s->x);
    float pen = s->p.repeat_penalty;
    if (pen == 1.0f || s->p.repeat_last_n == 0 || n_recent <= 0 || !recent) return;
    int64_t from = s->p.repeat_last_n < 0 ? 0 : DUET_MAX(0, n_recent - s->p.repeat_last_n);
    for (int64_t i = from; i < n_recent; i++) {
        int32_t id = recent[i];
        if (id < 0 || id >= s->V || s->seen[id]) continue;
        s->seen[id] = 1;
        s->x[id] = s->x[id] > 0.0f ? s->x[id] / pen : s->x[id] * pen;
    }
    for (int64_t i = from; i < n_recent; i++)
        if (recent[i] >= 0 && recent[i] < s->V) s->seen[recent[i]] = 0;
}

static int32_t argmax(const float *x, int64_t V) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; i++)
        if (x[i] > x[best] || (isnan(x[best]) && !isnan(x[i]))) best = i;
    return (int32_t)best;
}

/* Softmax of c[0..n).v in place (unnormalised exp); returns the sum. */
static double softmax_unnorm(cand *c, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = c[i].v > m ? c[i].v : m;
    double sum = 0;
    if (m == -INFINITY) { /* every candidate masked: uniform */
        for (int64_t i = 0; i < n; i++) c[i].v = 1.0f;
        return (double)n;
    }
    for (int64_t i = 0; i < n; i++) {
        float e = (float)exp((double)(c[i].v - m));
        c[i].v = e;
        sum += (double)e;
    }
    return sum;
}

/* Builds the filtered candidates c[0..*n) (v = unnormalised probability)
 * and returns their total. *sorted says whether c is best-first. For
 * greedy, the candidates are the full softmax at temperature 1. */
static double build(duet_sampler *s, const float *logits, const int32_t *recent, int64_t n_recent,
                    int64_t *n, int *sorted) {
    int64_t V = s->V;
    penalise(s, logits, recent, n_recent);
    float T = s->p.temperature;
    for (int64_t i = 0; i < V; i++) {
        s->c[i].v = T > 0.0f ? s->x[i] / T : s->x[i];
        s->c[i].id = (int32_t)i;
    }
    int64_t k = V;
    *sorted = 0;
    if (T > 0.0f && s->p.top_k > 0 && s->p.top_k < V) {
        k = s->p.top_k;
        select_top_k(s->c, V, k);
        *sorted = 1;
    }
    double total = softmax_unnorm(s->c, k);
    if (T > 0.0f && s->p.top_p < 1.0f) {
        if (!*sorted) qsort(s->c, (size_t)k, sizeof *s->c, cand_cmp);
        *sorted = 1;
        double cum = 0, target = (double)s->p.top_p * total;
        int64_t keep = k;
        for (int64_t i = 0; i < k; i++) {
            cum += (double)s->c[i].v;
            if (cum >= target) {
                keep = i + 1;
                break;
            }
        }
        k = keep;
        total = cum;
    }
    if (T > 0.0f && s->p.min_p > 0.0f) {
        float pmax = 0;
        for (int64_t i = 0; i < k; i++) pmax = s->c[i].v > pmax ? s->c[i].v : pmax;
        float thr = s->p.min_p * pmax;
        int64_t o = 0;
        total = 0;
        for (int64_t i = 0; i < k; i++) {
            if (s->c[i].v >= thr) {
                s->c[o++] = s->c[i];
                total += (double)s->c[i].v;
            }
        }
        k = o;
    }
    *n = k;
    return total;
}

/* The best `want` candidates of c[0..n) into info (probabilities / total). */
static void fill_top(duet_sample_info *info, const cand *c, int64_t n, int sorted, double total) {
    int want = (int)DUET_MIN((int64_t)DUET_SAMPLE_TOP_MAX, n);
    cand top[DUET_SAMPLE_TOP_MAX];
    int m = 0;
    if (sorted) {
        for (; m < want; m++) top[m] = c[m];
    } else {
        for (int64_t i = 0; i < n; i++) { /* insertion into a short sorted list */
            if (m == want && !cand_before(&c[i], &top[m - 1])) continue;
            int j = m < want ? m++ : m - 1;
            while (j > 0 && cand_before(&c[i], &top[j - 1])) {
                top[j] = top[j - 1];
                j--;
            }
            top[j] = c[i];
        }
    }
    info->n_top = m;
    for (int i = 0; i < m; i++) {
        info->top_id[i] = top[i].id;
        info->top_prob[i] = (float)((double)top[i].v / total);
    }
}

int32_t duet_sampler_sample(duet_sampler *s, const float *logits, const int32_t *recent,
                            int64_t n_recent, duet_sample_info *info) {
    if (s->p.temperature == 0.0f) {
        penalise(s, logits, recent, n_recent);
        int32_t best = argmax(s->x, s->V);
        if (info) {
            int64_t n;
            int sorted;
            double total = build(s, logits, recent, n_recent, &n, &sorted);
            float pb = 0;
            for (int64_t i = 0; i < n; i++)
                if (s->c[i].id == best) pb = s->c[i].v;
            info->prob = (float)((double)pb / total);
            fill_top(info, s->c, n, sorted, total);
        }
        return best;
    }
    int64_t n;
    int sorted;
    double total = build(s, logits, recent, n_recent, &n, &sorted);
    /* one uniform in [0, 1) with 53 bits from the counter-based stream */
    uint32_t w[4];
    duet_philox(s->seed, s->offset++, w);
    double u = (double)(((uint64_t)w[0] << 21) ^ (uint64_t)(w[1] >> 11)) * (1.0 / 9007199254740992.0);
    double target = u * total, cum = 0;
    int64_t pick = n - 1;
    for (int64_t i = 0; i < n; i++) {
        cum += (double)s->c[i].v;
        if (cum > target) {
            pick = i;
            break;
        }
    }
    /* skip zero-probability candidates at the end (rounding) */
    while (pick > 0 && s->c[pick].v == 0.0f) pick--;
    int32_t id = s->c[pick].id;
    if (info) {
        info->prob = (float)((double)s->c[pick].v / total);
        fill_top(info, s->c, n, sorted, total);
    }
    return id;
}

void duet_sampler_probs(duet_sampler *s, const float *logits, const int32_t *recent,
                        int64_t n_recent, float *probs) {
    memset(probs, 0, (size_t)s->V * sizeof *probs);
    if (s->p.temperature == 0.0f) {
        penalise(s, logits, recent, n_recent);
        probs[argmax(s->x, s->V)] = 1.0f;
        return;
    }
    int64_t n;
    int sorted;
    double total = build(s, logits, recent, n_recent, &n, &sorted);
    for (int64_t i = 0; i < n; i++) probs[s->c[i].id] = (float)((double)s->c[i].v / total);
}
