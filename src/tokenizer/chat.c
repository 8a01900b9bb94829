/*
 * chat.c — chat templates: recognises the common Jinja chat templates of
 * instruction-tuned models by signature substrings and renders a
 * conversation as those templates do (Hugging Face renders them with
 * trim_blocks and lstrip_blocks; Jinja's trim / Python's str.strip() remove
 * the characters str.isspace() accepts).
 *
 * Families and the published templates they follow:
 *   chatml   teknium/OpenHermes-2.5-Mistral-7B, Qwen/Qwen2-7B-Instruct,
 *            HuggingFaceTB/SmolLM2 (a default system prompt when the first
 *            message is not "system"), Qwen2.5 without tools
 *   llama3   meta-llama/Meta-Llama-3-8B-Instruct
 *   llama2   meta-llama/Llama-2-7b-chat-hf
 *   mistral  mistralai/Mistral-7B-Instruct-v0.1 / v0.2
 *   zephyr   HuggingFaceH4/zephyr-7b-beta, TinyLlama-1.1B-Chat-v1.0
 *   gemma    google/gemma-7b-it
 * Templates that reject a system message (mistral, gemma) get it in front of
 * the first user message, followed by a blank line, as llama.cpp does.
 * What it is not: a Jinja interpreter; tools, images and dates in newer
 * templates are not rendered.
 */
#include "core/internal.h"

#include <string.h>

typedef enum ct_kind { CT_CHATML, CT_LLAMA3, CT_LLAMA2, CT_MISTRAL, CT_ZEPHYR, CT_GEMMA } ct_kind;

typedef struct ct_family {
    const char *name;
    ct_kind kind;
    const char *bos, *eos; /* the family's usual bos_token / eos_token */
} ct_family;

static const ct_family FAMILIES[] = {
    {"chatml", CT_CHATML, "", "<|im_end|>"},
    {"llama3", CT_LLAMA3, "<|begin_of_text|>", "<|eot_id|>"},
    {"llama2", CT_LLAMA2, "<s>", "</s>"},
    {"mistral", CT_MISTRAL, "<s>", "</s>"},
    {"zephyr", CT_ZEPHYR, "<s>", "</s>"},
    {"gemma", CT_GEMMA, "<bos>", "<eos>"},
};
#define N_FAMILIES ((int)(sizeof FAMILIES / sizeof FAMILIES[0]))
#define KNOWN_NAMES "chatml, llama3, llama2, mistral, zephyr, gemma"

struct duet_chat_template {
    const ct_family *fam;
    char *bos, *eos;
    char *default_system; /* NULL when none */
};

/* ======================================================================== */
/* Construction                                                              */
/* ======================================================================== */

static char *dup_str(const char *s) {
    size_t n = strlen(s);
    char *d = duet_alloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

void duet_chat_template_free(duet_chat_template *c) {
    if (!c) return;
    duet_free(c->bos);
    duet_free(c->eos);
    duet_free(c->default_system);
    duet_free(c);
}

static duet_chat_template *make(const ct_family *f, const char *bos, const char *eos) {
    duet_chat_template *c = duet_calloc(1, sizeof *c);
    if (!c) goto nomem;
    c->fam = f;
    c->bos = dup_str(bos ? bos : f->bos);
    c->eos = dup_str(eos ? eos : f->eos);
    if (!c->bos || !c->eos) goto nomem;
    return c;
nomem:
    duet_chat_template_free(c);
    duet_set_error(DUET_ERR_NOMEM, "chat template: out of memory");
    return NULL;
}

duet_chat_template *duet_chat_template_named(const char *name, const char *bos_text,
                                             const char *eos_text) {
    duet_clear_error();
    for (int i = 0; name && i < N_FAMILIES; i++)
        if (strcmp(FAMILIES[i].name, name) == 0) return make(&FAMILIES[i], bos_text, eos_text);
    duet_set_error(DUET_ERR_ARG, "chat template \"%s\" is not one duet renders; known: " KNOWN_NAMES,
                   name ? name : "(null)");
    return NULL;
}

/* The default system prompt of a ChatML template: the text of a Jinja string
 * literal '<|im_start|>system\n...<|im_end|>...' (escaped or raw newline),
 * unescaped; NULL when there is none. *oom set on allocation failure. */
static char *chatml_default_system(const char *tpl, int *oom) {
    static const char KEY[] = "<|im_start|>system";
    const size_t KL = sizeof KEY - 1;
    for (const char *at = strstr(tpl, KEY); at; at = strstr(at + 1, KEY)) {
        if (at == tpl || (at[-1] != '\'' && at[-1] != '"')) continue;
        char quote = at[-1];
        /* the literal, unescaped, from just after "system" */
        size_t cap = strlen(at + KL) + 1, n = 0;
        char *lit = duet_alloc(cap);
        if (!lit) {
            *oom = 1;
            return NULL;
        }
        const char *p = at + KL;
        for (; *p && *p != quote; p++) {
            if (*p == '\\' && p[1]) {
                p++;
                lit[n++] = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p == 'r' ? '\r' : *p;
            } else {
                lit[n++] = *p;
            }
        }
        lit[n] = 0;
        const char *end = strstr(lit, "<|im_end|>");
        if (*p == quote && lit[0] == '\n' && end && end > lit + 1) {
            size_t dl = (size_t)(end - (lit + 1));
            memmove(lit, lit + 1, dl);
            lit[dl] = 0;
            return lit;
        }
        duet_free(lit);
    }
    return NULL;
}

duet_chat_template *duet_chat_template_detect(const char *jinja, const char *bos_text,
                                              const char *eos_text) {
    duet_clear_error();
    if (!jinja) {
        duet_set_error(DUET_ERR_ARG, "chat template: no template text (the model has no "
                       "tokenizer.chat_template); pick a family by name: " KNOWN_NAMES);
        return NULL;
    }
    const char *name = NULL;
    if (strstr(jinja, "<|start_header_id|>")) name = "llama3";
    else if (strstr(jinja, "<|im_start|>")) name = "chatml";
    else if (strstr(jinja, "<start_of_turn>")) name = "gemma";
    else if (strstr(jinja, "[INST]") && strstr(jinja, "<<SYS>>")) name = "llama2";
    else if (strstr(jinja, "[INST]") && strstr(jinja, "Only user and assistant roles are supported"))
        name = "mistral";
    else if (strstr(jinja, "<|user|>") && strstr(jinja, "<|assistant|>") && !strstr(jinja, "<|end|>"))
        name = "zephyr";
    if (!name) {
        duet_set_error(DUET_ERR_UNSUPPORTED,
                       "chat template not recognised (it starts \"%.60s\"); duet renders the "
                       "families " KNOWN_NAMES ": pick the one the model was tuned with by name "
                       "(CLI: --chat-template NAME); chatml is the usual fallback",
                       jinja);
        return NULL;
    }
    duet_chat_template *c = duet_chat_template_named(name, bos_text, eos_text);
    if (c && c->fam->kind == CT_CHATML) {
        int oom = 0;
        c->default_system = chatml_default_system(jinja, &oom);
        if (oom) {
            duet_chat_template_free(c);
            duet_set_error(DUET_ERR_NOMEM, "chat template: out of memory");
            return NULL;
        }
    }
    return c;
}

const char *duet_chat_template_name(const duet_chat_template *c) { return c->fam->name; }
const char *duet_chat_template_default_system(const duet_chat_template *c) {
    return c->default_system;
}

/* ======================================================================== */
/* Rendering                                                                 */
/* ======================================================================== */

typedef struct sbuf {
    char *p;
    int64_t n, cap;
    int oom;
} sbuf;

static void put(sbuf *b, const char *s, int64_t n) {
    if (b->oom || n <= 0) return;
    if (b->n + n + 1 > b->cap) {
        int64_t c = b->cap ? b->cap : 256;
        while (c < b->n + n + 1) c *= 2;
        char *np = duet_alloc((size_t)c);
        if (!np) {
            b->oom = 1;
            return;
        }
        if (b->n) memcpy(np, b->p, (size_t)b->n);
        duet_free(b->p);
        b->p = np;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, (size_t)n);
    b->n += n;
    b->p[b->n] = 0;
}
static void puts_(sbuf *b, const char *s) { put(b, s, (int64_t)strlen(s)); }

/* Length of the character at s[0..n) when Python's str.isspace() accepts it
 * (what str.strip() and Jinja's trim remove), else 0. */
static int py_space(const unsigned char *s, int64_t n) {
    if (n <= 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) ? 1 : 0;
    uint32_t cp;
    int len;
    if ((c & 0xE0) == 0xC0 && n >= 2) cp = ((c & 0x1Fu) << 6) | (s[1] & 0x3Fu), len = 2;
    else if ((c & 0xF0) == 0xE0 && n >= 3)
        cp = ((c & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu), len = 3;
    else return 0;
    for (int i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    int sp = cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
             cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
    return sp ? len : 0;
}

/* str.strip(): trims s[0..*n) in place (returns the new start). */
static const char *strip(const char *s, int64_t *n) {
    const unsigned char *u = (const unsigned char *)s;
    int64_t a = 0, b = *n, k;
    while (a < b && (k = py_space(u + a, b - a)) > 0) a += k;
    while (b > a) {
        int64_t st = b - 1; /* start of the last character */
        while (st > a && b - st < 3 && (u[st] & 0xC0) == 0x80) st--;
        if (py_space(u + st, b - st) != b - st) break;
        b = st;
    }
    *n = b - a;
    return s + a;
}

static void put_stripped(sbuf *b, const char *s, int64_t n) {
    const char *t = strip(s, &n);
    put(b, t, n);
}

static int is(const char *a, const char *b) { return strcmp(a, b) == 0; }

/* Checks user/assistant alternation from msgs[first] on (the templates'
 * raise_exception); 0 + error when it fails. */
static int alternates(const duet_chat_message *msgs, int64_t first, int64_t n, const char *fam) {
    for (int64_t i = first; i < n; i++) {
        if (is(msgs[i].role, "user") != ((i - first) % 2 == 0)) {
            duet_set_error(DUET_ERR_ARG, "chat template %s: conversation roles must alternate "
                           "user/assistant/user/assistant/... (message %lld is \"%s\")",
                           fam, (long long)i, msgs[i].role);
            return 0;
        }
    }
    return 1;
}

int64_t duet_chat_template_render(const duet_chat_template *c, const duet_chat_message *msgs,
                                  int64_t n, int add_generation_prompt, char *buf, int64_t cap) {
    duet_clear_error();
    for (int64_t i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content) {
            duet_set_error(DUET_ERR_ARG, "chat template: message %lld has a NULL %s", (long long)i,
                           msgs[i].role ? "content" : "role");
            return -1;
        }
    }
    sbuf b = {0}, tmp = {0};
    const char *fam = c->fam->name;
    int64_t first = 0; /* first message of the loop (after a leading system message) */
    switch (c->fam->kind) {
    case CT_CHATML:
        for (int64_t i = 0; i < n; i++) {
            if (i == 0 && c->default_system && !is(msgs[0].role, "system")) {
                puts_(&b, "<|im_start|>system\n");
                puts_(&b, c->default_system);
                puts_(&b, "<|im_end|>\n");
            }
            puts_(&b, "<|im_start|>");
            puts_(&b, msgs[i].role);
            puts_(&b, "\n");
            puts_(&b, msgs[i].content);
            puts_(&b, "<|im_end|>\n");
        }
        if (add_generation_prompt) puts_(&b, "<|im_start|>assistant\n");
        break;
    case CT_LLAMA3:
        for (int64_t i = 0; i < n; i++) {
            if (i == 0) puts_(&b, c->bos);
            puts_(&b, "<|start_header_id|>");
            puts_(&b, msgs[i].role);
            puts_(&b, "<|end_header_id|>\n\n");
            put_stripped(&b, msgs[i].content, (int64_t)strlen(msgs[i].content));
            puts_(&b, "<|eot_id|>");
        }
        if (add_generation_prompt) puts_(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case CT_LLAMA2: {
        const char *sys = NULL;
        if (n > 0 && is(msgs[0].role, "system")) sys = msgs[0].content, first = 1;
        if (!alternates(msgs, first, n, fam)) goto fail;
        for (int64_t i = first; i < n; i++) {
            tmp.n = 0;
            if (i == first && sys) {
                puts_(&tmp, "<<SYS>>\n");
                puts_(&tmp, sys);
                puts_(&tmp, "\n<</SYS>>\n\n");
            }
            puts_(&tmp, msgs[i].content);
            if (is(msgs[i].role, "user")) {
                puts_(&b, c->bos);
                puts_(&b, "[INST] ");
                put_stripped(&b, tmp.p, tmp.n);
                puts_(&b, " [/INST]");
            } else if (is(msgs[i].role, "assistant")) {
                puts_(&b, " ");
                put_stripped(&b, tmp.p, tmp.n);
                puts_(&b, " ");
                puts_(&b, c->eos);
            }
        }
        break;
    }
    case CT_MISTRAL:
    case CT_GEMMA: {
        const char *sys = NULL;
        if (n > 0 && is(msgs[0].role, "system")) sys = msgs[0].content, first = 1;
        if (!alternates(msgs, first, n, fam)) goto fail;
        puts_(&b, c->bos);
        for (int64_t i = first; i < n; i++) {
            tmp.n = 0;
            if (i == first && sys) {
                puts_(&tmp, sys);
                puts_(&tmp, "\n\n");
            }
            puts_(&tmp, msgs[i].content);
            int user = is(msgs[i].role, "user");
            if (c->fam->kind == CT_MISTRAL) {
                if (user) {
                    puts_(&b, "[INST] ");
                    put(&b, tmp.p, tmp.n);
                    puts_(&b, " [/INST]");
                } else if (is(msgs[i].role, "assistant")) {
                    put(&b, tmp.p, tmp.n);
                    puts_(&b, c->eos);
                } else {
                    duet_set_error(DUET_ERR_ARG, "chat template mistral: only user and assistant "
                                   "roles are supported (message %lld is \"%s\")", (long long)i,
                                   msgs[i].role);
                    goto fail;
                }
            } else {
                puts_(&b, "<start_of_turn>");
                puts_(&b, is(msgs[i].role, "assistant") ? "model" : msgs[i].role);
                puts_(&b, "\n");
                put_stripped(&b, tmp.p, tmp.n);
                puts_(&b, "<end_of_turn>\n");
            }
        }
        if (add_generation_prompt && c->fam->kind == CT_GEMMA) puts_(&b, "<start_of_turn>model\n");
        break;
    }
    case CT_ZEPHYR:
        for (int64_t i = 0; i < n; i++) {
            const char *r = msgs[i].role;
            if (is(r, "user") || is(r, "system") || is(r, "assistant")) {
                puts_(&b, "<|");
                puts_(&b, r);
                puts_(&b, "|>\n");
                puts_(&b, msgs[i].content);
                puts_(&b, c->eos);
                puts_(&b, "\n");
            }
            if (i == n - 1 && add_generation_prompt) puts_(&b, "<|assistant|>\n");
        }
        break;
    }
    if (b.oom || tmp.oom) {
        duet_set_error(DUET_ERR_NOMEM, "chat template: out of memory");
        goto fail;
    }
    if (buf && cap > 0) {
        int64_t k = DUET_MIN(b.n, cap - 1);
        if (k > 0) memcpy(buf, b.p, (size_t)k);
        buf[k] = 0;
    }
    int64_t total = b.n;
    duet_free(b.p);
    duet_free(tmp.p);
    return total;
fail:
    duet_free(b.p);
    duet_free(tmp.p);
    return -1;
}
