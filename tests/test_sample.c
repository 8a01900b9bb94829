/*
 * test_sample.c — the next-token sampler: filtered distributions against a
 * float64 PyTorch reference written like Hugging Face's warpers
 * (tests/ref/gen_sample.py -> sample.bin), empirical frequencies of many draws
 * against the distribution (chi-square), greedy and its tie rule, the info
 * block, determinism by seed, parameter errors, and no allocation per draw.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* allocations through the duet hook, to prove sampling makes none */
static int g_allocs;
static void *count_alloc(void *ud, size_t size, size_t align) {
    (void)ud;
    g_allocs++;
    void *p = NULL;
    return posix_memalign(&p, align, size ? size : 1) ? NULL : p;
}
static void count_free(void *ud, void *p) {
    (void)ud;
    free(p);
}

static duet_sampler_params params_from(const double *p) {
    duet_sampler_params sp;
    duet_sampler_params_default(&sp);
    sp.temperature = (float)p[0];
    sp.top_k = (int64_t)p[1];
    sp.top_p = (float)p[2];
    sp.min_p = (float)p[3];
    sp.repeat_penalty = (float)p[4];
    sp.repeat_last_n = (int64_t)p[5];
    return sp;
}

static void test_reference(void) {
    t_fix *f = t_fix_load("sample.bin");
    if (!f) return;
    int n = (int)t_fix_scalar(f, "n_cases");
    for (int i = 0; i < n; i++) {
        char name[32];
        int64_t V, nrec, np;
        snprintf(name, sizeof name, "logits_%d", i);
        float *logits = t_fix_f32(f, name, &V);
        snprintf(name, sizeof name, "recent_%d", i);
        int32_t *recent = t_fix_i32(f, name, &nrec);
        snprintf(name, sizeof name, "params_%d", i);
        double *p = t_fix_f64(f, name, &np);
        snprintf(name, sizeof name, "probs_%d", i);
        double *want = t_fix_f64(f, name, NULL);
        if (!logits || !recent || !p || !want || np != 6) continue;
        duet_sampler_params sp = params_from(p);
        duet_sampler *s = duet_sampler_new(V, &sp);
        T_CHECK(s != NULL, "case %d: sampler_new: %s", i, duet_last_error());
        if (!s) continue;
        float *got = malloc((size_t)V * sizeof *got);
        duet_sampler_probs(s, logits, nrec ? recent : NULL, nrec, got);
        /* probabilities: exp in double, stored as float -> rtol 1e-5 */
        snprintf(name, sizeof name, "case %d distribution", i);
        t_close_d(name, got, want, V, 1e-5, 1e-7);
        int same_support = 1;
        for (int64_t k = 0; k < V; k++) same_support &= (got[k] > 0) == (want[k] > 0);
        T_CHECK(same_support, "case %d: the same ids survive the filters", i);
        /* every draw is from the support, and info agrees with probs */
        int ok = 1;
        for (int d = 0; d < 200; d++) {
            duet_sample_info info;
            int32_t id = duet_sampler_sample(s, logits, nrec ? recent : NULL, nrec, &info);
            ok &= id >= 0 && id < V && want[id] > 0;
            if (sp.temperature > 0) ok &= fabs((double)info.prob - want[id]) <= 1e-5 * want[id] + 1e-7;
            ok &= info.n_top >= 1 && info.n_top <= DUET_SAMPLE_TOP_MAX;
            for (int k = 0; k < info.n_top; k++) {
                if (sp.temperature > 0)
                    ok &= fabs((double)info.top_prob[k] - want[info.top_id[k]]) <= 1e-5 * want[info.top_id[k]] + 1e-7;
                if (k) ok &= info.top_prob[k] <= info.top_prob[k - 1];
            }
        }
        T_CHECK(ok, "case %d: draws stay in the support; info's probabilities are the distribution's", i);
        free(got);
        duet_sampler_free(s);
    }
    t_fix_free(f);
}

/* Pearson chi-square of counts against probabilities (cells with p > 0). */
static double chi_square(const int64_t *count, const double *p, int V, int64_t N, int *dof) {
    double x2 = 0;
    *dof = -1;
    for (int i = 0; i < V; i++) {
        if (p[i] <= 0) continue;
        double e = p[i] * (double)N;
        x2 += ((double)count[i] - e) * ((double)count[i] - e) / e;
        (*dof)++;
    }
    return x2;
}

static void test_frequencies(void) {
    enum { V = 8 };
    const float logits[V] = {1.0f, 0.5f, -0.3f, 2.0f, 0.0f, -1.0f, 1.7f, 0.2f};
    double p[V], z = 0;
    for (int i = 0; i < V; i++) z += exp((double)logits[i]);
    for (int i = 0; i < V; i++) p[i] = exp((double)logits[i]) / z;
    duet_sampler_params sp;
    duet_sampler_params_default(&sp);
    sp.seed = 42;
    duet_sampler *s = duet_sampler_new(V, &sp);
    const int64_t N = 200000;
    int64_t count[V] = {0};
    for (int64_t i = 0; i < N; i++) count[duet_sampler_sample(s, logits, NULL, 0, NULL)]++;
    int dof;
    double x2 = chi_square(count, p, V, N, &dof);
    /* chi-square with 7 dof: P(X2 > 29.9) ~ 1e-4; a sampler off by 1% on the
     * largest cell gives X2 ~ 80 at N = 200k */
    T_CHECK(x2 < 29.9, "softmax draws: chi-square %.2f (%d dof) < 29.9", x2, dof);
    duet_sampler_free(s);

    /* top_k 3 at temperature 0.5: only the 3 best, with the tempered softmax */
    sp.top_k = 3;
    sp.temperature = 0.5f;
    sp.seed = 7;
    s = duet_sampler_new(V, &sp);
    memset(count, 0, sizeof count);
    double q[V] = {0};
    const int best[3] = {3, 6, 0};
    z = 0;
    for (int k = 0; k < 3; k++) z += exp((double)(logits[best[k]] / 0.5f));
    for (int k = 0; k < 3; k++) q[best[k]] = exp((double)(logits[best[k]] / 0.5f)) / z;
    for (int64_t i = 0; i < N; i++) count[duet_sampler_sample(s, logits, NULL, 0, NULL)]++;
    int outside = 0;
    for (int i = 0; i < V; i++) outside += q[i] == 0 && count[i] > 0;
    x2 = chi_square(count, q, V, N, &dof);
    T_CHECK(outside == 0 && x2 < 18.4, "top-k draws: none outside the top 3, chi-square %.2f "
            "(%d dof) < 18.4 (P ~ 1e-4)", x2, dof);
    duet_sampler_free(s);
}

static void test_greedy(void) {
    duet_sampler_params sp;
    duet_sampler_params_default(&sp);
    sp.temperature = 0;
    duet_sampler *s = duet_sampler_new(6, &sp);
    const float a[6] = {0.1f, 3.0f, -2.0f, 3.0f, 2.9f, 1.0f};
    T_CHECK(duet_sampler_sample(s, a, NULL, 0, NULL) == 1, "greedy: argmax, lowest id on ties");
    const float b[6] = {-5.0f, -1.0f, -3.0f, -1.5f, -4.0f, -2.0f};
    T_CHECK(duet_sampler_sample(s, b, NULL, 0, NULL) == 1, "greedy on all-negative logits");
    duet_sample_info info;
    int32_t id = duet_sampler_sample(s, a, NULL, 0, &info);
    double z = 0;
    for (int i = 0; i < 6; i++) z += exp((double)a[i]);
    T_CHECK(id == 1 && fabs((double)info.prob - exp(3.0) / z) < 1e-6 && info.n_top == 6 &&
                info.top_id[0] == 1 && info.top_id[1] == 3 && info.top_id[2] == 4,
            "greedy info: softmax probability of the argmax, candidates best first (ties by id)");
    duet_sampler_free(s);
    /* the penalty moves the argmax: 3.0 / 2 = 1.5 < 2.9 */
    sp.repeat_penalty = 2.0f;
    s = duet_sampler_new(6, &sp);
    const int32_t rec[3] = {1, 3, 1};
    T_CHECK(duet_sampler_sample(s, a, rec, 3, NULL) == 4, "greedy after the repetition penalty");
    /* negative logits are multiplied: -1 * 2 = -2 < -1.5 */
    const int32_t rec2[1] = {1};
    T_CHECK(duet_sampler_sample(s, b, rec2, 1, NULL) == 3, "penalty multiplies negative logits");
    /* only the last repeat_last_n count */
    sp.repeat_last_n = 1;
    duet_sampler_free(s);
    s = duet_sampler_new(6, &sp);
    const int32_t rec3[2] = {1, 5};
    T_CHECK(duet_sampler_sample(s, a, rec3, 2, NULL) == 1, "ids older than repeat_last_n are not penalised");
    duet_sampler_free(s);
}

static void test_determinism_and_alloc(void) {
    enum { V = 300 };
    float logits[V];
    t_fill_uniform(logits, V, 3, -3.0f, 3.0f);
    duet_sampler_params sp;
    duet_sampler_params_default(&sp);
    sp.seed = 1234;
    sp.top_p = 0.9f;
    sp.repeat_penalty = 1.1f;
    duet_sampler *s1 = duet_sampler_new(V, &sp);
    duet_sampler *s2 = duet_sampler_new(V, &sp);
    sp.seed = 1235;
    duet_sampler *s3 = duet_sampler_new(V, &sp);
    int32_t seq1[500], seq2[500], seq3[500];
    for (int i = 0; i < 500; i++) {
        seq1[i] = duet_sampler_sample(s1, logits, seq1, i, NULL);
        seq2[i] = duet_sampler_sample(s2, logits, seq2, i, NULL);
        seq3[i] = duet_sampler_sample(s3, logits, seq3, i, NULL);
    }
    T_CHECK(memcmp(seq1, seq2, sizeof seq1) == 0, "same seed, same inputs -> same choices");
    T_CHECK(memcmp(seq1, seq3, sizeof seq1) != 0, "another seed -> other choices");
    duet_sampler_reset(s2, 1234);
    int same = 1;
    for (int i = 0; i < 500; i++) same &= duet_sampler_sample(s2, logits, seq1, i, NULL) == seq1[i];
    T_CHECK(same, "reset restarts the stream");

    /* no allocation per draw: count calls through the allocation hook */
    duet_sample_info info;
    float probs[V];
    int before = g_allocs;
    for (int i = 0; i < 100; i++) {
        duet_sampler_sample(s1, logits, seq1, 500, &info);
        duet_sampler_probs(s1, logits, seq1, 500, probs);
    }
    T_CHECK(g_allocs == before, "sampling allocates nothing (%d allocations)", g_allocs - before);
    duet_sampler_free(s1);
    duet_sampler_free(s2);
    duet_sampler_free(s3);
}

static void test_params(void) {
    duet_sampler_params sp;
    duet_sampler_params_default(&sp);
    T_CHECK(sp.temperature == 1.0f && sp.top_k == 0 && sp.top_p == 1.0f && sp.min_p == 0.0f &&
                sp.repeat_penalty == 1.0f && sp.repeat_last_n == 64 && sp.seed == 0,
            "defaults: T 1, top_k off, top_p 1, min_p 0, penalty 1 over 64, seed 0");
    duet_sampler_params p = sp;
    p.temperature = -1.0f;
    T_CHECK(!duet_sampler_new(10, &p) && strstr(duet_last_error(), "temperature"), "negative temperature refused");
    p = sp;
    p.top_p = 0.0f;
    T_CHECK(!duet_sampler_new(10, &p) && strstr(duet_last_error(), "top_p"), "top_p 0 refused");
    p = sp;
    p.top_p = 1.5f;
    T_CHECK(!duet_sampler_new(10, &p) && strstr(duet_last_error(), "top_p"), "top_p > 1 refused");
    p = sp;
    p.top_k = -2;
    T_CHECK(!duet_sampler_new(10, &p) && strstr(duet_last_error(), "top_k"), "negative top_k refused");
    p = sp;
    p.min_p = 2.0f;
    T_CHECK(!duet_sampler_new(10, &p) && strstr(duet_last_error(), "min_p"), "min_p > 1 refused");
    p = sp;
    p.repeat_penalty = 0.0f;
    T_CHECK(!duet_sampler_new(10, &p) && strstr(duet_last_error(), "repeat_penalty"), "penalty 0 refused");
    T_CHECK(!duet_sampler_new(0, &sp) && strstr(duet_last_error(), "vocabulary"), "V = 0 refused");
    duet_sampler *s = duet_sampler_new(1, NULL);
    const float one[1] = {0.0f};
    T_CHECK(s && duet_sampler_sample(s, one, NULL, 0, NULL) == 0, "V = 1, default params (NULL)");
    duet_sampler_free(s);
    duet_sampler_free(NULL);
    /* masked logits: -inf never drawn; all -inf -> uniform, no NaN */
    s = duet_sampler_new(4, NULL);
    const float m[4] = {-INFINITY, 0.0f, -INFINITY, 0.0f};
    int ok = 1;
    for (int i = 0; i < 200; i++) {
        int32_t id = duet_sampler_sample(s, m, NULL, 0, NULL);
        ok &= id == 1 || id == 3;
    }
    T_CHECK(ok, "-inf logits are never drawn");
    const float all[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    float pr[4];
    duet_sampler_probs(s, all, NULL, 0, pr);
    T_CHECK(pr[0] == 0.25f && pr[3] == 0.25f, "all -inf: uniform, not NaN");
    duet_sampler_free(s);
}

int main(void) {
    duet_init();
    duet_allocator a = {count_alloc, count_free, NULL};
    duet_set_allocator(&a);
    test_reference();
    test_frequencies();
    test_greedy();
    test_determinism_and_alloc();
    test_params();
    duet_set_allocator(NULL);
    return t_done();
}
