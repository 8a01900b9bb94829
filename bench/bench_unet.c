/*
 * bench_unet.c — painter speed against PyTorch, in one run: training
 * images/s (forward, MSE, backward, grad clip, AdamW, EMA on a batch of
 * noised 32x32 RGB images) and sampling images/s (DDIM with classifier-free
 * guidance, in batches of at most 64 as `duet image` draws them), for one
 * fixed UNet: base 64, mults 1,2,2, two ResBlocks per level, attention at
 * level 2 (8x8), 4 heads, 8 groups, 10 classes, dropout 0.1. Each phase runs
 * in its own process (this program again, with --phase; a fork alone would
 * inherit a broken OpenMP pool) so its peak RSS is its own (wait4); then
 * bench/unet_torch.py runs the same phases on the same UNet (the model of
 * tests/ref/gen_unet.py) with the same threads, once with
 * OMP_WAIT_POLICY=PASSIVE OPENBLAS_CORETYPE=SkylakeX and once in the default
 * environment, and the ratios are printed.
 *
 *   build/bench/bench_unet [--batch 128] [--train-steps 5] [--sample-n 100]
 *       [--sample-steps 50] [--threads 2] [--no-torch] [--winograd-only] [--quick]
 *
 * duet runs twice: as is, then with DUET_CONV_WINOGRAD=0 (3x3 convolutions
 * on the implicit GEMM instead of Winograd F(4x4, 3x3)) for the before/after;
 * --winograd-only skips the second. The ratios to PyTorch use the first.
 *
 * --quick is a smoke run (batch 8, 2 steps, 4 samples of 2 steps). The
 * numbers are only meaningful on a quiet machine. Correctness is the job of
 * tests/test_unet.c (the same model against PyTorch, gradients included).
 */
#include "duet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int64_t arg_i(int argc, char **argv, const char *name, int64_t def) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return strtoll(argv[i + 1], NULL, 10);
    return def;
}

static int has_flag(int argc, char **argv, const char *name) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0) return 1;
    return 0;
}

static void bench_config(duet_unet_config *c) {
    duet_unet_config_default(c);
    c->in_channels = 3, c->image_size = 32, c->channels = 64;
    c->nlevels = 3, c->mults[0] = 1, c->mults[1] = 2, c->mults[2] = 2;
    c->res_blocks = 2, c->attn_levels = 1u << 2, c->heads = 4, c->groups = 8;
    c->num_classes = 10, c->dropout = 0.1f;
}

/* ==== the two phases (each in a child process) ============================ */

/* Training steps on random data; prints "images_per_s loss0". */
static int phase_train(int64_t B, int64_t steps) {
    duet_unet_config c;
    bench_config(&c);
    duet_unet *u = duet_unet_new(&c, 1), *ema = duet_unet_new(&c, 1);
    if (!u || !ema) return 1;
    const int64_t S = 32, per = 3 * S * S;
    const int np = duet_unet_nparams(u);
    duet_tensor **P = duet_unet_params(u), **PE = duet_unet_params(ema);
    duet_adamw opt;
    duet_adamw_init(&opt, P, np, 0.9f, 0.999f, 1e-8f, 0.0f);
    duet_schedule *s = malloc(sizeof *s);
    duet_schedule_init(s, c.schedule, c.T);
    float *x0 = malloc(sizeof(float) * (size_t)(B * per)), *xt = malloc(sizeof(float) * (size_t)(B * per));
    float *eps = malloc(sizeof(float) * (size_t)(B * per)), *t = malloc(sizeof(float) * (size_t)B);
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)B);
    duet_graph *g = duet_graph_new((size_t)256 << 20);
    duet_rng r;
    duet_rng_init(&r, 7);
    double t_timed = 0;
    float loss0 = NAN;
    /* steps 0 and 1 warm up: step 0 grows the graph arena, whose blocks the
     * next reset merges into one, so step 1 first-touches that block; the
     * timed steps are the steady state (unet_torch.py also warms up twice) */
    for (int64_t k = -1; k <= steps; k++) {
        const double t0 = now_s();
        duet_rng_uniform(&r, x0, B * per);
        duet_rng_normal(&r, eps, B * per, 0.0f, 1.0f);
        for (int64_t b = 0; b < B; b++) {
            int tt = (int)(duet_rng_next(&r) * (float)c.T);
            t[b] = (float)tt;
            lab[b] = (int32_t)(b % 11); /* 10 = the "no class" label */
            duet_diffusion_q_sample(xt + b * per, x0 + b * per, eps + b * per, s->abar[tt], per);
        }
        duet_graph_reset(g);
        duet_tensor *xi = duet_graph_input(g, xt, DUET_DTYPE_F32, 4, (int64_t[]){B, 3, S, S});
        duet_tensor *ti = duet_graph_input(g, t, DUET_DTYPE_F32, 1, (int64_t[]){B});
        duet_tensor *li = duet_graph_input(g, lab, DUET_DTYPE_I32, 1, (int64_t[]){B});
        duet_tensor *yi = duet_graph_input(g, eps, DUET_DTYPE_F32, 4, (int64_t[]){B, 3, S, S});
        duet_rng dr = {11, (uint64_t)(k + 1) << 40};
        duet_tensor *loss = duet_nn_mse(g, duet_unet_forward(u, g, xi, ti, li, &dr), yi);
        if (!loss) {
            fprintf(stderr, "train: %s\n", duet_last_error());
            return 1;
        }
        duet_params_zero_grad(P, np);
        if (duet_graph_backward(g, loss) != DUET_OK) return 1;
        duet_clip_grad_norm(P, np, 1.0f);
        duet_adamw_step(&opt, P, np, 2e-4f);
        for (int i = 0; i < np; i++) duet_ema_update(PE[i]->data, P[i]->data, duet_tensor_numel(P[i]), 0.999f);
        if (k == -1) loss0 = *(float *)loss->data;
        else if (k > 0) t_timed += now_s() - t0;
    }
    printf("%.4f %.4f\n", (double)(steps * B) / t_timed, (double)loss0);
    return 0;
}

/* n samples, DDIM `steps` + CFG 3, chunks of <= 64; prints "images_per_s". */
static int phase_sample(int64_t n, int steps) {
    duet_unet_config c;
    bench_config(&c);
    duet_unet *u = duet_unet_new(&c, 1);
    if (!u) return 1;
    /* non-zero output convs, so sampling does real work end to end */
    duet_tensor **P = duet_unet_params(u);
    duet_rng r;
    duet_rng_init(&r, 3);
    for (int i = 0; i < duet_unet_nparams(u); i++)
        if (strstr(P[i]->name, "conv2.weight") || strstr(P[i]->name, "out.conv.weight"))
            duet_rng_normal(&r, P[i]->data, duet_tensor_numel(P[i]), 0.0f, 0.01f);
    const int64_t per = 3 * 32 * 32;
    float *out = malloc(sizeof(float) * (size_t)(n * per));
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) lab[i] = (int32_t)(i % 10);
    duet_diffusion_params p;
    duet_diffusion_params_init(&p);
    p.sampler = DUET_SAMPLER_DDIM, p.steps = steps;
    const double t0 = now_s();
    for (int64_t i0 = 0; i0 < n; i0 += 64) {
        const int64_t k = n - i0 < 64 ? n - i0 : 64;
        p.seed = (uint64_t)(i0 / 64);
        if (duet_unet_sample(u, lab + i0, k, &p, 3.0f, out + i0 * per, NULL, NULL) != DUET_OK) {
            fprintf(stderr, "sample: %s\n", duet_last_error());
            return 1;
        }
    }
    printf("%.4f\n", (double)n / (now_s() - t0));
    return 0;
}

/* Runs `self --phase NAME --a A --b B --threads T` with its stdout into buf;
 * its peak RSS (MiB) from wait4. */
static int run_child(const char *self, const char *phase, int64_t a, int64_t b, int threads,
                     char *buf, size_t n, double *rss_mb) {
    int pfd[2];
    if (pipe(pfd)) return -1;
    char sa[32], sb[32], st[32];
    snprintf(sa, sizeof sa, "%lld", (long long)a);
    snprintf(sb, sizeof sb, "%lld", (long long)b);
    snprintf(st, sizeof st, "%d", threads);
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        dup2(pfd[1], 1);
        execl(self, self, "--phase", phase, "--a", sa, "--b", sb, "--threads", st, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    size_t len = 0;
    ssize_t got;
    while (len + 1 < n && (got = read(pfd[0], buf + len, n - 1 - len)) > 0) len += (size_t)got;
    buf[len] = 0;
    close(pfd[0]);
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
    *rss_mb = (double)ru.ru_maxrss / 1024.0;
    return 0;
}

/* The PyTorch phase: "images_per_s peak_rss_mb", or -1. */
static int run_torch(const char *env, const char *phase, int64_t a, int64_t b, int threads,
                     double *ips, double *rss) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s /usr/bin/python3 bench/unet_torch.py --phase %s --%s %lld --%s %lld --threads %d",
             env, phase, strcmp(phase, "train") == 0 ? "batch" : "n", (long long)a,
             strcmp(phase, "train") == 0 ? "steps" : "sample-steps", (long long)b, threads);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    char line[256];
    int ok = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "RESULT %lf %lf", ips, rss) == 2) ok = 1;
    return pclose(f) == 0 && ok ? 0 : -1;
}

int main(int argc, char **argv) {
    duet_prefer_short_spin(argv); /* as the duet CLI does */
    duet_init();
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--phase") == 0) { /* a child: one phase */
            duet_set_threads((int)arg_i(argc, argv, "--threads", 2));
            const int64_t a = arg_i(argc, argv, "--a", 1), b = arg_i(argc, argv, "--b", 1);
            return strcmp(argv[i + 1], "train") == 0 ? phase_train(a, b) : phase_sample(a, (int)b);
        }
    const int quick = has_flag(argc, argv, "--quick");
    const int64_t B = arg_i(argc, argv, "--batch", quick ? 8 : 128);
    const int64_t steps = arg_i(argc, argv, "--train-steps", quick ? 2 : 5);
    const int64_t n = arg_i(argc, argv, "--sample-n", quick ? 4 : 100);
    const int64_t sst = arg_i(argc, argv, "--sample-steps", quick ? 2 : 50);
    const int threads = (int)arg_i(argc, argv, "--threads", 2);
    duet_set_threads(threads);
    char feats[256];
    duet_cpu_features_string(feats, sizeof feats);
    duet_unet_config c;
    bench_config(&c);
    duet_unet *u = duet_unet_new(&c, 1);
    printf("bench_unet: duet %s, %s, kernels %s, %d threads, cpu: %s\n", DUET_VERSION, duet_compiler(),
           duet_kernel_isa(), duet_get_threads(), feats);
    printf("UNet: 3x32x32, base 64, mults 1,2,2, 2 res blocks, attention at 8x8, %.2fM params\n",
           u ? (double)duet_unet_numel(u) / 1e6 : 0.0);
    duet_unet_free(u);
    printf("train: batch %lld, %lld timed steps (+2 warm-up) | sample: %lld images, DDIM %lld + CFG 3, chunks of 64\n\n",
           (long long)B, (long long)steps, (long long)n, (long long)sst);
    fflush(stdout);

    char buf[128];
    double d_train = 0, d_sample = 0, rss_train = 0, rss_sample = 0, loss0 = 0;
    if (run_child(argv[0], "train", B, steps, threads, buf, sizeof buf, &rss_train) || sscanf(buf, "%lf %lf", &d_train, &loss0) != 2) {
        fprintf(stderr, "bench_unet: the duet training phase failed\n");
        return 1;
    }
    printf("%-34s train %9.2f images/s  peak RSS %7.0f MiB  (first loss %.3f)\n", "duet", d_train,
           rss_train, loss0);
    fflush(stdout);
    if (run_child(argv[0], "sample", n, sst, threads, buf, sizeof buf, &rss_sample) || sscanf(buf, "%lf", &d_sample) != 1) {
        fprintf(stderr, "bench_unet: the duet sampling phase failed\n");
        return 1;
    }
    printf("%-34s sample %8.2f images/s  peak RSS %7.0f MiB\n", "duet", d_sample, rss_sample);
    fflush(stdout);
    if (!has_flag(argc, argv, "--winograd-only")) {
        /* the same phases with the 3x3 convolutions on the implicit GEMM */
        double t2 = 0, r2 = 0, l2 = 0, s2 = 0, q2 = 0;
        const char *prev = getenv("DUET_CONV_WINOGRAD");
        char keep[16];
        snprintf(keep, sizeof keep, "%s", prev ? prev : "");
        setenv("DUET_CONV_WINOGRAD", "0", 1);
        if (run_child(argv[0], "train", B, steps, threads, buf, sizeof buf, &r2) == 0 &&
            sscanf(buf, "%lf %lf", &t2, &l2) == 2)
            printf("%-34s train %9.2f images/s  peak RSS %7.0f MiB  Winograd speed-up %.2fx\n",
                   "duet, DUET_CONV_WINOGRAD=0", t2, r2, d_train / t2);
        fflush(stdout);
        if (run_child(argv[0], "sample", n, sst, threads, buf, sizeof buf, &q2) == 0 &&
            sscanf(buf, "%lf", &s2) == 1)
            printf("%-34s sample %8.2f images/s  peak RSS %7.0f MiB  Winograd speed-up %.2fx\n",
                   "duet, DUET_CONV_WINOGRAD=0", s2, q2, d_sample / s2);
        fflush(stdout);
        if (prev) setenv("DUET_CONV_WINOGRAD", keep, 1);
        else unsetenv("DUET_CONV_WINOGRAD");
    }
    if (has_flag(argc, argv, "--no-torch")) return 0;

    const char *envs[2][2] = {{"OMP_WAIT_POLICY=PASSIVE OPENBLAS_CORETYPE=SkylakeX", "torch (PASSIVE, SkylakeX)"},
                              {"", "torch (default env)"}};
    for (int e = 0; e < 2; e++) {
        double ti = 0, tr = 0, si = 0, sr = 0;
        if (run_torch(envs[e][0], "train", B, steps, threads, &ti, &tr) != 0) {
            printf("%-34s (failed: is /usr/bin/python3 with torch there? run from the repository root)\n", envs[e][1]);
            continue;
        }
        printf("%-34s train %9.2f images/s  peak RSS %7.0f MiB  duet/torch %.2fx\n", envs[e][1], ti, tr,
               d_train / ti);
        fflush(stdout);
        if (run_torch(envs[e][0], "sample", n, sst, threads, &si, &sr) != 0) {
            printf("%-34s sample failed\n", envs[e][1]);
            continue;
        }
        printf("%-34s sample %8.2f images/s  peak RSS %7.0f MiB  duet/torch %.2fx\n", envs[e][1], si, sr,
               d_sample / si);
        fflush(stdout);
    }
    return 0;
}
