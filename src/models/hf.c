/*
 * hf.c — Hugging Face model folders as external-weight transformers:
 * config.json (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM),
 * model.safetensors or the shards named by model.safetensors.index.json
 * (F32 / F16 / BF16, used in place through the maps), and tokenizer.json
 * (+ tokenizer_config.json) as a SentencePiece-style or byte-level BPE.
 *
 * RoPE: Hugging Face's modeling code rotates q/k with rotate_half, i.e.
 * pairs (i, i + HS/2), and its conversion scripts permute Meta's rows for
 * that. duet runs these weights as stored with NeoX-order RoPE (zero copy)
 * instead of permuting the rows back to adjacent pairs. rope_scaling
 * "linear" scales positions; "llama3" divides each pair's frequency by the
 * smoothed factor of Hugging Face's _compute_llama3_parameters.
 *
 * tokenizer.json: model.type "BPE" only. Byte-level vocabularies (a
 * ByteLevel pre-tokenizer or decoder) become the GPT-2 kind, with the
 * pre-tokenizer recognised from the Split pattern (Llama 3's, Qwen2's with
 * single digits, else GPT-2's); the rest (Llama 2 / Mistral style: "▁",
 * byte_fallback) the SentencePiece kind, each piece's score being minus the
 * rank of the first merge that makes it, so merging by score merges in the
 * order of the merge list.
 *
 * What it is not: a transformers re-implementation — attention/MLP biases
 * on llama, other activations, partial rotary and other rope_scaling types
 * are refused by name.
 */
#include "core/internal.h"
#include "formats/formats.h"
#include "formats/json.h"
#include "models/loaders.h"
#include "models/tf_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ==== small helpers ======================================================= */

/* dir/file into out. */
static void join(char *out, size_t cap, const char *dir, const char *file) {
    size_t n = strlen(dir);
    snprintf(out, cap, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", file);
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Reads and parses a JSON file; NULL with a message naming the file. */
static duet_json *read_json(const char *path) {
    char *text = NULL;
    size_t n = 0;
    if (duet_read_file(path, &text, &n) != DUET_OK) return NULL;
    duet_json_error err;
    duet_json *root = duet_json_parse(text, n, &err);
    duet_free(text);
    if (!root) {
        duet_set_error(err.status == DUET_ERR_NOMEM ? DUET_ERR_NOMEM : DUET_ERR_FORMAT,
                       "%s: not valid JSON: %s at line %lld, column %lld", path, err.msg,
                       (long long)err.line, (long long)err.col);
        return NULL;
    }
    if (root->type != DUET_JSON_OBJECT) {
        duet_set_error(DUET_ERR_FORMAT, "%s: the top level is %s, expected an object", path,
                       duet_json_type_phrase(root->type));
        duet_json_free(root);
        return NULL;
    }
    return root;
}

/* A string member, or the "content" of an object member ({"content": ...},
 * as tokenizer_config.json writes special tokens); NULL otherwise. */
static const char *str_or_content(const duet_json *obj, const char *key) {
    const duet_json *v = duet_json_get(obj, key);
    if (v && v->type == DUET_JSON_OBJECT) v = duet_json_get(v, "content");
    return duet_json_as_str(v);
}

/* ---- a string -> id table (open addressing, FNV-1a) ---- */

typedef struct str_map {
    const char **key;
    int64_t *len;
    int32_t *id;
    int64_t cap;
} str_map;

static uint64_t fnv(const char *s, int64_t n) {
    uint64_t h = 1469598103934665603ull;
    for (int64_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static int map_init(str_map *m, int64_t n) {
    m->cap = 16;
    while (m->cap < 2 * n + 16) m->cap *= 2;
    m->key = duet_calloc((size_t)m->cap, sizeof *m->key);
    m->len = duet_calloc((size_t)m->cap, sizeof *m->len);
    m->id = duet_calloc((size_t)m->cap, sizeof *m->id);
    return m->key && m->len && m->id ? 0 : -1;
}

static void map_free(str_map *m) {
    duet_free(m->key);
    duet_free(m->len);
    duet_free(m->id);
}

/* Adds s -> id unless s is there (the first id wins). */
static void map_put(str_map *m, const char *s, int64_t n, int32_t id) {
    for (uint64_t h = fnv(s, n) & (uint64_t)(m->cap - 1);; h = (h + 1) & (uint64_t)(m->cap - 1)) {
        if (!m->key[h]) {
            m->key[h] = s, m->len[h] = n, m->id[h] = id;
            return;
        }
        if (m->len[h] == n && memcmp(m->key[h], s, (size_t)n) == 0) return;
    }
}

static int32_t map_get(const str_map *m, const char *s, int64_t n) {
    for (uint64_t h = fnv(s, n) & (uint64_t)(m->cap - 1);; h = (h + 1) & (uint64_t)(m->cap - 1)) {
        if (!m->key[h]) return -1;
        if (m->len[h] == n && memcmp(m->key[h], s, (size_t)n) == 0) return m->id[h];
    }
}

/* ==== tokenizer.json ====================================================== */

/* 1 when the pre-tokenizer or decoder (or a Sequence inside) has type `t`. */
static int has_type(const duet_json *node, const char *t) {
    if (!node || node->type != DUET_JSON_OBJECT) return 0;
    const char *ty = duet_json_get_str(node, "type", "");
    if (strcmp(ty, t) == 0) return 1;
    static const char *const lists[] = {"pretokenizers", "decoders", "normalizers"};
    for (size_t k = 0; k < 3; k++) {
        const duet_json *a = duet_json_get(node, lists[k]);
        for (int64_t i = 0; a && a->type == DUET_JSON_ARRAY && i < a->len; i++)
            if (has_type(&a->items[i], t)) return 1;
    }
    return 0;
}

/* The Split pattern's regex (first one found), or NULL. */
static const char *split_regex(const duet_json *node) {
    if (!node || node->type != DUET_JSON_OBJECT) return NULL;
    if (strcmp(duet_json_get_str(node, "type", ""), "Split") == 0) {
        const duet_json *p = duet_json_get(node, "pattern");
        const char *r = p ? duet_json_get_str(p, "Regex", NULL) : NULL;
        if (r) return r;
    }
    const duet_json *a = duet_json_get(node, "pretokenizers");
    for (int64_t i = 0; a && a->type == DUET_JSON_ARRAY && i < a->len; i++) {
        const char *r = split_regex(&a->items[i]);
        if (r) return r;
    }
    return NULL;
}

/* 1 when the normalizer prepends "▁" or a Metaspace pre-tokenizer adds a
 * prefix space (Llama 2 / Mistral style). */
static int spm_prefix(const duet_json *root) {
    const duet_json *norm = duet_json_get(root, "normalizer");
    if (norm && norm->type == DUET_JSON_OBJECT) {
        const duet_json *list = duet_json_get(norm, "normalizers");
        const duet_json *one[1] = {norm};
        int64_t n = list && list->type == DUET_JSON_ARRAY ? list->len : 1;
        for (int64_t i = 0; i < n; i++) {
            const duet_json *x = list && list->type == DUET_JSON_ARRAY ? &list->items[i] : one[0];
            if (strcmp(duet_json_get_str(x, "type", ""), "Prepend") == 0 &&
                strcmp(duet_json_get_str(x, "prepend", ""), "\xe2\x96\x81") == 0)
                return 1;
        }
    }
    const duet_json *pre = duet_json_get(root, "pre_tokenizer");
    if (has_type(pre, "Metaspace")) {
        const char *scheme = duet_json_get_str(pre, "prepend_scheme", NULL);
        int add = 1;
        duet_json_as_bool(duet_json_get(pre, "add_prefix_space"), &add);
        return scheme ? strcmp(scheme, "never") != 0 : add;
    }
    return 0;
}

#define TOK_FAIL(st, ...)                                                                    \
    do {                                                                                     \
        duet_set_error(st, __VA_ARGS__);                                                     \
        goto fail;                                                                           \
    } while (0)

duet_tokenizer *duet_tokenizer_load_hf(const char *path, char **chat_template) {
    if (chat_template) *chat_template = NULL;
    duet_json *root = read_json(path), *cfg = NULL, *mcfg = NULL;
    duet_tokenizer *t = NULL;
    const char **tokens = NULL, **merge_s = NULL;
    int64_t *lens = NULL, *merge_l = NULL;
    int32_t *types = NULL;
    float *scores = NULL;
    char **fill = NULL, *pairs = NULL;
    str_map map = {0};
    int64_t V = 0;
    if (!root) return NULL;
    const duet_json *model = duet_json_get(root, "model");
    if (!model || model->type != DUET_JSON_OBJECT)
        TOK_FAIL(DUET_ERR_FORMAT, "%s: no \"model\" object", path);
    const char *mtype = duet_json_get_str(model, "type", "BPE");
    if (strcmp(mtype, "BPE") != 0)
        TOK_FAIL(DUET_ERR_UNSUPPORTED, "%s: model.type is \"%s\"; duet reads BPE tokenizers "
                 "(byte-level or SentencePiece-style)", path, mtype);
    const duet_json *vocab = duet_json_get(model, "vocab"), *merges = duet_json_get(model, "merges");
    if (!vocab || vocab->type != DUET_JSON_OBJECT)
        TOK_FAIL(DUET_ERR_FORMAT, "%s: model.vocab is missing or not an object", path);
    if (!merges || merges->type != DUET_JSON_ARRAY)
        TOK_FAIL(DUET_ERR_FORMAT, "%s: model.merges is missing or not an array", path);
    const duet_json *added = duet_json_get(root, "added_tokens");
    const int64_t nadded = added && added->type == DUET_JSON_ARRAY ? added->len : 0;
    const int byte_level = has_type(duet_json_get(root, "pre_tokenizer"), "ByteLevel") ||
                           has_type(duet_json_get(root, "decoder"), "ByteLevel");
    int byte_fallback = 0;
    duet_json_as_bool(duet_json_get(model, "byte_fallback"), &byte_fallback);

    /* ids: vocab and added tokens, gaps filled with unused names */
    for (int64_t i = 0; i < vocab->len; i++) {
        int64_t id;
        if (!duet_json_as_int(&vocab->items[i], &id) || id < 0 || id >= (1 << 24))
            TOK_FAIL(DUET_ERR_FORMAT, "%s: model.vocab[\"%s\"] is not a token id", path,
                     vocab->items[i].key);
        V = DUET_MAX(V, id + 1);
    }
    for (int64_t i = 0; i < nadded; i++) {
        int64_t id;
        const duet_json *a = &added->items[i];
        if (!duet_json_as_int(duet_json_get(a, "id"), &id) || id < 0 || id >= (1 << 24) ||
            !duet_json_as_str(duet_json_get(a, "content")))
            TOK_FAIL(DUET_ERR_FORMAT, "%s: added_tokens[%lld] needs an id and a content", path,
                     (long long)i);
        V = DUET_MAX(V, id + 1);
    }
    if (V < 1) TOK_FAIL(DUET_ERR_FORMAT, "%s: the vocabulary is empty", path);
    tokens = duet_calloc((size_t)V, sizeof *tokens);
    lens = duet_calloc((size_t)V, sizeof *lens);
    types = duet_calloc((size_t)V, sizeof *types);
    scores = duet_calloc((size_t)V, sizeof *scores);
    fill = duet_calloc((size_t)V, sizeof *fill);
    if (!tokens || !lens || !types || !scores || !fill || map_init(&map, V)) goto nomem;
    for (int64_t i = 0; i < vocab->len; i++) {
        const duet_json *e = &vocab->items[i];
        tokens[e->i64] = e->key;
        lens[e->i64] = e->key_len;
        types[e->i64] = DUET_TOKEN_NORMAL;
        scores[e->i64] = -1e9f; /* not made by any merge */
    }
    for (int64_t i = 0; i < nadded; i++) {
        const duet_json *a = &added->items[i], *c = duet_json_get(a, "content");
        int64_t id = duet_json_get_int(a, "id", 0);
        int special = 0;
        duet_json_as_bool(duet_json_get(a, "special"), &special);
        tokens[id] = c->str;
        lens[id] = c->len;
        types[id] = special ? DUET_TOKEN_CONTROL : DUET_TOKEN_USER_DEFINED;
        scores[id] = 0.0f;
    }
    for (int64_t id = 0; id < V; id++) {
        if (tokens[id]) continue;
        fill[id] = duet_alloc(40);
        if (!fill[id]) goto nomem;
        lens[id] = snprintf(fill[id], 40, "<duet_unused_%lld>", (long long)id);
        tokens[id] = fill[id];
        types[id] = DUET_TOKEN_UNUSED;
    }
    for (int64_t id = 0; id < V; id++) map_put(&map, tokens[id], lens[id], (int32_t)id);
    const char *unk = duet_json_get_str(model, "unk_token", NULL);

    duet_tokenizer_vocab v;
    duet_tokenizer_vocab_default(&v);
    v.n = V;
    v.tokens = tokens;
    v.token_lens = lens;
    v.types = types;
    if (unk) {
        v.unk = map_get(&map, unk, (int64_t)strlen(unk));
        if (v.unk >= 0) types[v.unk] = DUET_TOKEN_UNKNOWN;
    }
    /* merges: "a b" strings, or ["a", "b"] pairs joined into one buffer */
    const int64_t M = merges->len;
    merge_s = duet_calloc((size_t)(M ? M : 1), sizeof *merge_s);
    merge_l = duet_calloc((size_t)(M ? M : 1), sizeof *merge_l);
    if (!merge_s || !merge_l) goto nomem;
    int64_t pair_bytes = 0;
    for (int64_t r = 0; r < M; r++) {
        const duet_json *e = &merges->items[r];
        if (e->type == DUET_JSON_ARRAY && e->len == 2 && e->items[0].type == DUET_JSON_STRING &&
            e->items[1].type == DUET_JSON_STRING)
            pair_bytes += e->items[0].len + e->items[1].len + 1;
        else if (e->type != DUET_JSON_STRING)
            TOK_FAIL(DUET_ERR_FORMAT, "%s: model.merges[%lld] is neither \"a b\" nor [\"a\", "
                     "\"b\"]", path, (long long)r);
    }
    pairs = duet_alloc((size_t)pair_bytes + 1);
    if (!pairs) goto nomem;
    for (int64_t r = 0, o = 0; r < M; r++) {
        const duet_json *e = &merges->items[r];
        if (e->type == DUET_JSON_STRING) {
            merge_s[r] = e->str;
            merge_l[r] = e->len;
        } else {
            merge_s[r] = pairs + o;
            memcpy(pairs + o, e->items[0].str, (size_t)e->items[0].len);
            pairs[o + e->items[0].len] = ' ';
            memcpy(pairs + o + e->items[0].len + 1, e->items[1].str, (size_t)e->items[1].len);
            merge_l[r] = e->items[0].len + 1 + e->items[1].len;
            o += merge_l[r];
        }
    }

    /* tokenizer_config.json (and config.json) beside: specials, bos, chat template */
    char dir[4096], side[4200];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    join(side, sizeof side, dir, "tokenizer_config.json");
    if (exists(side) && !(cfg = read_json(side))) goto fail;
    join(side, sizeof side, dir, "config.json");
    if (exists(side) && !(mcfg = read_json(side))) goto fail;
    const char *bos = cfg ? str_or_content(cfg, "bos_token") : NULL;
    const char *eos = cfg ? str_or_content(cfg, "eos_token") : NULL;
    v.bos = bos ? map_get(&map, bos, (int64_t)strlen(bos)) : -1;
    v.eos = eos ? map_get(&map, eos, (int64_t)strlen(eos)) : -1;
    int64_t id;
    if (v.bos < 0 && mcfg && duet_json_as_int(duet_json_get(mcfg, "bos_token_id"), &id) &&
        id >= 0 && id < V)
        v.bos = (int32_t)id;
    if (v.eos < 0 && mcfg && duet_json_as_int(duet_json_get(mcfg, "eos_token_id"), &id) &&
        id >= 0 && id < V)
        v.eos = (int32_t)id;
    v.add_bos = !byte_level; /* SentencePiece models add bos unless told otherwise */
    if (cfg) duet_json_as_bool(duet_json_get(cfg, "add_bos_token"), &v.add_bos);
    if (cfg) duet_json_as_bool(duet_json_get(cfg, "add_eos_token"), &v.add_eos);
    if (v.add_bos && v.bos < 0) v.add_bos = 0;

    if (byte_level) {
        const char *re = split_regex(duet_json_get(root, "pre_tokenizer"));
        v.pre = "gpt2";
        if (re && strstr(re, "\\p{N}{1,3}")) v.pre = "llama3";
        else if (re && strstr(re, "(?i:'s|'t|'re|'ve|'m|'ll|'d)") && strstr(re, "\\p{N}|"))
            v.pre = "qwen2";
        int ign;
        if (duet_json_as_bool(duet_json_get(model, "ignore_merges"), &ign)) v.ignore_merges = ign;
        else v.ignore_merges = 0;
        v.merges = merge_s;
        v.merge_lens = merge_l;
        v.n_merges = M;
        t = duet_tokenizer_new_gpt2(&v);
    } else {
        /* pieces made by merges score -(rank of the first merge making them) */
        char *tmp = NULL;
        int64_t tcap = 0;
        for (int64_t r = M - 1; r >= 0; r--) {
            const char *sp = memchr(merge_s[r], ' ', (size_t)merge_l[r]);
            if (!sp) continue;
            int64_t la = sp - merge_s[r], lb = merge_l[r] - la - 1;
            if (la + lb > tcap) {
                duet_free(tmp);
                tcap = 2 * (la + lb) + 64;
                tmp = duet_alloc((size_t)tcap);
                if (!tmp) goto nomem;
            }
            memcpy(tmp, merge_s[r], (size_t)la);
            memcpy(tmp + la, sp + 1, (size_t)lb);
            int32_t out = map_get(&map, tmp, la + lb);
            if (out >= 0 && types[out] == DUET_TOKEN_NORMAL) scores[out] = -(float)r;
        }
        duet_free(tmp);
        for (int64_t i = 0; byte_fallback && i < V; i++)
            if (lens[i] == 6 && memcmp(tokens[i], "<0x", 3) == 0 && tokens[i][5] == '>' &&
                types[i] == DUET_TOKEN_NORMAL)
                types[i] = DUET_TOKEN_BYTE;
        v.scores = scores;
        v.add_space_prefix = spm_prefix(root);
        t = duet_tokenizer_new_spm(&v);
    }
    if (!t) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", duet_last_error());
        TOK_FAIL(DUET_ERR_FORMAT, "%s: %s", path, msg);
    }
    if (chat_template && cfg) {
        const duet_json *ct = duet_json_get(cfg, "chat_template");
        const char *s = duet_json_as_str(ct);
        /* a list of named templates: take "default" (or the first) */
        for (int64_t i = 0; !s && ct && ct->type == DUET_JSON_ARRAY && i < ct->len; i++)
            if (strcmp(duet_json_get_str(&ct->items[i], "name", ""), "default") == 0 || i == 0)
                s = duet_json_get_str(&ct->items[i], "template", NULL);
        if (s && !(*chat_template = loaders_strndup(s, (int64_t)strlen(s)))) goto nomem;
    }
    goto done;
nomem:
    duet_set_error(DUET_ERR_NOMEM, "%s: out of memory", path);
fail:
    duet_tokenizer_free(t);
    t = NULL;
done:
    for (int64_t i = 0; fill && i < V; i++) duet_free(fill[i]);
    duet_free(fill);
    duet_free(tokens);
    duet_free(lens);
    duet_free(types);
    duet_free(scores);
    duet_free(merge_s);
    duet_free(merge_l);
    duet_free(pairs);
    map_free(&map);
    duet_json_free(cfg);
    duet_json_free(mcfg);
    duet_json_free(root);
    return t;
}

/* ==== the weights ========================================================= */

typedef struct hf_src {
    const char *dir;
    duet_st **st; /* the shards */
    int nst;
} hf_src;

static void hf_owner_free(void *p) {
    hf_src *s = p;
    for (int i = 0; i < s->nst; i++) duet_st_close(s->st[i]);
    duet_free(s->st);
    duet_free(s);
}

/* duet's name -> Hugging Face's. 0 on success. */
static int hf_tensor_name(const char *name, char *out, size_t cap) {
    static const char *const globals[][2] = {
        {"tok_embeddings.weight", "model.embed_tokens.weight"},
        {"norm.weight", "model.norm.weight"},
        {"output.weight", "lm_head.weight"},
    };
    static const char *const layer[][2] = {
        {"attention_norm.weight", "input_layernorm.weight"},
        {"attention.wq.weight", "self_attn.q_proj.weight"},
        {"attention.wq.bias", "self_attn.q_proj.bias"},
        {"attention.wk.weight", "self_attn.k_proj.weight"},
        {"attention.wk.bias", "self_attn.k_proj.bias"},
        {"attention.wv.weight", "self_attn.v_proj.weight"},
        {"attention.wv.bias", "self_attn.v_proj.bias"},
        {"attention.wo.weight", "self_attn.o_proj.weight"},
        {"ffn_norm.weight", "post_attention_layernorm.weight"},
        {"feed_forward.w1.weight", "mlp.gate_proj.weight"},
        {"feed_forward.w2.weight", "mlp.down_proj.weight"},
        {"feed_forward.w3.weight", "mlp.up_proj.weight"},
    };
    for (size_t i = 0; i < sizeof globals / sizeof *globals; i++)
        if (strcmp(name, globals[i][0]) == 0) {
            snprintf(out, cap, "%s", globals[i][1]);
            return 0;
        }
    int l, used = 0;
    if (sscanf(name, "layers.%d.%n", &l, &used) != 1 || used == 0) return -1;
    for (size_t i = 0; i < sizeof layer / sizeof *layer; i++)
        if (strcmp(name + used, layer[i][0]) == 0) {
            snprintf(out, cap, "model.layers.%d.%s", l, layer[i][1]);
            return 0;
        }
    return -1;
}

/* The shard holding `name` and its index there, or NULL. */
static duet_st *hf_find(const hf_src *s, const char *name, int *idx) {
    for (int i = 0; i < s->nst; i++) {
        *idx = duet_st_find(s->st[i], name);
        if (*idx >= 0) return s->st[i];
    }
    return NULL;
}

static duet_status hf_get(void *ud, const char *name, int ndim, const int64_t *shape,
                          tf_ext_weight *w) {
    const hf_src *s = ud;
    char hn[128];
    int idx;
    if (hf_tensor_name(name, hn, sizeof hn))
        return duet_set_error(DUET_ERR_INTERNAL, "%s: no Hugging Face name for '%s'", s->dir, name);
    duet_st *st = hf_find(s, hn, &idx);
    if (!st)
        return duet_set_error(DUET_ERR_FORMAT, "%s: tensor '%s' is missing from the safetensors "
                              "file(s)", s->dir, hn);
    duet_tensor t;
    duet_status r = duet_st_tensor(st, idx, &t);
    if (r != DUET_OK) return r;
    int same = t.ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t.shape[d] == shape[d];
    if (!same) {
        char a[64], b[64];
        duet_tensor like;
        duet_tensor_init(&like, t.dtype, ndim, shape, NULL);
        return duet_set_error(DUET_ERR_FORMAT, "%s: tensor '%s' is %s; config.json needs %s",
                              s->dir, hn, duet_tensor_describe(&t, a, sizeof a),
                              duet_tensor_describe(&like, b, sizeof b));
    }
    switch (t.dtype) {
    case DUET_DTYPE_F32: w->type = DUET_QTYPE_F32; break;
    case DUET_DTYPE_F16: w->type = DUET_QTYPE_F16; break;
    case DUET_DTYPE_BF16: w->type = DUET_QTYPE_BF16; break;
    default:
        return duet_set_error(DUET_ERR_UNSUPPORTED, "%s: tensor '%s' is %s; duet reads F32, F16 "
                              "and BF16 weights", s->dir, hn, duet_dtype_name(t.dtype));
    }
    w->data = t.data;
    return DUET_OK;
}

/* Opens model.safetensors or the shards of model.safetensors.index.json. */
static duet_status hf_open_weights(const char *dir, hf_src *s) {
    char path[4200];
    join(path, sizeof path, dir, "model.safetensors.index.json");
    if (exists(path)) {
        duet_json *idx = read_json(path);
        if (!idx) return DUET_ERR_FORMAT;
        const duet_json *wm = duet_json_get(idx, "weight_map");
        duet_status st = DUET_OK;
        if (!wm || wm->type != DUET_JSON_OBJECT || wm->len < 1) {
            st = duet_set_error(DUET_ERR_FORMAT, "%s: no \"weight_map\" object", path);
        } else {
            s->st = duet_calloc((size_t)wm->len, sizeof *s->st);
            const char **names = duet_calloc((size_t)wm->len, sizeof *names);
            if (!s->st || !names) st = duet_set_error(DUET_ERR_NOMEM, "%s: out of memory", path);
            for (int64_t i = 0; st == DUET_OK && i < wm->len; i++) {
                const char *f = duet_json_as_str(&wm->items[i]);
                if (!f || strchr(f, '/')) {
                    st = duet_set_error(DUET_ERR_FORMAT, "%s: weight_map[\"%s\"] must be a file "
                                        "name in the folder", path, wm->items[i].key);
                    break;
                }
                int seen = 0;
                for (int k = 0; k < s->nst && !seen; k++) seen = strcmp(names[k], f) == 0;
                if (seen) continue;
                char shard[4200];
                join(shard, sizeof shard, dir, f);
                s->st[s->nst] = duet_st_open(shard);
                if (!s->st[s->nst]) {
                    st = DUET_ERR_FORMAT;
                    break;
                }
                names[s->nst++] = f;
            }
            duet_free(names);
        }
        duet_json_free(idx);
        return st;
    }
    join(path, sizeof path, dir, "model.safetensors");
    if (!exists(path))
        return duet_set_error(DUET_ERR_IO, "%s: no model.safetensors or "
                              "model.safetensors.index.json (PyTorch .bin weights are not read; "
                              "convert them to safetensors)", dir);
    s->st = duet_calloc(1, sizeof *s->st);
    if (!s->st) return duet_set_error(DUET_ERR_NOMEM, "%s: out of memory", dir);
    s->st[0] = duet_st_open(path);
    if (!s->st[0]) return DUET_ERR_FORMAT;
    s->nst = 1;
    return DUET_OK;
}

/* ==== config.json ========================================================= */

/* Llama 3's frequency divisors (Hugging Face _compute_llama3_parameters):
 * wavelengths above old_ctx/low are slowed by factor, below old_ctx/high
 * kept, and smoothly blended between. */
static void llama3_divisors(float *div, int64_t HS, double theta, double factor, double low,
                            double high, double old_ctx) {
    const double lo_wave = old_ctx / low, hi_wave = old_ctx / high, two_pi = 6.283185307179586;
    for (int64_t i = 0; i < HS / 2; i++) {
        const double freq = pow(theta, -2.0 * (double)i / (double)HS);
        const double wave = two_pi / freq;
        double nf;
        if (wave < hi_wave) nf = freq;
        else if (wave > lo_wave) nf = freq / factor;
        else {
            const double smooth = (old_ctx / wave - low) / (high - low);
            nf = (1.0 - smooth) * freq / factor + smooth * freq;
        }
        div[i] = (float)(freq / nf);
    }
}

#define CFG_FAIL(st_, ...)                                                                   \
    do {                                                                                     \
        st = duet_set_error(st_, __VA_ARGS__);                                               \
        goto done;                                                                           \
    } while (0)

/* A required integer member of config.json. */
static int cfg_int(const duet_json *c, const char *path, const char *key, int64_t *out) {
    if (duet_json_as_int(duet_json_get(c, key), out)) return 0;
    duet_set_error(DUET_ERR_FORMAT, "%s: \"%s\" is missing or not a whole number", path, key);
    return -1;
}

duet_status hf_open(const char *dir, const duet_model_params *mp, duet_model *out) {
    char path[4200];
    join(path, sizeof path, dir, "config.json");
    duet_json *c = read_json(path);
    if (!c) return exists(path) ? DUET_ERR_FORMAT : DUET_ERR_IO;
    duet_status st = DUET_OK;
    float *divs = NULL;
    hf_src *src = NULL;
    const duet_json *archs = duet_json_get(c, "architectures");
    const char *arch = archs && archs->type == DUET_JSON_ARRAY && archs->len > 0
                           ? duet_json_as_str(&archs->items[0])
                           : NULL;
    const char *mtype = duet_json_get_str(c, "model_type", "");
    duet_tf_arch a;
    if ((arch && (strcmp(arch, "LlamaForCausalLM") == 0 ||
                  strcmp(arch, "MistralForCausalLM") == 0)) ||
        (!arch && (strcmp(mtype, "llama") == 0 || strcmp(mtype, "mistral") == 0)))
        a = DUET_TF_ARCH_LLAMA;
    else if ((arch && strcmp(arch, "Qwen2ForCausalLM") == 0) || (!arch && !strcmp(mtype, "qwen2")))
        a = DUET_TF_ARCH_QWEN2;
    else
        CFG_FAIL(DUET_ERR_UNSUPPORTED, "%s: architecture '%s' (model_type '%s'); duet runs "
                 "LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM", path,
                 arch ? arch : "(none)", mtype);
    snprintf(out->arch, sizeof out->arch, "%s", a == DUET_TF_ARCH_QWEN2 ? "qwen2" : "llama");
    const char *base = strrchr(dir, '/');
    snprintf(out->name, sizeof out->name, "%s", base && base[1] ? base + 1 : dir);

    duet_tf_params p;
    duet_tf_params_default(&p, a);
    int64_t ctx = 0;
    if (cfg_int(c, path, "hidden_size", &p.dim) ||
        cfg_int(c, path, "intermediate_size", &p.hidden) ||
        cfg_int(c, path, "num_hidden_layers", &p.layers) ||
        cfg_int(c, path, "num_attention_heads", &p.heads) ||
        cfg_int(c, path, "vocab_size", &p.vocab)) {
        st = DUET_ERR_FORMAT;
        goto done;
    }
    p.kv_heads = duet_json_get_int(c, "num_key_value_heads", p.heads);
    ctx = duet_json_get_int(c, "max_position_embeddings", 0);
    p.norm_eps = (float)duet_json_get_num(c, "rms_norm_eps", 1e-6);
    p.rope_theta = (float)duet_json_get_num(c, "rope_theta", 10000.0);
    int tie = 0, flag = 0;
    duet_json_as_bool(duet_json_get(c, "tie_word_embeddings"), &tie);
    const char *act = duet_json_get_str(c, "hidden_act", "silu");
    if (strcmp(act, "silu") != 0)
        CFG_FAIL(DUET_ERR_UNSUPPORTED, "%s: hidden_act '%s'; duet's llama MLP is SwiGLU (silu)",
                 path, act);
    if ((duet_json_as_bool(duet_json_get(c, "attention_bias"), &flag) && flag) ||
        (duet_json_as_bool(duet_json_get(c, "mlp_bias"), &flag) && flag))
        CFG_FAIL(DUET_ERR_UNSUPPORTED, "%s: attention_bias / mlp_bias are not supported", path);
    int64_t hd;
    if (p.heads > 0 && duet_json_as_int(duet_json_get(c, "head_dim"), &hd) && hd != p.dim / p.heads)
        CFG_FAIL(DUET_ERR_UNSUPPORTED, "%s: head_dim %lld differs from hidden_size / "
                 "num_attention_heads = %lld", path, (long long)hd,
                 (long long)(p.dim / p.heads));
    p.ctx = loaders_ctx(mp, ctx);
    if (duet_tf_params_check(&p) != DUET_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", duet_last_error());
        CFG_FAIL(DUET_ERR_FORMAT, "%s: a config duet cannot run: %s", path, msg);
    }

    /* RoPE scaling */
    float scale = 1.0f;
    const duet_json *rs = duet_json_get(c, "rope_scaling");
    if (rs && rs->type == DUET_JSON_OBJECT) {
        const char *ty = duet_json_get_str(rs, "rope_type", duet_json_get_str(rs, "type", ""));
        const double factor = duet_json_get_num(rs, "factor", 1.0);
        if (!(factor > 0.0))
            CFG_FAIL(DUET_ERR_FORMAT, "%s: rope_scaling.factor %g must be > 0", path, factor);
        if (strcmp(ty, "linear") == 0) {
            scale = (float)(1.0 / factor);
        } else if (strcmp(ty, "llama3") == 0) {
            const double low = duet_json_get_num(rs, "low_freq_factor", 1.0);
            const double high = duet_json_get_num(rs, "high_freq_factor", 4.0);
            const double old = duet_json_get_num(rs, "original_max_position_embeddings", 8192.0);
            if (!(high > low) || !(low > 0) || !(old > 0))
                CFG_FAIL(DUET_ERR_FORMAT, "%s: rope_scaling llama3 needs high_freq_factor > "
                         "low_freq_factor > 0", path);
            divs = duet_alloc((size_t)(p.dim / p.heads / 2) * sizeof(float));
            if (!divs) CFG_FAIL(DUET_ERR_NOMEM, "%s: out of memory", path);
            llama3_divisors(divs, p.dim / p.heads, p.rope_theta, factor, low, high, old);
        } else if (strcmp(ty, "default") != 0) {
            CFG_FAIL(DUET_ERR_UNSUPPORTED, "%s: rope_scaling type '%s'; duet knows linear and "
                     "llama3", path, ty);
        }
    }

    /* weights */
    src = duet_calloc(1, sizeof *src);
    if (!src) CFG_FAIL(DUET_ERR_NOMEM, "%s: out of memory", dir);
    src->dir = dir;
    if ((st = hf_open_weights(dir, src)) != DUET_OK) goto done;
    int idx;
    p.tied = tie || !hf_find(src, "lm_head.weight", &idx);

    /* tokenizer */
    join(path, sizeof path, dir, "tokenizer.json");
    if (exists(path)) {
        out->tok = duet_tokenizer_load_hf(path, &out->chat_template);
        if (!out->tok) {
            st = DUET_ERR_FORMAT;
            goto done;
        }
    }
    tf_ext_params e = {dir, hf_get, src, 1, scale, divs, src, hf_owner_free};
    out->tf = tf_new_external(&p, &e); /* src belongs to the model now */
    src = NULL;
    if (!out->tf) st = DUET_ERR_FORMAT;
done:
    if (src) hf_owner_free(src);
    duet_free(divs);
    duet_json_free(c);
    return st;
}
