/*
 * cli.h — shared helpers for the duet command-line tool: argument parsing,
 * progress bars, exit codes. One file per subcommand (src/cli/cmd_*.c).
 */
#ifndef DUET_CLI_H
#define DUET_CLI_H

#include "duet.h"

#include <stdint.h>

/* Exit codes (documented in `duet --help`). */
enum {
    EXIT_OK_ = 0,
    EXIT_FAIL = 1,     /* the work failed (bad data, out of memory, ...) */
    EXIT_USAGE = 2,    /* bad command line */
    EXIT_IO = 3,       /* a file could not be read or written */
    EXIT_FORMAT = 4,   /* a file is malformed or of the wrong kind */
    EXIT_INTERRUPTED = 130,
};

/* Maps a library status to an exit code. */
int cli_exit_code(duet_status s);
/* Prints "duet <cmd>: error: <msg>" to stderr (printf-style). */
void cli_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---- option parsing: "--name value", "--name=value", "-n value", flags ---- */
typedef enum { OPT_FLAG, OPT_STR, OPT_INT, OPT_FLOAT, OPT_I64 } cli_opt_kind;
typedef struct cli_opt {
    const char *name;   /* long name without dashes, e.g. "steps" */
    char short_name;    /* or 0 */
    cli_opt_kind kind;
    void *dest;         /* int* for FLAG/INT, const char** for STR, float*, int64_t* */
    const char *help;
    int seen;           /* set by the parser */
} cli_opt;

/* Parses argv[1..] (argv[0] is the subcommand). Positional arguments are
 * collected into pos (up to max_pos). Returns 0, or prints a clear error and
 * returns EXIT_USAGE for unknown flags, missing values or bad numbers.
 * "--help"/"-h" prints usage and returns -1. "--threads N" is always known. */
int cli_parse(const char *cmd, const char *usage, int argc, char **argv, cli_opt *opts,
              int nopts, const char **pos, int max_pos, int *npos);
void cli_print_usage(const char *cmd, const char *usage, const cli_opt *opts, int nopts);

/* ---- progress bar with ETA on stderr (only redraws on a TTY, else prints a
 * line every ~10%, so logs stay readable) ---- */
typedef struct cli_progress {
    const char *label;
    int64_t total;
    double t0, last_draw;
    int tty;
    int last_decile;
} cli_progress;
void cli_progress_start(cli_progress *p, const char *label, int64_t total);
/* `extra` is appended after the bar (e.g. "loss 2.31 | 1840 tok/s"). */
void cli_progress_update(cli_progress *p, int64_t done, const char *extra);
void cli_progress_end(cli_progress *p);
double cli_now(void); /* monotonic seconds */

/* Finds a built-in model file (e.g. "painter.safetensors"): only in
 * $DUET_MODELS/ when that is set, else ./models/, then <folder of the duet
 * binary>/../models/. Returns buf, or
 * NULL when none exists (buf then holds "models/<file>" for messages). */
const char *cli_default_model(const char *file, char *buf, size_t size);

/* Subcommands: int cmd_<name>(int argc, char **argv) with argv[0] = name. */
int cmd_version(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_text(int argc, char **argv);         /* cmd_text.c */
int cmd_train(int argc, char **argv);        /* cmd_train_text.c: dispatches `train <kind>` */
int cmd_train_text(int argc, char **argv);   /* cmd_train_text.c */
int cmd_data(int argc, char **argv);
int cmd_train_image(int argc, char **argv);  /* cmd_train_image.c: `train image` */
int cmd_image(int argc, char **argv);        /* cmd_image.c */
int cmd_eval(int argc, char **argv);         /* cmd_eval.c: `eval image` */
int cmd_chat(int argc, char **argv);         /* cmd_chat.c */
int cmd_bench(int argc, char **argv);        /* cmd_bench.c */
int cmd_convert(int argc, char **argv);      /* cmd_convert.c: duet checkpoint -> GGUF */
int cmd_quantize(int argc, char **argv);     /* cmd_convert.c: GGUF -> GGUF */

/* Opens a language model for sampling (cmd_text.c): anything duet_model_open
 * reads, with a tokenizer when need_tokenizer (llama2.c: `tokenizer`, else
 * the tokenizer.bin beside it), context ctx (0 = the model's) and sampling
 * precision ("auto": f16 for duet's own f32 checkpoints, the stored types
 * otherwise; or f32, f16, bf16, q8_0); load: CLI_NO_MMAP (read the weights
 * into memory instead of mapping them, duet_model_params.no_mmap) and
 * CLI_NO_REPACK (keep quantized matrices in the file's layout,
 * duet_model_params.no_repack). Returns 0 with *out set, or prints the
 * error and returns an exit code. */
#define CLI_NO_MMAP 1
#define CLI_NO_REPACK 2
int cli_open_model(const char *cmd, const char *path, const char *tokenizer, int64_t ctx,
                   const char *precision, int need_tokenizer, int load, duet_model **out);
/* --cache-type NAME ("f32" or "f16") on an opened model: 0, or prints the
 * error and returns EXIT_USAGE. */
int cli_set_cache_type(const char *cmd, duet_model *m, const char *name);

/* Painter data (cmd_train_image.c): spec is "fashion-mnist" (the Debian
 * folder), "fashion-mnist:DIR", a folder holding Fashion-MNIST's IDX files,
 * or a folder of images (one sub-folder per class). size 0 keeps the data's
 * own (Fashion-MNIST 28, folders 32); channels 0 the default (folders 3).
 * Returns 0, or prints the error and returns the exit code. */
int cli_load_images(const char *cmd, const char *spec, duet_split split, int64_t size, int channels,
                    duet_dataset *d);

/* A tokenizer as its tokenizer.json text (duet_free it) and back; a model
 * file embeds that text in "duet.tokenizer" (cmd_train_text.c). NULL on
 * failure (duet_last_error). */
char *cli_tokenizer_to_json(const duet_tokenizer *tok);
duet_tokenizer *cli_tokenizer_from_json(const char *json);

#endif
