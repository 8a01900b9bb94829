/*
 * cmd_chat.c — `duet chat`: a conversation with an instruction-tuned model.
 * Each line read from stdin is one user message (a terminal or a pipe);
 * the conversation is rendered with the model's chat template
 * (tokenizer.chat_template / tokenizer_config.json, or --template), encoded
 * with special tokens, and only the tokens past what the KV cache already
 * holds are fed. The reply streams to stdout until the end-of-sequence
 * token or another control token (<|im_end|>, <|eot_id|>, ...) is drawn.
 * "/reset" starts a new conversation, "/quit" (or end of input) leaves.
 *
 * What it is not: a Jinja interpreter (the template families duet knows are
 * listed in duet.h) or a multi-line editor.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    duet_chat_message *msgs;
    int64_t n, cap;
} conversation;

static void conv_clear(conversation *c) {
    for (int64_t i = 0; i < c->n; i++) free((void *)c->msgs[i].content);
    c->n = 0;
}

static int conv_add(conversation *c, const char *role, const char *text, size_t len) {
    if (c->n == c->cap) {
        int64_t nc = c->cap ? 2 * c->cap : 16;
        duet_chat_message *m = realloc(c->msgs, sizeof *m * (size_t)nc);
        if (!m) return -1;
        c->msgs = m;
        c->cap = nc;
    }
    char *s = malloc(len + 1);
    if (!s) return -1;
    memcpy(s, text, len);
    s[len] = 0;
    c->msgs[c->n].role = role;
    c->msgs[c->n].content = s;
    c->n++;
    return 0;
}

/* The text of token id, or NULL (for the template's bos/eos). */
static const char *token_text(const duet_tokenizer *tok, int32_t id, char *buf, size_t cap) {
    int64_t len = 0;
    const char *s = id >= 0 ? duet_tokenizer_id_to_token(tok, id, &len) : NULL;
    if (!s || len <= 0 || (size_t)len >= cap) return NULL;
    memcpy(buf, s, (size_t)len);
    buf[len] = 0;
    return buf;
}

int cmd_chat(int argc, char **argv) {
    const char *cmd = "chat";
    const char *model_path = NULL, *system = NULL, *tpl_name = NULL, *precision = "auto";
    const char *tok_path = NULL, *cache_type = "f32";
    int64_t ntok = 512, top_k = 40, seed = -1, ctx = 0;
    float temperature = 0.7f, top_p = 0.95f, min_p = 0.05f, repeat_penalty = 1.0f;
    int quiet = 0, no_mmap = 0, no_repack = 0;
    enum { O_MODEL, O_SYS, O_TPL, O_N, O_TEMP, O_TOPK, O_TOPP, O_MINP, O_REP, O_SEED, O_CTX,
           O_PREC, O_TOKZ, O_QUIET, O_CACHE, O_NOMMAP, O_NOREPACK, O_COUNT };
    cli_opt opts[O_COUNT] = {
        [O_MODEL] = {"model", 'm', OPT_STR, &model_path, "a .gguf, a Hugging Face folder, a llama2.c .bin or a duet model (required)", 0},
        [O_SYS] = {"system", 0, OPT_STR, &system, "system prompt", 0},
        [O_TPL] = {"template", 0, OPT_STR, &tpl_name, "chat template family when the model has none or an unknown one: chatml, llama3, llama2, mistral, zephyr, gemma", 0},
        [O_N] = {"tokens", 'n', OPT_I64, &ntok, "longest reply in tokens (512)", 0},
        [O_TEMP] = {"temperature", 't', OPT_FLOAT, &temperature, "0 = greedy (0.7)", 0},
        [O_TOPK] = {"top-k", 0, OPT_I64, &top_k, "keep the k most likely (40; 0 = off)", 0},
        [O_TOPP] = {"top-p", 0, OPT_FLOAT, &top_p, "nucleus (0.95)", 0},
        [O_MINP] = {"min-p", 0, OPT_FLOAT, &min_p, "keep p >= min_p * max p (0.05)", 0},
        [O_REP] = {"repeat-penalty", 0, OPT_FLOAT, &repeat_penalty, "penalise recent tokens (1 = off)", 0},
        [O_SEED] = {"seed", 's', OPT_I64, &seed, "random seed (default: from the clock)", 0},
        [O_CTX] = {"ctx", 0, OPT_I64, &ctx, "context length (0 = the model's, at most 4096)", 0},
        [O_PREC] = {"precision", 0, OPT_STR, &precision, "auto, f32, f16, bf16, q8_0 (as duet text)", 0},
        [O_TOKZ] = {"tokenizer", 0, OPT_STR, &tok_path, "llama2.c: its tokenizer.bin", 0},
        [O_QUIET] = {"quiet", 'q', OPT_FLAG, &quiet, "no prompts and statistics on stderr", 0},
        [O_CACHE] = {"cache-type", 0, OPT_STR, &cache_type, "KV cache: f32 or f16 (f32)", 0},
        [O_NOMMAP] = {"no-mmap", 0, OPT_FLAG, &no_mmap, "read the weights into memory (huge pages where the kernel gives them) instead of mapping the file: faster decode, a copy up front", 0},
        [O_NOREPACK] = {"no-repack", 0, OPT_FLAG, &no_repack, "keep Q4_0 / Q8_0 / Q4_K / Q5_K / Q6_K matrices in the file's layout (zero copy) instead of repacking them at load for the AVX-512 VNNI kernels", 0},
    };
    int npos = 0;
    int rc = cli_parse(cmd, "--model MODEL [options]\n\nChats with a model: one line of stdin per message "
                       "(/reset, /quit).", argc, argv, opts, O_COUNT, NULL, 0, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    if (!model_path) {
        cli_error(cmd, "--model is required (duet chat --model model.gguf)");
        return EXIT_USAGE;
    }
    if (ntok < 1 || ntok > 1000000) {
        cli_error(cmd, "-n %lld: must be in 1..1000000", (long long)ntok);
        return EXIT_USAGE;
    }
    if (seed < 0) seed = (int64_t)((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16)) & 0x7fffffff;
    duet_model *m = NULL;
    rc = cli_open_model(cmd, model_path, tok_path, ctx, precision, 1,
                        (no_mmap ? CLI_NO_MMAP : 0) | (no_repack ? CLI_NO_REPACK : 0), &m);
    if (rc) return rc;
    if ((rc = cli_set_cache_type(cmd, m, cache_type)) != 0) {
        duet_model_free(m);
        return rc;
    }
    duet_tokenizer *tok = m->tok;
    const int64_t V = duet_tf_config(m->tf)->vocab, C = duet_tf_config(m->tf)->ctx;
    char bos_buf[64], eos_buf[64];
    const char *bos = token_text(tok, duet_tokenizer_bos(tok), bos_buf, sizeof bos_buf);
    const char *eos = token_text(tok, duet_tokenizer_eos(tok), eos_buf, sizeof eos_buf);
    duet_chat_template *tpl = NULL;
    if (tpl_name) tpl = duet_chat_template_named(tpl_name, bos, eos);
    else if (m->chat_template) tpl = duet_chat_template_detect(m->chat_template, bos, eos);
    else duet_set_error(DUET_ERR_UNSUPPORTED, "the model has no chat template");
    if (!tpl) {
        cli_error(cmd, "%s; pick a family with --template (chatml, llama3, llama2, mistral, "
                  "zephyr, gemma)", duet_last_error());
        duet_model_free(m);
        return EXIT_USAGE;
    }
    duet_sampler_params sp;
    duet_sampler_params_default(&sp);
    sp.temperature = temperature, sp.top_k = top_k, sp.top_p = top_p, sp.min_p = min_p;
    sp.repeat_penalty = repeat_penalty, sp.seed = (uint64_t)seed;
    duet_sampler *smp = duet_sampler_new(V, &sp);
    if (!smp) {
        cli_error(cmd, "%s", duet_last_error());
        duet_chat_template_free(tpl);
        duet_model_free(m);
        return EXIT_USAGE;
    }
    const int tty = isatty(0) && !quiet;
    if (!quiet)
        fprintf(stderr, "[%s: %s %s, template %s, ctx %lld; /reset, /quit]\n", m->name, m->format,
                m->arch, duet_chat_template_name(tpl), (long long)C);

    conversation conv = {0};
    float *logits = malloc(sizeof(float) * (size_t)V);
    int64_t cap = 4096, ncached = 0, rcap = 4096;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)cap), *cached = malloc(sizeof(int32_t) * (size_t)C);
    char *render = malloc((size_t)rcap), *reply = NULL, piece[256];
    char *line = NULL;
    size_t lcap = 0;
    int exit_code = 0;
    if (!logits || !ids || !cached || !render) goto oom;
    if (system && conv_add(&conv, "system", system, strlen(system))) goto oom;
    for (;;) {
        if (tty) fputs("> ", stderr);
        ssize_t got = getline(&line, &lcap, stdin);
        if (got < 0) break;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
        if (got == 0) continue;
        if (strcmp(line, "/quit") == 0) break;
        if (strcmp(line, "/reset") == 0) {
            conv_clear(&conv);
            if (system && conv_add(&conv, "system", system, strlen(system))) goto oom;
            duet_tf_reset(m->tf);
            ncached = 0;
            continue;
        }
        if (conv_add(&conv, "user", line, (size_t)got)) goto oom;
        /* the whole conversation through the template, then encoded */
        int64_t rl = duet_chat_template_render(tpl, conv.msgs, conv.n, 1, render, rcap);
        if (rl >= rcap) {
            rcap = rl + 1;
            char *nr = realloc(render, (size_t)rcap);
            if (!nr) goto oom;
            render = nr;
            rl = duet_chat_template_render(tpl, conv.msgs, conv.n, 1, render, rcap);
        }
        if (rl < 0) {
            cli_error(cmd, "%s", duet_last_error());
            conv.n--;
            free((void *)conv.msgs[conv.n].content);
            continue;
        }
        int64_t n = duet_tokenizer_encode(tok, render, rl, DUET_TOK_SPECIALS, ids, cap);
        if (n > cap) {
            cap = n + 4096;
            int32_t *ni = realloc(ids, sizeof(int32_t) * (size_t)cap);
            if (!ni) goto oom;
            ids = ni;
            n = duet_tokenizer_encode(tok, render, rl, DUET_TOK_SPECIALS, ids, cap);
        }
        if (n < 0) goto oom;
        if (n + ntok > C && !quiet)
            fprintf(stderr, "[the conversation (%lld tokens) nears the context (%lld): older "
                    "turns slide out]\n", (long long)n, (long long)C);
        /* feed what the cache does not hold yet */
        int64_t keep = 0;
        while (keep < ncached && keep < n && cached[keep] == ids[keep]) keep++;
        if (keep == n) keep = n - 1; /* something must be fed for fresh logits */
        if (keep < ncached && duet_tf_set_pos(m->tf, keep) != DUET_OK) {
            duet_tf_reset(m->tf);
            keep = 0;
        }
        const int64_t fed = n - keep;
        double t0 = cli_now();
        duet_status s = duet_tf_feed(m->tf, ids + keep, fed, logits, 0);
        if (s != DUET_OK) {
            cli_error(cmd, "%s", duet_last_error());
            exit_code = EXIT_FAIL;
            break;
        }
        double t_prompt = cli_now() - t0;
        int slid = duet_tf_pos(m->tf) != n;
        ncached = slid ? 0 : n;
        if (!slid) memcpy(cached, ids, sizeof(int32_t) * (size_t)n);
        /* the reply */
        size_t rlen = 0, rcap2 = 1024;
        free(reply);
        reply = malloc(rcap2);
        if (!reply) goto oom;
        int32_t prev = ids[n - 1];
        int64_t made = 0;
        int started = 0;
        double t1 = cli_now();
        for (; made < ntok; made++) {
            int32_t id = duet_sampler_sample(smp, logits, ids, n, NULL);
            duet_token_type ty = duet_tokenizer_token_type(tok, id);
            if (id == duet_tokenizer_eos(tok) || ty == DUET_TOKEN_CONTROL) break;
            int64_t len = duet_tokenizer_decode_piece(tok, prev, id, piece, (int64_t)sizeof piece);
            if (len < 0) len = 0;
            if (len > (int64_t)sizeof piece) len = (int64_t)sizeof piece;
            if (rlen + (size_t)len + 1 > rcap2) {
                rcap2 = 2 * (rlen + (size_t)len + 1);
                char *nr = realloc(reply, rcap2);
                if (!nr) goto oom;
                reply = nr;
            }
            memcpy(reply + rlen, piece, (size_t)len);
            rlen += (size_t)len;
            /* the reply shows from its first non-space byte (templates put a
             * space or newline after the assistant header) */
            int64_t skip = 0;
            while (!started && skip < len && (piece[skip] == ' ' || piece[skip] == '\n')) skip++;
            started |= skip < len;
            fwrite(piece + skip, 1, (size_t)(len - skip), stdout);
            fflush(stdout);
            if (ncached > 0 && ncached < C) cached[ncached++] = id;
            else ncached = 0;
            prev = id;
            if (n < cap) ids[n++] = id; /* recent ids for the repeat penalty */
            s = duet_tf_feed(m->tf, &id, 1, logits, 0);
            if (s != DUET_OK) {
                cli_error(cmd, "%s", duet_last_error());
                exit_code = EXIT_FAIL;
                goto done;
            }
            if (duet_tf_pos(m->tf) != ncached) ncached = 0; /* the window slid */
        }
        fputc('\n', stdout);
        fflush(stdout);
        double t_gen = cli_now() - t1;
        if (!quiet)
            fprintf(stderr, "[%lld tokens, %.1f tokens/s; prompt %lld new tokens in %.2f s]\n",
                    (long long)made, t_gen > 0 ? (double)made / t_gen : 0.0,
                    (long long)fed, t_prompt);
        /* the history keeps the reply as shown */
        size_t off = 0;
        while (off < rlen && (reply[off] == ' ' || reply[off] == '\n')) off++;
        if (conv_add(&conv, "assistant", reply + off, rlen - off)) goto oom;
    }
    goto done;
oom:
    cli_error(cmd, "out of memory");
    exit_code = EXIT_FAIL;
done:
    free(line);
    free(reply);
    free(render);
    free(ids);
    free(cached);
    free(logits);
    conv_clear(&conv);
    free(conv.msgs);
    duet_sampler_free(smp);
    duet_chat_template_free(tpl);
    duet_model_free(m);
    return exit_code;
}
