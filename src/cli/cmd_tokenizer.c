/*
 * cmd_tokenizer.c — `duet tokenizer train|encode|decode|info`: train a
 * byte-level BPE on a text file, and turn text into ids and back with a
 * tokenizer.json (duet's own or a Hugging Face byte-level BPE).
 */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads a whole file (malloc'd, *n bytes, NUL after them); NULL after
 * printing an error (*rc gets the exit code). */
static char *slurp(const char *cmd, const char *path, int64_t *n, int *rc) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        cli_error(cmd, "cannot open '%s': %s", path, strerror(errno));
        *rc = EXIT_IO;
        return NULL;
    }
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (len < cap - 1) break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    int bad = ferror(f);
    if (f != stdin) fclose(f);
    if (!buf) {
        cli_error(cmd, "out of memory reading '%s'", path);
        *rc = EXIT_FAIL;
        return NULL;
    }
    if (bad) {
        free(buf);
        cli_error(cmd, "read error on '%s'", path);
        *rc = EXIT_IO;
        return NULL;
    }
    buf[len] = 0;
    *n = (int64_t)len;
    return buf;
}

/* The tokenizer at path, or the byte tokenizer; NULL after printing an error. */
static duet_tokenizer *open_tokenizer(const char *cmd, const char *path, int *rc) {
    duet_tokenizer *tok = path ? duet_tokenizer_load(path) : duet_tokenizer_new_bytes();
    if (!tok) {
        cli_error(cmd, "%s", duet_last_error());
        *rc = strstr(duet_last_error(), "cannot open") ? EXIT_IO : EXIT_FORMAT;
    }
    return tok;
}

static void train_progress(void *ud, int64_t done, int64_t total) {
    cli_progress *p = ud;
    cli_progress_update(p, done, NULL);
}

static int tok_train(int argc, char **argv) {
    const char *cmd = "tokenizer train";
    const char *data = NULL, *out = NULL;
    int64_t vocab = 4096, min_freq = 2;
    cli_opt opts[] = {
        {"data", 'd', OPT_STR, &data, "training text file (required)", 0},
        {"vocab", 'v', OPT_I64, &vocab, "vocabulary size incl. 256 bytes and 2 specials (4096)", 0},
        {"min-frequency", 0, OPT_I64, &min_freq, "stop when the best pair occurs fewer times (2)", 0},
        {"out", 'o', OPT_STR, &out, "where to write tokenizer.json (required)", 0},
    };
    const char *pos[1];
    int npos;
    int rc = cli_parse(cmd, "--data FILE --vocab N --out tok.json", argc, argv, opts, 4, pos, 0, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if (!data || !out) {
        cli_error(cmd, "--data and --out are required (see duet %s --help)", cmd);
        return EXIT_USAGE;
    }
    if (vocab < 258) {
        cli_error(cmd, "--vocab %lld is too small: it needs at least 258 (256 bytes + "
                  "<|endoftext|> + <|pad|>)", (long long)vocab);
        return EXIT_USAGE;
    }
    int64_t n = 0;
    char *text = slurp(cmd, data, &n, &rc);
    if (!text) return rc;
    if (n == 0) {
        cli_error(cmd, "'%s' is empty: nothing to train on", data);
        free(text);
        return EXIT_USAGE;
    }
    fprintf(stderr, "training a byte-level BPE on %s (%.2f MB) up to vocab %lld\n", data,
            (double)n / 1e6, (long long)vocab);
    cli_progress prog;
    cli_progress_start(&prog, "merges", vocab - 258 > 0 ? vocab - 258 : 1);
    duet_tokenizer_train_params tp;
    duet_tokenizer_train_params_default(&tp);
    tp.min_frequency = min_freq;
    tp.progress = train_progress;
    tp.progress_ud = &prog;
    double t0 = cli_now();
    duet_tokenizer *tok = duet_tokenizer_train(text, n, vocab, &tp);
    double secs = cli_now() - t0;
    cli_progress_end(&prog);
    if (!tok) {
        cli_error(cmd, "%s", duet_last_error());
        free(text);
        return EXIT_FAIL;
    }
    duet_status st = duet_tokenizer_save(tok, out);
    if (st != DUET_OK) {
        cli_error(cmd, "%s", duet_last_error());
        duet_tokenizer_free(tok);
        free(text);
        return cli_exit_code(st);
    }
    double t1 = cli_now();
    int64_t ntok = duet_tokenizer_encode(tok, text, n, 0, NULL, 0);
    double enc = cli_now() - t1;
    int64_t V = duet_tokenizer_vocab_size(tok), M = duet_tokenizer_n_merges(tok);
    if (V < vocab)
        fprintf(stderr, "note: stopped at %lld merges: no pair left that occurs %lld times\n",
                (long long)M, (long long)min_freq);
    printf("vocab %lld, merges %lld, trained in %.2f s, %.3f bytes/token on %s (%lld tokens, "
           "encoded in %.2f s) -> %s\n",
           (long long)V, (long long)M, secs, ntok > 0 ? (double)n / (double)ntok : 0.0, data,
           (long long)ntok, enc, out);
    duet_tokenizer_free(tok);
    free(text);
    return 0;
}

static int tok_encode(int argc, char **argv) {
    const char *cmd = "tokenizer encode";
    const char *path = NULL, *file = NULL;
    int specials = 0, bos = 0, eos = 0;
    cli_opt opts[] = {
        {"tokenizer", 't', OPT_STR, &path, "tokenizer.json (default: the byte tokenizer)", 0},
        {"file", 'f', OPT_STR, &file, "encode this file ('-' = stdin) instead of TEXT", 0},
        {"specials", 0, OPT_FLAG, &specials, "recognise <|endoftext|> etc. in the text", 0},
        {"bos", 0, OPT_FLAG, &bos, "prepend the BOS id", 0},
        {"eos", 0, OPT_FLAG, &eos, "append the EOS id", 0},
    };
    const char *pos[1];
    int npos;
    int rc = cli_parse(cmd, "[--tokenizer tok.json] TEXT | --file FILE", argc, argv, opts, 5, pos,
                       1, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if ((npos == 0) == (file == NULL)) {
        cli_error(cmd, "give either TEXT or --file FILE (see duet %s --help)", cmd);
        return EXIT_USAGE;
    }
    duet_tokenizer *tok = open_tokenizer(cmd, path, &rc);
    if (!tok) return rc;
    int64_t n = 0;
    char *text = NULL;
    if (file) {
        text = slurp(cmd, file, &n, &rc);
        if (!text) {
            duet_tokenizer_free(tok);
            return rc;
        }
    }
    const char *src = text ? text : pos[0];
    if (!text) n = (int64_t)strlen(src);
    unsigned flags = (specials ? DUET_TOK_SPECIALS : 0u) | (bos ? DUET_TOK_ADD_BOS : 0u) |
                     (eos ? DUET_TOK_ADD_EOS : 0u);
    int64_t cap = n + 2;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    int64_t k = ids ? duet_tokenizer_encode(tok, src, n, flags, ids, cap) : -1;
    if (k < 0) {
        cli_error(cmd, "out of memory");
        rc = EXIT_FAIL;
    } else {
        for (int64_t i = 0; i < k; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
        rc = 0;
    }
    free(ids);
    free(text);
    duet_tokenizer_free(tok);
    return rc;
}

static int tok_decode(int argc, char **argv) {
    const char *cmd = "tokenizer decode";
    const char *path = NULL;
    enum { MAXPOS = 65536 };
    const char **pos = malloc(MAXPOS * sizeof *pos);
    if (!pos) return EXIT_FAIL;
    cli_opt opts[] = {
        {"tokenizer", 't', OPT_STR, &path, "tokenizer.json (default: the byte tokenizer)", 0},
    };
    int npos;
    int rc = cli_parse(cmd, "[--tokenizer tok.json] ID... (or ids on stdin)", argc, argv, opts, 1,
                       pos, MAXPOS, &npos);
    if (rc) {
        free(pos);
        return rc < 0 ? 0 : rc;
    }
    duet_tokenizer *tok = open_tokenizer(cmd, path, &rc);
    if (!tok) {
        free(pos);
        return rc;
    }
    char *stdin_text = NULL;
    if (npos == 0) { /* ids from stdin, separated by spaces/newlines */
        int64_t n = 0;
        stdin_text = slurp(cmd, "-", &n, &rc);
        if (!stdin_text) {
            free(pos);
            duet_tokenizer_free(tok);
            return rc;
        }
        for (char *s = strtok(stdin_text, " \t\r\n,"); s && npos < MAXPOS; s = strtok(NULL, " \t\r\n,"))
            pos[npos++] = s;
    }
    rc = 0;
    for (int i = 0; i < npos; i++) {
        char *end;
        errno = 0;
        long v = strtol(pos[i], &end, 10);
        if (!*pos[i] || *end || errno || v < 0 || v >= duet_tokenizer_vocab_size(tok)) {
            fflush(stdout);
            cli_error(cmd, "'%s' is not an id in [0, %lld)", pos[i],
                      (long long)duet_tokenizer_vocab_size(tok));
            rc = EXIT_USAGE;
            break;
        }
        int64_t len = 0;
        const char *bytes = duet_tokenizer_id_to_token(tok, (int32_t)v, &len);
        fwrite(bytes, 1, (size_t)len, stdout);
    }
    fflush(stdout);
    free(stdin_text);
    free(pos);
    duet_tokenizer_free(tok);
    return rc;
}

static int tok_info(int argc, char **argv) {
    const char *cmd = "tokenizer info";
    const char *path = NULL;
    cli_opt opts[] = {
        {"tokenizer", 't', OPT_STR, &path, "tokenizer.json (default: the byte tokenizer)", 0},
    };
    const char *pos[1];
    int npos;
    int rc = cli_parse(cmd, "[--tokenizer tok.json]", argc, argv, opts, 1, pos, 0, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    duet_tokenizer *tok = open_tokenizer(cmd, path, &rc);
    if (!tok) return rc;
    printf("vocab %lld, merges %lld, bos/eos %d, pad %d\n",
           (long long)duet_tokenizer_vocab_size(tok), (long long)duet_tokenizer_n_merges(tok),
           duet_tokenizer_bos(tok), duet_tokenizer_pad(tok));
    duet_tokenizer_free(tok);
    return 0;
}

int cmd_tokenizer(int argc, char **argv) {
    static const char *usage =
        "usage: duet tokenizer <train|encode|decode|info> [options]\n\n"
        "  train   --data FILE --vocab 4096 --out tok.json   train a byte-level BPE\n"
        "  encode  --tokenizer tok.json \"text\"                print the ids of a text\n"
        "  decode  --tokenizer tok.json 15496 11 995         print the text of ids\n"
        "  info    --tokenizer tok.json                      vocabulary size and specials\n"
        "\nWithout --tokenizer, encode/decode use the pure byte tokenizer.\n";
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "train") == 0) return tok_train(argc - 1, argv + 1);
    if (strcmp(sub, "encode") == 0) return tok_encode(argc - 1, argv + 1);
    if (strcmp(sub, "decode") == 0) return tok_decode(argc - 1, argv + 1);
    if (strcmp(sub, "info") == 0) return tok_info(argc - 1, argv + 1);
    cli_error("tokenizer", "unknown subcommand '%s' (train, encode, decode, info)", sub);
    return EXIT_USAGE;
}
