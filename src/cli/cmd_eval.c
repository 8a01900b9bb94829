/*
 * cmd_eval.c — `duet eval image`: how good is a painter? A judge (the small
 * CNN of src/models/classifier.c, trained by duet on the painter's data set)
 * looks at N generated pictures per class and reports
 *   (a) conditional accuracy: the share of samples it labels as the class
 *       they were asked for (per class too);
 *   (b) the Frechet distance between Gaussian fits of its features on the
 *       samples and on the test set, beside the same distance for an equally
 *       large random subset of the training set (the floor: what real images
 *       score), and their ratio.
 * The judge is trained when --train-classifier is given or its file is
 * missing (a couple of minutes on Fashion-MNIST), then saved for next time.
 *
 * What it is not: FID. The features are the judge's, not Inception's, so the
 * numbers compare duet painters with each other and with the floor only.
 */
#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_MODEL "painter.safetensors"
#define DEFAULT_JUDGE "fmnist-classifier.safetensors"
#define CHUNK 64

/* mkdir -p of the folder above path; 0 on success. */
static int make_parents(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        int bad = mkdir(buf, 0777) != 0 && errno != EEXIST;
        *p = '/';
        if (bad) return -1;
    }
    return 0;
}

/* The whole data set as f32 [n, C, S, S] in [-1, 1] (malloc'd), or NULL. */
static float *dataset_f32(const duet_dataset *d) {
    const int64_t per = d->c * d->h * d->w;
    float *x = malloc(sizeof(float) * (size_t)(d->n * per));
    if (x) duet_u8_to_unit(x, d->pixels, d->n * per);
    return x;
}

static void judge_progress(void *ud, int64_t step, int64_t total, float loss) {
    cli_progress *p = ud;
    char extra[48];
    snprintf(extra, sizeof extra, "loss %.4f", (double)loss);
    cli_progress_update(p, step, extra);
    (void)total;
}

/* Frechet distance between the features feat [n, F] and (mu, cov) of the reference. */
static duet_status distance_to(const float *feat, int64_t n, int64_t F, const double *mu,
                               const double *cov, double *out) {
    double *m = malloc(sizeof(double) * (size_t)F), *c = malloc(sizeof(double) * (size_t)(F * F));
    duet_status s = !m || !c ? duet_set_error(DUET_ERR_NOMEM, "out of memory") : DUET_OK;
    if (!s) s = duet_feature_stats(feat, n, F, m, c);
    if (!s) s = duet_frechet_distance(m, c, mu, cov, F, out);
    free(m);
    free(c);
    return s;
}

static int eval_image(int argc, char **argv) {
    const char *cmd = "eval image";
    const char *model_path = NULL, *judge_path = NULL, *data = "fashion-mnist", *sampler_name = "ddim";
    int64_t n_per_class = 100, seed = 0, judge_steps = 1500;
    int steps = 50, train_judge = 0;
    float cfg = 3.0f;
    enum { O_MODEL, O_N, O_JUDGE, O_TRAIN, O_JUDGE_STEPS, O_DATA, O_SAMPLER, O_STEPS, O_CFG,
           O_SEED, O_COUNT };
    cli_opt opts[O_COUNT] = {
        [O_MODEL] = {"model", 'm', OPT_STR, &model_path, "painter to judge (models/painter.safetensors)", 0},
        [O_N] = {"n-per-class", 'n', OPT_I64, &n_per_class, "samples per class (100)", 0},
        [O_JUDGE] = {"classifier", 0, OPT_STR, &judge_path, "the judge (models/fmnist-classifier.safetensors)", 0},
        [O_TRAIN] = {"train-classifier", 0, OPT_FLAG, &train_judge, "train the judge anew (also when its file is missing)", 0},
        [O_JUDGE_STEPS] = {"classifier-steps", 0, OPT_I64, &judge_steps, "training steps of the judge, batch 128 (1500)", 0},
        [O_DATA] = {"data", 'd', OPT_STR, &data, "the painter's data: fashion-mnist, fashion-mnist:DIR or a folder", 0},
        [O_SAMPLER] = {"sampler", 0, OPT_STR, &sampler_name, "sampler (ddim)", 0},
        [O_STEPS] = {"steps", 's', OPT_INT, &steps, "sampling steps (50)", 0},
        [O_CFG] = {"cfg", 0, OPT_FLOAT, &cfg, "guidance scale (3)", 0},
        [O_SEED] = {"seed", 0, OPT_I64, &seed, "noise seed (0)", 0},
    };
    const char *pos[1];
    int npos;
    int rc = cli_parse(cmd, "--model PAINTER [--n-per-class N] [--classifier FILE] [options]\n\n"
                       "Judges a painter: conditional accuracy and a Frechet distance of the judge's\n"
                       "features (samples vs the test set, beside a train subset vs the test set).",
                       argc, argv, opts, O_COUNT, pos, 0, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    int sk = duet_diffusion_sampler_from_name(sampler_name);
    if (sk < 0) {
        cli_error(cmd, "--sampler '%s': use ddim, ddpm, euler, euler-a or dpmpp-2m", sampler_name);
        return EXIT_USAGE;
    }
    if (n_per_class < 1 || n_per_class > 100000 || judge_steps < 1 || seed < 0 ||
        !(cfg >= 0.0f && cfg <= 100.0f)) {
        cli_error(cmd, "--n-per-class and --classifier-steps must be >= 1, --seed >= 0, --cfg in [0, 100]");
        return EXIT_USAGE;
    }

    /* ---- the painter ---- */
    char defbuf[4096], judgebuf[4096];
    if (!model_path) {
        model_path = cli_default_model(DEFAULT_MODEL, defbuf, sizeof defbuf);
        if (!model_path) {
            cli_error(cmd, "no --model given and the built-in painter (%s) is missing.\n"
                      "  Train one:  duet train image --data fashion-mnist --out %s", defbuf, defbuf);
            return EXIT_IO;
        }
    }
    if (access(model_path, R_OK) != 0) {
        cli_error(cmd, "cannot read model '%s': %s", model_path, strerror(errno));
        return EXIT_IO;
    }
    duet_unet *u = duet_unet_load(model_path);
    if (!u) {
        cli_error(cmd, "%s", duet_last_error());
        return EXIT_FORMAT;
    }
    const duet_unet_config *uc = duet_unet_get_config(u);
    int exit_code = EXIT_FAIL;
    duet_dataset train, test;
    memset(&train, 0, sizeof train);
    memset(&test, 0, sizeof test);
    duet_classifier *judge = NULL;
    float *xtest = NULL, *ftest = NULL, *gen = NULL, *genj = NULL, *fgen = NULL, *xsub = NULL, *fsub = NULL;
    int32_t *want = NULL, *got = NULL, *ltest = NULL;
    double *mu = NULL, *cov = NULL;
    duet_status s;
    if (uc->num_classes < 2) {
        cli_error(cmd, "%s has %d classes: conditional accuracy needs a class-conditional painter",
                  model_path, uc->num_classes);
        exit_code = EXIT_USAGE;
        goto done;
    }
    if (steps < 1 || steps > uc->T) {
        cli_error(cmd, "--steps %d: must be in 1..%d", steps, uc->T);
        exit_code = EXIT_USAGE;
        goto done;
    }

    /* ---- data (native size; the judge's size) ---- */
    rc = cli_load_images(cmd, data, DUET_SPLIT_TRAIN, 0, uc->in_channels, &train);
    if (!rc) rc = cli_load_images(cmd, data, DUET_SPLIT_TEST, 0, uc->in_channels, &test);
    if (rc) {
        exit_code = rc;
        goto done;
    }
    if (!train.labels || !test.labels || train.nclasses != uc->num_classes || test.h != train.h ||
        test.c != train.c) {
        cli_error(cmd, "%s: the data (%d classes) does not fit %s (%d classes); pass the painter's --data",
                  data, train.nclasses, model_path, uc->num_classes);
        exit_code = EXIT_USAGE;
        goto done;
    }

    /* ---- the judge: load, or train and save ---- */
    if (!judge_path) {
        judge_path = cli_default_model(DEFAULT_JUDGE, judgebuf, sizeof judgebuf);
        if (!judge_path) judge_path = judgebuf; /* "models/fmnist-classifier.safetensors" */
    }
    if (!train_judge && access(judge_path, R_OK) == 0) {
        judge = duet_classifier_load(judge_path);
        if (!judge) {
            cli_error(cmd, "%s (retrain it with --train-classifier)", duet_last_error());
            exit_code = EXIT_FORMAT;
            goto done;
        }
        const duet_classifier_config *jc = duet_classifier_get_config(judge);
        if (jc->in_channels != train.c || jc->image_size != train.h || jc->num_classes != train.nclasses) {
            cli_error(cmd, "%s judges %dx%dx%d images of %d classes, the data is %lldx%lldx%lld with %d "
                      "classes; retrain it with --train-classifier (or pass --classifier)",
                      judge_path, jc->in_channels, jc->image_size, jc->image_size, jc->num_classes,
                      (long long)train.c, (long long)train.h, (long long)train.w, train.nclasses);
            exit_code = EXIT_USAGE;
            goto done;
        }
    } else {
        duet_classifier_config jc;
        duet_classifier_config_default(&jc);
        jc.in_channels = (int)train.c, jc.image_size = (int)train.h, jc.num_classes = train.nclasses;
        judge = duet_classifier_new(&jc, (uint64_t)seed);
        if (!judge) {
            cli_error(cmd, "judge: %s", duet_last_error());
            exit_code = EXIT_USAGE;
            goto done;
        }
        duet_classifier_train_params tp;
        duet_classifier_train_params_default(&tp);
        tp.steps = judge_steps, tp.seed = (uint64_t)seed;
        cli_progress bar;
        cli_progress_start(&bar, "judge", judge_steps);
        tp.progress = judge_progress, tp.progress_ud = &bar;
        fprintf(stderr, "duet %s: training the judge on %lld images (%lld steps of %lld)\n", cmd,
                (long long)train.n, (long long)judge_steps, (long long)tp.batch);
        const double t0 = cli_now();
        s = duet_classifier_train(judge, &train, &tp);
        cli_progress_end(&bar);
        if (s) {
            cli_error(cmd, "judge: %s", duet_last_error());
            exit_code = cli_exit_code(s);
            goto done;
        }
        if (make_parents(judge_path) ||
            (s = duet_classifier_save(judge, judge_path, (const char *const *)train.class_names)) != DUET_OK) {
            cli_error(cmd, "cannot save the judge to %s: %s", judge_path,
                      s ? duet_last_error() : strerror(errno));
            exit_code = EXIT_IO;
            goto done;
        }
        fprintf(stderr, "duet %s: judge trained in %.1f s, saved to %s\n", cmd, cli_now() - t0, judge_path);
    }
    const duet_classifier_config *jc = duet_classifier_get_config(judge);
    const int64_t F = jc->features, K = uc->num_classes, JS = jc->image_size, C = jc->in_channels;
    const int64_t jper = C * JS * JS;

    /* ---- the test set: the judge's accuracy and the reference statistics ---- */
    xtest = dataset_f32(&test);
    ftest = malloc(sizeof(float) * (size_t)(test.n * F));
    ltest = malloc(sizeof(int32_t) * (size_t)test.n);
    mu = malloc(sizeof(double) * (size_t)F);
    cov = malloc(sizeof(double) * (size_t)(F * F));
    if (!xtest || !ftest || !ltest || !mu || !cov) {
        cli_error(cmd, "out of memory for the test set");
        goto done;
    }
    s = duet_classifier_predict(judge, xtest, test.n, ltest, ftest);
    if (!s) s = duet_feature_stats(ftest, test.n, F, mu, cov);
    if (s) {
        cli_error(cmd, "%s", duet_last_error());
        goto done;
    }
    int64_t right = 0;
    for (int64_t i = 0; i < test.n; i++) right += ltest[i] == test.labels[i];
    const double judge_acc = (double)right / (double)test.n;

    /* ---- the samples ---- */
    const int64_t N = n_per_class * K, S = uc->image_size, per = (int64_t)uc->in_channels * S * S;
    gen = malloc(sizeof(float) * (size_t)(N * per));
    genj = S == JS ? gen : malloc(sizeof(float) * (size_t)(N * jper));
    fgen = malloc(sizeof(float) * (size_t)(N * F));
    want = malloc(sizeof(int32_t) * (size_t)N);
    got = malloc(sizeof(int32_t) * (size_t)N);
    if (!gen || !genj || !fgen || !want || !got) {
        cli_error(cmd, "out of memory for %lld samples", (long long)N);
        goto done;
    }
    for (int64_t i = 0; i < N; i++) want[i] = (int32_t)(i / n_per_class);
    duet_diffusion_params p;
    duet_diffusion_params_init(&p);
    p.sampler = (duet_diffusion_sampler)sk;
    p.steps = steps;
    cli_progress bar;
    cli_progress_start(&bar, "samples", N);
    const double t0 = cli_now();
    for (int64_t i0 = 0; i0 < N; i0 += CHUNK) {
        const int64_t k = N - i0 < CHUNK ? N - i0 : CHUNK;
        p.seed = (uint64_t)seed + (uint64_t)(i0 / CHUNK);
        s = duet_unet_sample(u, want + i0, k, &p, cfg, gen + i0 * per, NULL, NULL);
        if (s) {
            cli_progress_end(&bar);
            cli_error(cmd, "%s", duet_last_error());
            goto done;
        }
        cli_progress_update(&bar, i0 + k, NULL);
    }
    cli_progress_end(&bar);
    const double gen_s = cli_now() - t0;
    for (int64_t i = 0; genj != gen && i < N; i++) { /* the painter's size -> the judge's */
        s = duet_image_resize(genj + i * jper, JS, JS, gen + i * per, C, S, S);
        if (s) {
            cli_error(cmd, "%s", duet_last_error());
            goto done;
        }
    }
    s = duet_classifier_predict(judge, genj, N, got, fgen);
    double fd_gen = 0, fd_floor = 0;
    if (!s) s = distance_to(fgen, N, F, mu, cov, &fd_gen);

    /* ---- the floor: N random training images (without replacement) ---- */
    const int64_t nsub = N < train.n ? N : train.n;
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)train.n);
    xsub = malloc(sizeof(float) * (size_t)(nsub * jper));
    fsub = malloc(sizeof(float) * (size_t)(nsub * F));
    if (!s && (!ids || !xsub || !fsub)) s = duet_set_error(DUET_ERR_NOMEM, "out of memory for the train subset");
    if (!s) {
        for (int64_t i = 0; i < train.n; i++) ids[i] = i;
        for (int64_t i = 0; i < nsub; i++) { /* the first nsub steps of a Fisher-Yates shuffle */
            uint32_t w[4];
            duet_philox((uint64_t)seed ^ 0x666c6f6f72737562ull, (uint64_t)i, w);
            const int64_t j = i + (int64_t)(((uint64_t)w[0] * (uint64_t)(train.n - i)) >> 32);
            const int64_t t = ids[i];
            ids[i] = ids[j], ids[j] = t;
        }
        s = duet_dataset_batch_f32(&train, ids, nsub, xsub, NULL);
    }
    free(ids);
    if (!s) s = duet_classifier_predict(judge, xsub, nsub, NULL, fsub);
    if (!s) s = distance_to(fsub, nsub, F, mu, cov, &fd_floor);
    if (s) {
        cli_error(cmd, "%s", duet_last_error());
        goto done;
    }

    /* ---- the report ---- */
    int64_t hits = 0;
    for (int64_t i = 0; i < N; i++) hits += got[i] == want[i];
    printf("painter        %s (%lld classes, %lldx%lldx%lld)\n", model_path, (long long)K,
           (long long)uc->in_channels, (long long)S, (long long)S);
    printf("judge          %s: %.1f%% right on the %lld test images\n", judge_path, 100.0 * judge_acc,
           (long long)test.n);
    printf("samples        %lld (%lld per class; %s %d steps, cfg %g, seed %lld) in %.1f s, %.2f images/s\n",
           (long long)N, (long long)n_per_class, duet_diffusion_sampler_name(p.sampler), steps,
           (double)cfg, (long long)seed, gen_s, gen_s > 0 ? (double)N / gen_s : 0.0);
    printf("conditional accuracy  %.1f%%  (samples the judge labels as the class asked for)\n",
           100.0 * (double)hits / (double)N);
    printf("  per class:");
    for (int64_t k = 0; k < K; k++) {
        int64_t h = 0;
        for (int64_t i = k * n_per_class; i < (k + 1) * n_per_class; i++) h += got[i] == want[i];
        printf("%s %s %.0f%%", k ? "," : "", train.class_names ? train.class_names[k] : "?",
               100.0 * (double)h / (double)n_per_class);
    }
    printf("\n");
    printf("frechet distance      samples vs test %.4f | train subset (%lld) vs test %.4f (the floor) "
           "| ratio %.2f\n", fd_gen, (long long)nsub, fd_floor, fd_floor > 0 ? fd_gen / fd_floor : (double)INFINITY);
    exit_code = 0;

done:
    free(xtest), free(ftest), free(ltest), free(mu), free(cov);
    if (genj != gen) free(genj);
    free(gen), free(fgen), free(want), free(got), free(xsub), free(fsub);
    duet_classifier_free(judge);
    duet_dataset_free(&train);
    duet_dataset_free(&test);
    duet_unet_free(u);
    return exit_code;
}

int cmd_eval(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        FILE *f = argc < 2 ? stderr : stdout;
        fprintf(f, "usage: duet eval <kind> [options]   (duet eval <kind> --help)\n\nkinds:\n"
                   "  image    judge a painter: conditional accuracy and a Frechet distance\n");
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "image") == 0) return eval_image(argc - 1, argv + 1);
    cli_error("eval", "unknown kind '%s' (try: duet eval image)", argv[1]);
    return EXIT_USAGE;
}
