/*
 * cli.c — argument parsing, errors, exit codes and progress bars shared by
 * the subcommands.
 */
#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cli_exit_code(duet_status s) {
    switch (s) {
    case DUET_OK: return 0;
    case DUET_ERR_ARG: return EXIT_USAGE;
    case DUET_ERR_IO: return EXIT_IO;
    case DUET_ERR_FORMAT: return EXIT_FORMAT;
    default: return EXIT_FAIL;
    }
}

void cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "duet %s: error: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void cli_print_usage(const char *cmd, const char *usage, const cli_opt *opts, int nopts) {
    fprintf(stdout, "usage: duet %s %s\n\noptions:\n", cmd, usage);
    for (int i = 0; i < nopts; i++) {
        const cli_opt *o = &opts[i];
        char lhs[64];
        const char *arg = o->kind == OPT_FLAG ? "" : o->kind == OPT_STR ? " S" : " N";
        if (o->short_name)
            snprintf(lhs, sizeof lhs, "-%c, --%s%s", o->short_name, o->name, arg);
        else
            snprintf(lhs, sizeof lhs, "    --%s%s", o->name, arg);
        fprintf(stdout, "  %-26s %s\n", lhs, o->help ? o->help : "");
    }
    fprintf(stdout, "  %-26s %s\n", "    --threads N", "threads (default: DUET_THREADS or all cores)");
}

static int parse_value(const char *cmd, cli_opt *o, const char *v) {
    char *end;
    errno = 0;
    switch (o->kind) {
    case OPT_STR: *(const char **)o->dest = v; return 0;
    case OPT_INT: {
        long x = strtol(v, &end, 10);
        if (!*v || *end || errno || x < -2147483647L || x > 2147483647L) break;
        *(int *)o->dest = (int)x;
        return 0;
    }
    case OPT_I64: {
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || errno) break;
        *(int64_t *)o->dest = x;
        return 0;
    }
    case OPT_FLOAT: {
        float x = strtof(v, &end);
        if (!*v || *end || errno || !isfinite(x)) break;
        *(float *)o->dest = x;
        return 0;
    }
    default: return 0;
    }
    cli_error(cmd, "--%s wants a %s, got '%s'", o->name,
              o->kind == OPT_FLOAT ? "number" : "whole number", v);
    return EXIT_USAGE;
}

int cli_parse(const char *cmd, const char *usage, int argc, char **argv, cli_opt *opts,
              int nopts, const char **pos, int max_pos, int *npos) {
    *npos = 0;
    int threads = 0;
    cli_opt thr = {"threads", 0, OPT_INT, &threads, NULL, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            cli_print_usage(cmd, usage, opts, nopts);
            return -1;
        }
        if (a[0] != '-' || strcmp(a, "-") == 0 || (a[1] >= '0' && a[1] <= '9')) {
            if (*npos >= max_pos) {
                cli_error(cmd, "unexpected argument '%s' (see duet %s --help)", a, cmd);
                return EXIT_USAGE;
            }
            pos[(*npos)++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            for (i++; i < argc; i++) {
                if (*npos >= max_pos) {
                    cli_error(cmd, "unexpected argument '%s'", argv[i]);
                    return EXIT_USAGE;
                }
                pos[(*npos)++] = argv[i];
            }
            break;
        }
        cli_opt *o = NULL;
        const char *val = NULL;
        if (a[1] == '-') {
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            if (eq) val = eq + 1;
            for (int j = 0; j < nopts && !o; j++)
                if (strlen(opts[j].name) == len && strncmp(opts[j].name, name, len) == 0)
                    o = &opts[j];
            if (!o && len == 7 && strncmp(name, "threads", 7) == 0) o = &thr;
        } else if (a[2] == 0) {
            for (int j = 0; j < nopts && !o; j++)
                if (opts[j].short_name == a[1]) o = &opts[j];
        }
        if (!o) {
            cli_error(cmd, "unknown option '%s' (see duet %s --help)", a, cmd);
            return EXIT_USAGE;
        }
        o->seen = 1;
        if (o->kind == OPT_FLAG) {
            if (val) {
                cli_error(cmd, "--%s takes no value", o->name);
                return EXIT_USAGE;
            }
            *(int *)o->dest = 1;
            continue;
        }
        if (!val) {
            if (i + 1 >= argc) {
                cli_error(cmd, "--%s needs a value", o->name);
                return EXIT_USAGE;
            }
            val = argv[++i];
        }
        int rc = parse_value(cmd, o, val);
        if (rc) return rc;
    }
    if (thr.seen) {
        if (threads < 1 || threads > 1024) {
            cli_error(cmd, "--threads wants 1..1024, got %d", threads);
            return EXIT_USAGE;
        }
        duet_set_threads(threads);
    }
    return 0;
}

/* ---- progress ---- */

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fmt_time(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, n, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else snprintf(buf, n, "%02ld:%02ld", t / 60, t % 60);
}

void cli_progress_start(cli_progress *p, const char *label, int64_t total) {
    p->label = label;
    p->total = total > 0 ? total : 1;
    p->t0 = cli_now();
    p->last_draw = 0;
    p->tty = isatty(2);
    p->last_decile = -1;
}

void cli_progress_update(cli_progress *p, int64_t done, const char *extra) {
    double now = cli_now();
    double frac = (double)done / (double)p->total;
    if (frac > 1) frac = 1;
    double el = now - p->t0;
    double eta = frac > 0 ? el / frac - el : -1;
    char a[32], b[32];
    fmt_time(a, sizeof a, el);
    fmt_time(b, sizeof b, eta);
    if (p->tty) {
        if (now - p->last_draw < 0.1 && done < p->total) return;
        p->last_draw = now;
        char bar[31];
        int fill = (int)(frac * 30);
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r%s [%s] %3d%% %lld/%lld %s<%s %s\x1b[K", p->label, bar,
                (int)(frac * 100), (long long)done, (long long)p->total, a, b, extra ? extra : "");
    } else {
        int dec = (int)(frac * 10);
        if (dec == p->last_decile) return;
        p->last_decile = dec;
        fprintf(stderr, "%s %3d%% %lld/%lld elapsed %s eta %s %s\n", p->label, (int)(frac * 100),
                (long long)done, (long long)p->total, a, b, extra ? extra : "");
    }
    fflush(stderr);
}

void cli_progress_end(cli_progress *p) {
    if (p->tty) fputc('\n', stderr);
}

/* ---- built-in models ---- */

const char *cli_default_model(const char *file, char *buf, size_t size) {
    const char *env = getenv("DUET_MODELS");
    if (env && *env) { /* the user said where the built-in models are: only there */
        snprintf(buf, size, "%s/%s", env, file);
        return access(buf, R_OK) == 0 ? buf : NULL;
    }
    snprintf(buf, size, "models/%s", file);
    if (access(buf, R_OK) == 0) return buf;
    char exe[1024];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(buf, size, "%s/../models/%s", exe, file);
            if (access(buf, R_OK) == 0) return buf;
        }
    }
    snprintf(buf, size, "models/%s", file);
    return NULL;
}
