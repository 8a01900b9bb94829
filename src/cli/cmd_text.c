/*
 * cmd_text.c — `duet text`: tells a story. Loads a language model — a duet
 * storyteller checkpoint (the tokenizer travels inside it), a GGUF file, a
 * llama2.c checkpoint (with its tokenizer.bin) or a Hugging Face folder, all
 * through duet_model_open — feeds the prompt in one batch, then samples one
 * token at a time with the KV cache and streams each token's bytes to
 * stdout as soon as it is drawn.
 *
 *  - temperature 0 is greedy; the same --seed gives the same text;
 *  - --stop STR ends the story before STR (text that might be the start of
 *    STR is held back until it is clear it is not);
 *  - the end-of-text token ends the story;
 *  - past the model's context the KV cache slides (duet_tf_feed keeps the
 *    most recent half of the window and re-encodes it);
 *  - with an empty prompt the story starts after a newline token;
 *  - --show-probs prints one line per token: its probability and the most
 *    likely runners-up, instead of the plain stream;
 *  - tokens/s goes to stderr at the end;
 *  - duet's own f32 checkpoints multiply from an f16 copy by default
 *    (--precision: half the memory traffic per token; f32 is the exact
 *    training arithmetic); other files keep the types they store.
 *
 * Also here: cli_open_model, shared with `duet chat` and `duet bench`.
 *
 * What it is not: a chat front end (that is cmd_chat.c); no batch sampling.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MODEL "storyteller.safetensors"

int cli_open_model(const char *cmd, const char *path, const char *tokenizer, int64_t ctx,
                   const char *precision, int need_tokenizer, int load, duet_model **out) {
    *out = NULL;
    int qtype = -1; /* auto */
    if (precision && strcmp(precision, "auto") != 0) {
        qtype = duet_qtype_from_name(precision);
        if (qtype != DUET_QTYPE_F32 && qtype != DUET_QTYPE_F16 && qtype != DUET_QTYPE_BF16 &&
            qtype != DUET_QTYPE_Q8_0) {
            cli_error(cmd, "--precision '%s': use auto, f32, f16, bf16 or q8_0", precision);
            return EXIT_USAGE;
        }
    }
    if (ctx < 0 || ctx > (1 << 20)) {
        cli_error(cmd, "--ctx %lld: must be in 1..1048576 (0 = the model's)", (long long)ctx);
        return EXIT_USAGE;
    }
    if (access(path, R_OK) != 0) {
        cli_error(cmd, "cannot read model '%s'", path);
        return EXIT_IO;
    }
    duet_model_params mp;
    duet_model_params_default(&mp);
    mp.ctx = ctx;
    mp.tokenizer = tokenizer;
    mp.no_mmap = (load & CLI_NO_MMAP) != 0;
    mp.no_repack = (load & CLI_NO_REPACK) != 0;
    duet_model *m = duet_model_open(path, &mp);
    if (!m) {
        cli_error(cmd, "%s", duet_last_error());
        return EXIT_FORMAT;
    }
    const int64_t V = duet_tf_config(m->tf)->vocab;
    if (need_tokenizer && !m->tok) {
        if (strcmp(m->format, "llama2.c") == 0)
            cli_error(cmd, "%s: no tokenizer.bin beside the model; pass --tokenizer FILE (llama2.c's "
                      "tokenizer.bin)", path);
        else
            cli_error(cmd, "%s has no tokenizer", path);
        duet_model_free(m);
        return EXIT_FORMAT;
    }
    if (m->tok && duet_tokenizer_vocab_size(m->tok) > V) {
        cli_error(cmd, "%s: the tokenizer has %lld ids, the model only %lld", path,
                  (long long)duet_tokenizer_vocab_size(m->tok), (long long)V);
        duet_model_free(m);
        return EXIT_FORMAT;
    }
    if (qtype < 0) qtype = strcmp(m->format, "duet") == 0 ? DUET_QTYPE_F16 : DUET_QTYPE_F32;
    if (duet_tf_set_sample_type(m->tf, qtype) != DUET_OK) {
        cli_error(cmd, "%s", duet_last_error());
        duet_model_free(m);
        return EXIT_FAIL;
    }
    *out = m;
    return 0;
}

/* Writes bytes with C-style escapes for --show-probs ("\n", "\x01", ...). */
static void put_escaped(FILE *f, const char *s, int64_t n) {
    fputc('"', f);
    for (int64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c == '"') fputs("\\\"", f);
        else if (c == '\\') fputs("\\\\", f);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* The longest k < stop_len such that the last k bytes of buf[0..n) are the
 * first k bytes of stop: those must be held back. */
static int64_t held_back(const char *buf, int64_t n, const char *stop, int64_t stop_len) {
    for (int64_t k = stop_len - 1 < n ? stop_len - 1 : n; k > 0; k--)
        if (memcmp(buf + n - k, stop, (size_t)k) == 0) return k;
    return 0;
}

int cli_set_cache_type(const char *cmd, duet_model *m, const char *name) {
    const int t = duet_qtype_from_name(name);
    if ((t != DUET_QTYPE_F32 && t != DUET_QTYPE_F16) ||
        duet_tf_set_cache_type(m->tf, t) != DUET_OK) {
        cli_error(cmd, "--cache-type '%s': use f32 or f16%s%s", name,
                  t == DUET_QTYPE_F16 ? ": " : "", t == DUET_QTYPE_F16 ? duet_last_error() : "");
        return EXIT_USAGE;
    }
    return 0;
}

int cmd_text(int argc, char **argv) {
    const char *cmd = "text";
    const char *model_path = NULL, *prompt_opt = NULL, *stop = NULL, *precision = "auto";
    const char *tok_path = NULL, *cache_type = "f32";
    int64_t ntok = 200, top_k = 0, seed = -1, repeat_last_n = 64, ctx = 0;
    float temperature = 0.8f, top_p = 0.95f, min_p = 0.0f, repeat_penalty = 1.0f;
    int show_probs = 0, no_mmap = 0, no_repack = 0;
    enum { O_MODEL, O_PROMPT, O_N, O_TEMP, O_TOPK, O_TOPP, O_MINP, O_REP, O_REPN, O_SEED,
           O_STOP, O_SHOW, O_PREC, O_TOKZ, O_CTX, O_CACHE, O_NOMMAP, O_NOREPACK, O_COUNT };
    cli_opt opts[O_COUNT] = {
        [O_MODEL] = {"model", 'm', OPT_STR, &model_path, "a storyteller .safetensors, a .gguf, a llama2.c .bin or a Hugging Face folder (default: models/" DEFAULT_MODEL ")", 0},
        [O_PROMPT] = {"prompt", 'p', OPT_STR, &prompt_opt, "text to start from (or the first argument)", 0},
        [O_N] = {"tokens", 'n', OPT_I64, &ntok, "tokens to generate (200)", 0},
        [O_TEMP] = {"temperature", 't', OPT_FLOAT, &temperature, "0 = greedy (0.8)", 0},
        [O_TOPK] = {"top-k", 0, OPT_I64, &top_k, "keep the k most likely (0 = off)", 0},
        [O_TOPP] = {"top-p", 0, OPT_FLOAT, &top_p, "nucleus: keep probability mass p (0.95; 1 = off)", 0},
        [O_MINP] = {"min-p", 0, OPT_FLOAT, &min_p, "keep p >= min_p * max p (0 = off)", 0},
        [O_REP] = {"repeat-penalty", 0, OPT_FLOAT, &repeat_penalty, "penalise recent tokens (1 = off)", 0},
        [O_REPN] = {"repeat-last-n", 0, OPT_I64, &repeat_last_n, "how many recent tokens the penalty sees (64)", 0},
        [O_SEED] = {"seed", 's', OPT_I64, &seed, "random seed (default: from the clock; printed)", 0},
        [O_STOP] = {"stop", 0, OPT_STR, &stop, "stop before this text appears", 0},
        [O_SHOW] = {"show-probs", 0, OPT_FLAG, &show_probs, "one line per token with its probability and runners-up", 0},
        [O_PREC] = {"precision", 0, OPT_STR, &precision, "weights while sampling: auto (f16 for duet's own f32 models, else as stored), f32, f16, bf16, q8_0", 0},
        [O_TOKZ] = {"tokenizer", 0, OPT_STR, &tok_path, "llama2.c: its tokenizer.bin (default: beside the model)", 0},
        [O_CTX] = {"ctx", 0, OPT_I64, &ctx, "context length (0 = the model's, at most 4096 for other programs' files)", 0},
        [O_CACHE] = {"cache-type", 0, OPT_STR, &cache_type, "KV cache: f32 or f16 (half the memory; f32)", 0},
        [O_NOMMAP] = {"no-mmap", 0, OPT_FLAG, &no_mmap, "read the weights into memory (huge pages where the kernel gives them) instead of mapping the file: faster decode, a copy up front", 0},
        [O_NOREPACK] = {"no-repack", 0, OPT_FLAG, &no_repack, "keep Q4_0 / Q8_0 / Q4_K / Q5_K / Q6_K matrices in the file's layout (zero copy) instead of repacking them at load for the AVX-512 VNNI kernels", 0},
    };
    const char *pos[1] = {NULL};
    int npos = 0;
    int rc = cli_parse(cmd, "[PROMPT] [options]\n\nSamples text from a language model: a duet storyteller, a GGUF file\n(llama, qwen2, gpt2), a llama2.c checkpoint or a Hugging Face folder.", argc,
                       argv, opts, O_COUNT, pos, 1, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if (npos && prompt_opt) {
        cli_error(cmd, "give the prompt as an argument or with --prompt, not both");
        return EXIT_USAGE;
    }
    const char *prompt = npos ? pos[0] : prompt_opt ? prompt_opt : "";
    if (ntok < 0 || ntok > 100000000) {
        cli_error(cmd, "-n %lld: must be in 0..100000000", (long long)ntok);
        return EXIT_USAGE;
    }
    if (opts[O_SEED].seen && seed < 0) {
        cli_error(cmd, "--seed %lld: must be >= 0", (long long)seed);
        return EXIT_USAGE;
    }
    if (stop && !*stop) {
        cli_error(cmd, "--stop needs a non-empty text");
        return EXIT_USAGE;
    }
    if (seed < 0) seed = (int64_t)((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16)) & 0x7fffffff;

    duet_sampler_params sp;
    duet_sampler_params_default(&sp);
    sp.temperature = temperature;
    sp.top_k = top_k;
    sp.top_p = top_p;
    sp.min_p = min_p;
    sp.repeat_penalty = repeat_penalty;
    sp.repeat_last_n = repeat_last_n;
    sp.seed = (uint64_t)seed;

    char defbuf[4096];
    if (!model_path) {
        model_path = cli_default_model(DEFAULT_MODEL, defbuf, sizeof defbuf);
        if (!model_path) {
            cli_error(cmd, "no --model given and the built-in storyteller (%s) is missing.\n"
                      "  Train one:  duet train text --data FILE --out %s\n"
                      "  or pass:    duet text --model MODEL.safetensors \"Once upon a time\"",
                      defbuf, defbuf);
            return EXIT_IO;
        }
    }
    duet_model *model = NULL;
    rc = cli_open_model(cmd, model_path, tok_path, ctx, precision, 1,
                        (no_mmap ? CLI_NO_MMAP : 0) | (no_repack ? CLI_NO_REPACK : 0), &model);
    if (rc) return rc;
    if ((rc = cli_set_cache_type(cmd, model, cache_type)) != 0) {
        duet_model_free(model);
        return rc;
    }
    duet_tf *m = model->tf;
    duet_tokenizer *tok = model->tok;
    duet_sampler *smp = NULL;
    int32_t *hist = NULL;
    float *logits = NULL;
    char *gen = NULL;
    int exit_code = EXIT_FAIL;
    const int64_t V = duet_tf_config(m)->vocab;
    smp = duet_sampler_new(V, &sp);
    if (!smp) {
        cli_error(cmd, "%s", duet_last_error());
        exit_code = EXIT_USAGE;
        goto done;
    }

    /* ---- the prompt ---- */
    const int64_t plen = (int64_t)strlen(prompt);
    int64_t cap = plen + 2 + ntok;
    hist = malloc(sizeof(int32_t) * (size_t)cap);
    logits = malloc(sizeof(float) * (size_t)V);
    if (!hist || !logits) {
        cli_error(cmd, "out of memory");
        goto done;
    }
    /* the model's wish for bos (SentencePiece and llama2.c models want it) */
    const unsigned enc_flags = duet_tokenizer_default_flags(tok) & DUET_TOK_ADD_BOS;
    int64_t nh = duet_tokenizer_encode(tok, prompt, plen, enc_flags, hist, plen + 2);
    if (nh > plen + 2) { /* SentencePiece byte fallback can take more ids than bytes */
        int32_t *nhist = realloc(hist, sizeof(int32_t) * (size_t)(nh + ntok));
        if (!nhist) {
            cli_error(cmd, "out of memory");
            goto done;
        }
        hist = nhist;
        cap = nh + ntok;
        nh = duet_tokenizer_encode(tok, prompt, plen, enc_flags, hist, nh);
    }
    if (nh < 0) {
        cli_error(cmd, "%s", duet_last_error());
        goto done;
    }
    int64_t nprompt = nh;
    if (nh == 0) { /* no prompt: begin as after a newline */
        int32_t nl = duet_tokenizer_token_to_id(tok, "\n", 1);
        hist[nh++] = nl >= 0 ? nl : duet_tokenizer_bos(tok) >= 0 ? duet_tokenizer_bos(tok) : 0;
    }
    const int32_t eos = duet_tokenizer_eos(tok);
    if (show_probs) {
        printf("prompt: ");
        put_escaped(stdout, prompt, plen);
        printf(" (%lld tokens)\n", (long long)nprompt);
    } else {
        fwrite(prompt, 1, (size_t)plen, stdout);
    }
    fflush(stdout);

    const int64_t nfed = nh;
    double t0 = cli_now();
    duet_status s = duet_tf_feed(m, hist, nh, logits, 0);
    double t_prompt = cli_now() - t0;
    if (s != DUET_OK) {
        cli_error(cmd, "%s", duet_last_error());
        goto done;
    }

    /* ---- sample and stream ---- */
    const int64_t stop_len = stop ? (int64_t)strlen(stop) : 0;
    int64_t gcap = 4096, glen = 0, printed = 0, made = 0;
    gen = malloc((size_t)gcap);
    if (!gen) {
        cli_error(cmd, "out of memory");
        goto done;
    }
    char piece[256];
    duet_sample_info info;
    int stopped = 0;
    double t1 = cli_now();
    for (int64_t i = 0; i < ntok && !stopped; i++) {
        int32_t id = duet_sampler_sample(smp, logits, hist, nh, show_probs ? &info : NULL);
        if (id == eos && eos >= 0) {
            if (show_probs) printf("%5lld  <|endoftext|>  p=%.4f\n", (long long)i, (double)info.prob);
            break;
        }
        hist[nh++] = id;
        made++;
        int64_t len = duet_tokenizer_decode_piece(tok, hist[nh - 2], id, piece, (int64_t)sizeof piece);
        if (len < 0) len = 0;
        if (len > (int64_t)sizeof piece) len = (int64_t)sizeof piece;
        if (show_probs) {
            printf("%5lld  ", (long long)i);
            put_escaped(stdout, piece, len);
            printf("  p=%.4f   runners-up:", (double)info.prob);
            int shown = 0;
            for (int k = 0; k < info.n_top && shown < 5; k++) {
                if (info.top_id[k] == id) continue;
                char alt[256];
                int64_t al = duet_tokenizer_decode_one(tok, info.top_id[k], alt, (int64_t)sizeof alt);
                if (al < 0) al = 0;
                if (al > (int64_t)sizeof alt) al = (int64_t)sizeof alt;
                fputc(' ', stdout);
                put_escaped(stdout, alt, al);
                printf(" %.4f", (double)info.top_prob[k]);
                shown++;
            }
            fputc('\n', stdout);
        }
        /* append to the story; print what can no longer become the stop text */
        if (glen + len > gcap) {
            while (glen + len > gcap) gcap *= 2;
            char *ng = realloc(gen, (size_t)gcap);
            if (!ng) {
                cli_error(cmd, "out of memory");
                goto done;
            }
            gen = ng;
        }
        memcpy(gen + glen, piece, (size_t)len);
        glen += len;
        int64_t upto = glen;
        if (stop) {
            int64_t from = printed - stop_len + 1 > 0 ? printed - stop_len + 1 : 0;
            const char *hit = memmem(gen + from, (size_t)(glen - from), stop, (size_t)stop_len);
            if (hit) {
                upto = hit - gen;
                stopped = 1;
            } else {
                upto = glen - held_back(gen, glen, stop, stop_len);
            }
        }
        if (!show_probs && upto > printed) {
            fwrite(gen + printed, 1, (size_t)(upto - printed), stdout);
            fflush(stdout);
        }
        printed = upto > printed ? upto : printed;
        if (stopped || i + 1 == ntok) break;
        s = duet_tf_feed(m, &id, 1, logits, 0);
        if (s != DUET_OK) {
            cli_error(cmd, "%s", duet_last_error());
            goto done;
        }
    }
    if (!stopped && !show_probs && printed < glen) fwrite(gen + printed, 1, (size_t)(glen - printed), stdout);
    if (!show_probs) fputc('\n', stdout);
    fflush(stdout);
    double t_gen = cli_now() - t1;
    fprintf(stderr, "[%lld tokens in %.2f s: %.1f tokens/s; prompt %lld tokens in %.3f s; seed %lld]\n",
            (long long)made, t_gen, t_gen > 0 ? (double)made / t_gen : 0.0, (long long)nfed,
            t_prompt, (long long)seed);
    exit_code = 0;
done:
    free(gen);
    free(hist);
    free(logits);
    duet_sampler_free(smp);
    duet_model_free(model);
    return exit_code;
}
