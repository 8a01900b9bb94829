/*
 * duet.c — the command-line entry: dispatches `duet <subcommand>`.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} command;

static const command commands[] = {
    {"demo", cmd_demo, "a story and a picture from the built-in models, side by side"},
    {"version", cmd_version, "version, compiler, CPU features, kernels, threads"},
    {"tokenizer", cmd_tokenizer, "train a byte-level BPE; encode and decode text"},
    {"train", cmd_train, "train a model: duet train text (a storyteller) or image (a painter)"},
    {"text", cmd_text, "tell a story: sample text from a language model (duet, GGUF, llama2.c, HF)"},
    {"chat", cmd_chat, "chat with an instruction-tuned model (its chat template, stdin lines)"},
    {"bench", cmd_bench, "prompt and generation tokens/s of a model, and memory bandwidth"},
    {"convert", cmd_convert, "write a duet storyteller as GGUF (llama.cpp and duet read it)"},
    {"quantize", cmd_quantize, "rewrite a GGUF model's matrices in another type (q8_0, q4_0, q4_k, ...)"},
    {"data", cmd_data, "build training texts (kjv, fortunes); preview image datasets"},
    {"image", cmd_image, "paint: sample pictures of a class from a painter model"},
    {"eval", cmd_eval, "judge a model: duet eval image (a painter's accuracy and Frechet distance)"},
};
#define NCOMMANDS ((int)(sizeof commands / sizeof *commands))

static void usage(FILE *f) {
    fprintf(f,
            "duet %s — storytellers and painters: language models and diffusion models in C\n\n"
            "usage: duet <command> [options]   (duet <command> --help for its options)\n\n"
            "commands:\n",
            DUET_VERSION);
    for (int i = 0; i < NCOMMANDS; i++) fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].help);
    fprintf(f,
            "\nenvironment:\n"
            "  DUET_THREADS     threads (default: all cores); --threads N overrides\n"
            "  DUET_ISA         force a kernel set: scalar, avx2, avx512\n"
            "\nexit codes: 0 ok, 1 failure, 2 bad command line, 3 file I/O, 4 malformed file\n");
}

int main(int argc, char **argv) {
    duet_prefer_short_spin(argv); /* see duet.h */
    duet_init();
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) cmd = "version";
    for (int i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, cmd) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "duet: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return EXIT_USAGE;
}
