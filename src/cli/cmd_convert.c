/*
 * cmd_convert.c — `duet convert` (a duet storyteller checkpoint -> GGUF, for
 * llama.cpp and for duet) and `duet quantize` (GGUF -> GGUF in another
 * weight type). Both are thin: the work is duet_tf_save_gguf and
 * duet_gguf_requantize (src/models/gguf_export.c).
 *
 * What it is not: a converter from other programs' formats (llama2.c and
 * Hugging Face models run as they are: duet text --model FILE).
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* A type name as the user wrote it ("q4_k", "Q8_0", "f16"); -1 when not writable. */
static int parse_type(const char *cmd, const char *name) {
    int t = duet_qtype_from_name(name);
    if (t < 0 || !duet_qtype_supported(t) || t == DUET_QTYPE_Q8_K) {
        cli_error(cmd, "--type '%s': use f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, "
                  "q5_k or q6_k", name);
        return -1;
    }
    return t;
}

static void report(const char *path) {
    struct stat sb;
    if (stat(path, &sb) == 0)
        fprintf(stderr, "wrote %s (%.1f MB)\n", path, (double)sb.st_size / 1e6);
}

int cmd_convert(int argc, char **argv) {
    const char *cmd = "convert";
    const char *out = NULL, *type = "f16", *name = NULL;
    enum { O_OUT, O_TYPE, O_NAME, O_COUNT };
    cli_opt opts[O_COUNT] = {
        [O_OUT] = {"out", 'o', OPT_STR, &out, "GGUF file to write (required)", 0},
        [O_TYPE] = {"type", 't', OPT_STR, &type, "matrix type: f32, f16 (default), bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k", 0},
        [O_NAME] = {"name", 0, OPT_STR, &name, "general.name (default: the file's name)", 0},
    };
    const char *pos[1] = {NULL};
    int npos = 0;
    int rc = cli_parse(cmd, "MODEL.safetensors --out MODEL.gguf [options]\n\n"
                       "Writes a duet storyteller as GGUF (arch llama, qwen2 or gpt2) with its\n"
                       "tokenizer, for llama.cpp or duet. 1-D tensors stay f32.",
                       argc, argv, opts, O_COUNT, pos, 1, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if (!npos || !out) {
        cli_error(cmd, "need a model and --out FILE.gguf (duet convert MODEL.safetensors --out MODEL.gguf)");
        return EXIT_USAGE;
    }
    const int qt = parse_type(cmd, type);
    if (qt < 0) return EXIT_USAGE;
    duet_model *m = NULL;
    rc = cli_open_model(cmd, pos[0], NULL, 0, "f32", 0, CLI_NO_REPACK, &m);
    if (rc) return rc;
    if (strcmp(m->format, "duet") != 0) {
        cli_error(cmd, "%s is a %s model; convert reads duet's own checkpoints (for a GGUF use "
                  "duet quantize; llama2.c and Hugging Face models run as they are)", pos[0],
                  m->format);
        duet_model_free(m);
        return EXIT_USAGE;
    }
    const char *base = strrchr(pos[0], '/');
    duet_status s = duet_tf_save_gguf(m->tf, m->tok, out, qt, name ? name : base ? base + 1 : pos[0]);
    duet_model_free(m);
    if (s != DUET_OK) {
        cli_error(cmd, "%s", duet_last_error());
        return cli_exit_code(s);
    }
    report(out);
    return 0;
}

int cmd_quantize(int argc, char **argv) {
    const char *cmd = "quantize";
    const char *type = NULL;
    enum { O_TYPE, O_COUNT };
    cli_opt opts[O_COUNT] = {
        [O_TYPE] = {"type", 't', OPT_STR, &type, "q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q4_k_m, q5_k, q6_k, f16, bf16 or f32 (required)", 0},
    };
    const char *pos[2] = {NULL, NULL};
    int npos = 0;
    int rc = cli_parse(cmd, "IN.gguf OUT.gguf --type T\n\n"
                       "Rewrites every matrix of a GGUF file in another type (llama.cpp's rules:\n"
                       "1-D tensors and position tables keep theirs; K-quant rows that do not\n"
                       "split into 256 fall back to q8_0). Metadata is copied.\n\n"
                       "q4_k_m is llama.cpp's Q4_K_M mix: q6_k for output.weight and for attn_v\n"
                       "and ffn_down in the first and last eighth of the layers and every third\n"
                       "layer between, q5_k for a fused attn_qkv, q4_k for the other matrices.",
                       argc, argv, opts, O_COUNT, pos, 2, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if (npos != 2 || !type) {
        cli_error(cmd, "need IN.gguf OUT.gguf and --type (duet quantize in.gguf out.gguf --type q4_0)");
        return EXIT_USAGE;
    }
    const int qt = strcasecmp(type, "q4_k_m") == 0 ? DUET_QUANT_MIX_Q4_K_M : parse_type(cmd, type);
    if (qt < 0) return EXIT_USAGE;
    if (strcmp(pos[0], pos[1]) == 0) {
        cli_error(cmd, "IN and OUT are the same file; write to a new one");
        return EXIT_USAGE;
    }
    double t0 = cli_now();
    duet_status s = duet_gguf_requantize(pos[0], pos[1], qt);
    if (s != DUET_OK) {
        cli_error(cmd, "%s", duet_last_error());
        return cli_exit_code(s);
    }
    report(pos[1]);
    fprintf(stderr, "[%.1f s]\n", cli_now() - t0);
    return 0;
}
