"""gen_loaders.py — model files of other programs, written from their specs
with struct/numpy (independent of duet), and PyTorch reference logits for
them, for tests/test_loaders.c (src/models/loaders.c, hf.c, gguf_export.c).

Models are tiny, with random weights:
  * GGUF (ggml docs/gguf.md, llama.cpp's tensor names and metadata keys):
      ld_llama_f32.gguf   llama, GQA, untied output, every tensor F32,
                          theta 10000, a small SentencePiece vocabulary
      ld_llama_mix.gguf   llama, tied (no output.weight), matrices in
                          F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 (token table Q8_0)
      ld_llama_kq.gguf    llama with hidden 256: ffn_down in Q4_K, Q5_K, Q6_K
      ld_llama_rope.gguf  llama, theta 500000, rope.scaling linear x4 and a
                          rope_freqs tensor (Llama 3 style), F16
      ld_qwen2_f32.gguf   qwen2: q/k/v biases, NeoX RoPE, tied, F32
      ld_qwen2_q8.gguf    the same weights' shapes in Q8_0 (biases F32)
      ld_tok_spm.gguf     tokenizer-only files (no tensors): SentencePiece
      ld_tok_gpt2.gguf    and byte-level BPE vocabularies + chat templates
      ld_bad_*.gguf       one defect each (arch, missing tensor, shape, MoE)
  * llama2.c (export.py legacy_export / version1_export; tokenizer.bin as
    its tokenizer.py writes it: ' ' for the word boundary, bos "\n<s>\n"):
      ld_l2c_legacy.bin   legacy header, shared classifier, freq_cis tables
      ld_l2c_v1.bin       "ak42" version 1, own classifier (weights in the
                          v1 order: norms first)
      ld_l2c_tokenizer.bin  the 40-token vocabulary of the GGUF llama
      ld_l2c_bad_*.bin    truncated; an int8 (version 2) export
  * Hugging Face folders: safetensors written from the format description
    (u64 header length, JSON header padded to 8, data), config.json,
    tokenizer.json, tokenizer_config.json:
      ld_hf_llama/        LlamaForCausalLM, BF16, q/k rows in Hugging Face's
                          rotate_half order (the reference runs rotate_half
                          on them; the generator asserts this equals the
                          Meta model of the un-permuted rows), llama3
                          rope_scaling; Llama-2-style tokenizer.json
      ld_hf_qwen2/        Qwen2ForCausalLM, F16 in two shards with
                          model.safetensors.index.json, tied; byte-level
                          tokenizer.json with Llama 3's Split regex
      ld_hf_bad_*/        an unknown architecture; a missing tensor
    Quantized weights are random blocks of each ggml layout with scales
    chosen for unit-ish activations; the reference runs on their
    dequantization (gen_quant.dequant, ggml's arithmetic in float32).
  * Reference: a plain PyTorch float64 llama/qwen2 (RMSNorm, RoPE on
    adjacent pairs or NeoX halves with theta^(-2i/HS), linear position
    scale and per-pair divisors, grouped-query attention by
    repeat_interleave, SwiGLU), run on a fixed token sequence: logits of
    every position, and a greedy continuation with its top-2 margins.
Writes tests/fixtures/ld_*.gguf and ld_expect.bin (DUETFIX1 arrays named
<model>.ids, .logits, .greedy, .margin; tok_* encodings).

Run: cd tests/ref && /usr/bin/python3 gen_loaders.py
"""
import math
import os
import struct

import numpy as np
import torch

import fixture
import gen_gguf
import gen_quant
import gen_tokenizers_real as tr

F64 = torch.float64
STRING, ARRAY, UINT32, INT32, FLOAT32, BOOL = (gen_gguf.STRING, gen_gguf.ARRAY, gen_gguf.UINT32,
                                               gen_gguf.INT32, gen_gguf.FLOAT32, gen_gguf.BOOL)
rng = np.random.default_rng(777)
OUT = {}  # arrays for ld_expect.bin


def fpath(name):
    return os.path.join(fixture.FIXTURES, name)


# --------------------------------------------------------------------------
# Random weights in a ggml type: (bytes, dequantized float32 values)
# --------------------------------------------------------------------------

def f16bits(x):
    return np.asarray(x, np.float16).view(np.uint16)


def put16(b, off, v):
    gen_quant.put_u16(b, off, f16bits(v))


def random_tensor(qtype, rows, cols, s):
    """rows x cols values of type qtype with magnitude about s: random quant
    fields, scales picked so the values spread over roughly [-s, s]."""
    n = rows * cols
    if qtype == "f32":
        v = (rng.uniform(-s, s, n)).astype(np.float32)
        return v.tobytes(), v
    if qtype == "f16":
        v = rng.uniform(-s, s, n).astype(np.float16)
        return v.tobytes(), v.astype(np.float32)
    if qtype == "bf16":
        v = (rng.uniform(-s, s, n).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        b = v.view(np.uint8).reshape(n, 2)
        return v.tobytes(), gen_quant.dequant("bf16", b)
    num, bs, size = gen_quant.TYPES[qtype]
    nb = n // bs
    b = rng.integers(0, 256, (nb, size), dtype=np.uint8)
    u = rng.uniform(0.6, 1.4, nb)
    if qtype == "q8_0":
        b[:, 2:34] = rng.integers(-127, 128, (nb, 32)).astype(np.int8).view(np.uint8)
        put16(b, 0, s / 127 * u)
    elif qtype in ("q4_0",):
        put16(b, 0, s / 8 * u)
    elif qtype == "q5_0":
        put16(b, 0, s / 16 * u)
    elif qtype == "q4_1":
        put16(b, 0, 2 * s / 15 * u)
        put16(b, 2, -s * rng.uniform(0.8, 1.2, nb))
    elif qtype == "q5_1":
        put16(b, 0, 2 * s / 31 * u)
        put16(b, 2, -s * rng.uniform(0.8, 1.2, nb))
    elif qtype == "q4_K":  # d*sc*q - dmin*m with sc, m < 64, q < 16
        put16(b, 0, 2 * s / (15 * 48) * u)
        put16(b, 2, s / 40 * rng.uniform(0.8, 1.2, nb))
    elif qtype == "q5_K":  # q < 32
        put16(b, 0, 2 * s / (31 * 48) * u)
        put16(b, 2, s / 40 * rng.uniform(0.8, 1.2, nb))
    elif qtype == "q6_K":  # d*sc*(q-32), sc int8
        b[:, 192:208] = rng.integers(-100, 101, (nb, 16)).astype(np.int8).view(np.uint8)
        put16(b, 208, s / (32 * 60) * u)
    else:
        raise ValueError(qtype)
    vals = gen_quant.dequant(qtype, b)
    assert np.all(np.isfinite(vals)) and np.abs(vals).max() < 8 * s, qtype
    return b.tobytes(), vals


# --------------------------------------------------------------------------
# Reference model (float64)
# --------------------------------------------------------------------------

def rmsnorm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope(x, pos, cfg):
    """x [T, H, HS]; pair i turns by pos * scale * theta^(-2i/HS) / factor_i."""
    T, H, HS = x.shape
    P = HS // 2
    i = torch.arange(P, dtype=F64)
    freq = cfg["theta"] ** (-2.0 * i / HS)
    if cfg.get("factors") is not None:
        freq = freq / torch.tensor(cfg["factors"], dtype=F64)
    ang = (pos.to(F64) * cfg.get("scale", 1.0))[:, None] * freq[None, :]
    c, s = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
    if cfg["neox"]:
        x0, x1 = x[..., :P], x[..., P:]
        return torch.cat([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1).reshape(T, H, HS)


def forward(W, cfg, ids):
    """W: duet names -> float64 tensors. Returns logits [T, V]."""
    C, NH, NKV = cfg["C"], cfg["NH"], cfg["NKV"]
    HS = C // NH
    ids = torch.tensor(ids)
    T = len(ids)
    pos = torch.arange(T)
    x = W["tok_embeddings.weight"][ids]
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    for l in range(cfg["L"]):
        p = "layers.%d." % l
        h = rmsnorm(x, W[p + "attention_norm.weight"], cfg["eps"])
        def lin(name, bias=True):
            y = h @ W[p + name + ".weight"].T
            if bias and (p + name + ".bias") in W:
                y = y + W[p + name + ".bias"]
            return y
        q = lin("attention.wq").reshape(T, NH, HS)
        k = lin("attention.wk").reshape(T, NKV, HS)
        v = lin("attention.wv").reshape(T, NKV, HS)
        q, k = rope(q, pos, cfg), rope(k, pos, cfg)
        k = k.repeat_interleave(NH // NKV, dim=1)
        v = v.repeat_interleave(NH // NKV, dim=1)
        att = torch.einsum("thd,shd->hts", q, k) / math.sqrt(HS)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        o = torch.einsum("hts,shd->thd", att, v).reshape(T, C)
        x = x + o @ W[p + "attention.wo.weight"].T
        h = rmsnorm(x, W[p + "ffn_norm.weight"], cfg["eps"])
        g = h @ W[p + "feed_forward.w1.weight"].T
        u = h @ W[p + "feed_forward.w3.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ W[p + "feed_forward.w2.weight"].T
    x = rmsnorm(x, W["norm.weight"], cfg["eps"])
    out = W["tok_embeddings.weight"] if cfg["tied"] else W["output.weight"]
    return x @ out.T


def reference(name, W, cfg, ids, ngen=6):
    """Logits of ids and a greedy continuation (full recompute each step)."""
    W = {k: torch.tensor(np.asarray(v, np.float64)) for k, v in W.items()}
    logits = forward(W, cfg, ids)
    seq, greedy, margin = list(ids), [], []
    for _ in range(ngen):
        lg = forward(W, cfg, seq)[-1]
        top = torch.topk(lg, 2)
        greedy.append(int(top.indices[0]))
        margin.append(float(top.values[0] - top.values[1]))
        seq.append(greedy[-1])
    OUT[name + ".ids"] = np.array(ids, np.int32)
    OUT[name + ".logits"] = logits.numpy()
    OUT[name + ".greedy"] = np.array(greedy, np.int32)
    OUT[name + ".margin"] = np.array(margin, np.float64)


# --------------------------------------------------------------------------
# Building tiny models: duet names, shapes, types
# --------------------------------------------------------------------------

def shapes(cfg):
    C, NH, NKV, H, V = cfg["C"], cfg["NH"], cfg["NKV"], cfg["H"], cfg["V"]
    HS = C // NH
    out = [("tok_embeddings.weight", (V, C))]
    for l in range(cfg["L"]):
        p = "layers.%d." % l
        out += [(p + "attention_norm.weight", (C,)), (p + "attention.wq.weight", (NH * HS, C))]
        if cfg.get("qkv_bias"):
            out += [(p + "attention.wq.bias", (NH * HS,))]
        out += [(p + "attention.wk.weight", (NKV * HS, C))]
        if cfg.get("qkv_bias"):
            out += [(p + "attention.wk.bias", (NKV * HS,))]
        out += [(p + "attention.wv.weight", (NKV * HS, C))]
        if cfg.get("qkv_bias"):
            out += [(p + "attention.wv.bias", (NKV * HS,))]
        out += [(p + "attention.wo.weight", (C, NH * HS)), (p + "ffn_norm.weight", (C,)),
                (p + "feed_forward.w1.weight", (H, C)), (p + "feed_forward.w2.weight", (C, H)),
                (p + "feed_forward.w3.weight", (H, C))]
    out += [("norm.weight", (C,))]
    if not cfg["tied"]:
        out += [("output.weight", (V, C))]
    return out


def make_weights(cfg, typeof):
    """typeof(name) -> ggml type name for matrices. Returns (W values, bytes, types)."""
    W, B, TY = {}, {}, {}
    for name, shp in shapes(cfg):
        if len(shp) == 1:
            if name.endswith("norm.weight"):
                v = (1.0 + 0.2 * rng.uniform(-1, 1, shp[0])).astype(np.float32)
            else:
                v = (0.3 * rng.uniform(-1, 1, shp[0])).astype(np.float32)
            W[name], B[name], TY[name] = v, v.tobytes(), "f32"
            continue
        rows, cols = shp
        s = 1.0 if name == "tok_embeddings.weight" else math.sqrt(3.0 / cols)
        t = typeof(name)
        b, v = random_tensor(t, rows, cols, s)
        W[name], B[name], TY[name] = v.reshape(rows, cols), b, t
    return W, B, TY


GGUF_LAYER = {
    "attention_norm.weight": "attn_norm.weight", "attention.wq.weight": "attn_q.weight",
    "attention.wq.bias": "attn_q.bias", "attention.wk.weight": "attn_k.weight",
    "attention.wk.bias": "attn_k.bias", "attention.wv.weight": "attn_v.weight",
    "attention.wv.bias": "attn_v.bias", "attention.wo.weight": "attn_output.weight",
    "ffn_norm.weight": "ffn_norm.weight", "feed_forward.w1.weight": "ffn_gate.weight",
    "feed_forward.w2.weight": "ffn_down.weight", "feed_forward.w3.weight": "ffn_up.weight",
}
GGUF_GLOBAL = {"tok_embeddings.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
               "output.weight": "output.weight"}


def gguf_name(name):
    if name in GGUF_GLOBAL:
        return GGUF_GLOBAL[name]
    parts = name.split(".", 2)
    return "blk.%s.%s" % (parts[1], GGUF_LAYER[parts[2]])


def arch_kvs(cfg, arch, name):
    C, NH = cfg["C"], cfg["NH"]
    kvs = [("general.architecture", STRING, arch), ("general.name", STRING, name),
           (arch + ".context_length", UINT32, cfg.get("ctx", 64)),
           (arch + ".embedding_length", UINT32, C), (arch + ".block_count", UINT32, cfg["L"]),
           (arch + ".feed_forward_length", UINT32, cfg["H"]),
           (arch + ".rope.dimension_count", UINT32, C // NH),
           (arch + ".attention.head_count", UINT32, NH),
           (arch + ".attention.head_count_kv", UINT32, cfg["NKV"]),
           (arch + ".attention.layer_norm_rms_epsilon", FLOAT32, cfg["eps"]),
           (arch + ".rope.freq_base", FLOAT32, cfg["theta"])]
    if cfg.get("scale", 1.0) != 1.0:
        kvs += [(arch + ".rope.scaling.type", STRING, "linear"),
                (arch + ".rope.scaling.factor", FLOAT32, 1.0 / cfg["scale"])]
    return kvs


def write_gguf(fname, kvs, W, B, TY, extra=(), drop=(), override=None):
    tensors = []
    for name, b in B.items():
        gn = gguf_name(name)
        if gn in drop:
            continue
        shp = W[name].shape
        ne = [shp[-1]] if len(shp) == 1 else [shp[1], shp[0]]
        if override and gn in override:
            ne = override[gn]
        tensors.append((gn, ne, TY[name], b))
    tensors += list(extra)
    data = gen_gguf.gguf(kvs, tensors)
    with open(fpath(fname), "wb") as f:
        f.write(data)
    return len(data)


def cfg_base(**kw):
    cfg = dict(C=32, NH=4, NKV=2, H=64, L=2, V=40, eps=float(np.float32(1e-5)), theta=10000.0,
               tied=False, neox=False)
    cfg.update(kw)
    return cfg


# --------------------------------------------------------------------------
# A tiny SentencePiece vocabulary for the model files (40 tokens)
# --------------------------------------------------------------------------

LB = "\u2581"


def tiny_spm():
    pieces = ["<unk>", "<s>", "</s>", LB, "a", "b", "c", "d", "e", LB + "a", LB + "b", "ab", "ba",
              "cd", LB + "ab", "abc", "de", LB + "c", "ed", LB + "d", "bad", LB + "bad", "cab",
              LB + "cab", "dd", "ee", "aa", "bb", "cc", LB + "e", "ec", "ce", "da", "ad", "be",
              "eb", "ac", "ca", "db", "bd"]
    assert len(pieces) == 40 and len(set(pieces)) == 40
    scores = [0.0, 0.0, 0.0] + [-(float(i)) * 0.5 for i in range(37)]
    types = [2, 3, 3] + [1] * 37
    return [p.encode() for p in pieces], np.array(scores, np.float32), types


def spm_kvs(toks, scores, types, bos=1, eos=2, unk=0, add_bos=True, template=None):
    kvs = [("tokenizer.ggml.model", STRING, "llama"),
           ("tokenizer.ggml.tokens", ARRAY, (STRING, toks)),
           ("tokenizer.ggml.scores", ARRAY, (FLOAT32, [float(s) for s in scores])),
           ("tokenizer.ggml.token_type", ARRAY, (INT32, list(types))),
           ("tokenizer.ggml.bos_token_id", UINT32, bos), ("tokenizer.ggml.eos_token_id", UINT32, eos),
           ("tokenizer.ggml.unknown_token_id", UINT32, unk),
           ("tokenizer.ggml.add_bos_token", BOOL, int(add_bos))]
    if template:
        kvs.append(("tokenizer.chat_template", STRING, template))
    return kvs


CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
          " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
          "{% endif %}")
LLAMA2_TPL = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
              "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}"
              "{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
              "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
              "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
              "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
              "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
              "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")


def pack_strings(prefix, strings, encs):
    d, o = tr.pack(strings)
    OUT[prefix + ".str"], OUT[prefix + ".str_off"] = d, o
    d, o = tr.pack_ids(encs)
    OUT[prefix + ".enc"], OUT[prefix + ".enc_off"] = d, o


# --------------------------------------------------------------------------
# GGUF models
# --------------------------------------------------------------------------

IDS = [1, 9, 11, 5, 14, 3, 30, 21, 7]


def gen_gguf_models():
    toks, scores, types = tiny_spm()
    # llama, all F32, untied, with a tokenizer
    cfg = cfg_base()
    W, B, TY = make_weights(cfg, lambda n: "f32")
    kvs = arch_kvs(cfg, "llama", "tiny llama f32") + spm_kvs(toks, scores, types, template=LLAMA2_TPL)
    write_gguf("ld_llama_f32.gguf", kvs, W, B, TY)
    reference("llama_f32", W, cfg, IDS)
    # its tokenizer, by the independent SentencePiece loop
    vocab = (toks, scores, types)
    strs = [b"ab ba", b"abc cab bad", b"dead beef", b"a  b", b"cx", b""]
    pack_strings("tiny_spm", strs, [tr.spm_encode(vocab, s, 0, 1) for s in strs])

    # llama, tied, matrices in every 32-block and 16-bit type
    cfg = cfg_base(tied=True)
    order = ["f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"]
    mats = [n for n, s in shapes(cfg) if len(s) == 2 and n != "tok_embeddings.weight"]
    pick = {n: order[i % len(order)] for i, n in enumerate(mats)}
    pick["tok_embeddings.weight"] = "q8_0"
    W, B, TY = make_weights(cfg, lambda n: pick[n])
    write_gguf("ld_llama_mix.gguf", arch_kvs(cfg, "llama", "tiny llama mix"), W, B, TY)
    reference("llama_mix", W, cfg, IDS)

    # llama with hidden 256: ffn_down rows of 256 in the K-quants
    cfg = cfg_base(H=256, L=3, NKV=4)
    ktypes = ["q4_K", "q5_K", "q6_K"]
    def kpick(n):
        if n.endswith("w2.weight"):
            return ktypes[int(n.split(".")[1])]
        if "feed_forward" in n:
            return "q4_0"
        return "f16"
    W, B, TY = make_weights(cfg, kpick)
    write_gguf("ld_llama_kq.gguf", arch_kvs(cfg, "llama", "tiny llama k-quants"), W, B, TY)
    reference("llama_kq", W, cfg, IDS)

    # llama, RoPE with theta 500000, linear scaling x4 and per-pair divisors
    HS = 8
    factors = [1.0, 2.5, 7.0, 16.0][:HS // 2]
    cfg = cfg_base(L=1, theta=500000.0, scale=0.25, factors=factors)
    W, B, TY = make_weights(cfg, lambda n: "f16")
    extra = [("rope_freqs.weight", [HS // 2], "f32", np.array(factors, np.float32).tobytes())]
    write_gguf("ld_llama_rope.gguf", arch_kvs(cfg, "llama", "tiny llama rope"), W, B, TY, extra=extra)
    reference("llama_rope", W, cfg, IDS)

    # qwen2: biases on q, k, v, NeoX RoPE, tied
    for tname, ty in (("qwen2_f32", "f32"), ("qwen2_q8", "q8_0")):
        cfg = cfg_base(L=1, tied=True, neox=True, qkv_bias=True, theta=1000000.0)
        W, B, TY = make_weights(cfg, lambda n: ty)
        write_gguf("ld_%s.gguf" % tname, arch_kvs(cfg, "qwen2", "tiny " + tname), W, B, TY)
        reference(tname, W, cfg, IDS)

    # bad files: from a small Q4_0 llama of one layer
    cfg = cfg_base(L=1)
    W, B, TY = make_weights(cfg, lambda n: "q4_0")
    kvs = arch_kvs(cfg, "llama", "bad")
    write_gguf("ld_bad_arch.gguf", [(k.replace("llama.", "mamba."), t, v) if k != "general.architecture"
                                    else (k, t, "mamba") for k, t, v in kvs], W, B, TY)
    write_gguf("ld_bad_missing.gguf", kvs, W, B, TY, drop=("blk.0.ffn_up.weight",))
    write_gguf("ld_bad_shape.gguf", kvs, W, B, TY, override={"blk.0.attn_k.weight": [32, 8]})
    write_gguf("ld_bad_moe.gguf", kvs + [("llama.expert_count", UINT32, 8)], W, B, TY)
    write_gguf("ld_bad_nokey.gguf", [x for x in kvs if x[0] != "llama.block_count"], W, B, TY)


# --------------------------------------------------------------------------
# Tokenizer-only GGUF files
# --------------------------------------------------------------------------

def gen_gguf_tokenizers():
    strs = [s for s in tr.test_strings() if len(s) < 200][:60]
    # SentencePiece with byte tokens (gen_tokenizers_real config "a")
    toks, scores, types = tr.build_spm_vocab(True)
    kvs = [("general.architecture", STRING, "llama")] + spm_kvs(toks, scores, types, template=CHATML)
    kvs.append(("tokenizer.ggml.add_space_prefix", BOOL, 1))
    with open(fpath("ld_tok_spm.gguf"), "wb") as f:
        f.write(gen_gguf.gguf(kvs, []))
    vocab = (toks, scores, types)
    pack_strings("tok_spm", strs, [tr.spm_encode(vocab, s, 1, 1) for s in strs])
    OUT["tok_spm.n"] = np.array([len(toks)], np.int32)
    # byte-level BPE, Llama 3 pre-tokenizer (ignore_merges as llama3 does)
    toks, types, merges = tr.build_gpt2_vocab()
    stored = [t if ty in (tr.T_CONTROL, tr.T_USER) else tr.to_bl(t) for t, ty in zip(toks, types)]
    bos = toks.index(b"<|begin_of_text|>")
    eos = toks.index(b"<|end_of_text|>")
    kvs = [("general.architecture", STRING, "llama"),
           ("tokenizer.ggml.model", STRING, "gpt2"), ("tokenizer.ggml.pre", STRING, "llama-bpe"),
           ("tokenizer.ggml.tokens", ARRAY, (STRING, stored)),
           ("tokenizer.ggml.token_type", ARRAY, (INT32, list(types))),
           ("tokenizer.ggml.merges", ARRAY, (STRING, [tr.to_bl(a) + b" " + tr.to_bl(b) for a, b in merges])),
           ("tokenizer.ggml.bos_token_id", UINT32, bos), ("tokenizer.ggml.eos_token_id", UINT32, eos),
           ("tokenizer.ggml.add_bos_token", BOOL, 1),
           ("tokenizer.chat_template", STRING, CHATML)]
    with open(fpath("ld_tok_gpt2.gguf"), "wb") as f:
        f.write(gen_gguf.gguf(kvs, []))
    pack_strings("tok_gpt2", strs, [tr.gpt2_encode((toks, types, merges), "llama3", s, 1, 1) for s in strs])
    with open(fpath("ld_bad_tok.gguf"), "wb") as f:  # a tokenizer kind duet does not read
        f.write(gen_gguf.gguf([("general.architecture", STRING, "llama"),
                               ("tokenizer.ggml.model", STRING, "bert"),
                               ("tokenizer.ggml.tokens", ARRAY, (STRING, ["[CLS]", "a"]))], []))
    OUT["tok_gpt2.n"] = np.array([len(toks)], np.int32)
    OUT["tok_gpt2.bos"] = np.array([bos, eos], np.int32)


# --------------------------------------------------------------------------
# llama2.c checkpoints (karpathy/llama2.c export.py: legacy_export and
# version1_export) and tokenizer.bin (tokenizer.py export)
# --------------------------------------------------------------------------

def f32bytes(a):
    return np.ascontiguousarray(a, dtype="<f4").tobytes()


def gen_llama2c():
    cfgs = {"l2c_legacy": (cfg_base(C=16, NH=2, NKV=1, H=40, L=2, V=40, tied=True), 0),
            "l2c_v1": (cfg_base(C=16, NH=4, NKV=2, H=24, L=3, V=40, tied=False), 1)}
    seq = 16
    for name, (cfg, version) in cfgs.items():
        W, B, TY = make_weights(cfg, lambda n: "f32")
        C, H, L, V = cfg["C"], cfg["H"], cfg["L"], cfg["V"]
        HS = C // cfg["NH"]
        lay = lambda key: [W["layers.%d.%s" % (l, key)] for l in range(L)]
        hdr = [C, H, L, cfg["NH"], cfg["NKV"], V, seq]
        if version == 0:
            if not cfg["tied"]:
                hdr[5] = -V
            out = struct.pack("<7i", *hdr)
            parts = [W["tok_embeddings.weight"]] + lay("attention_norm.weight") + lay("attention.wq.weight") \
                + lay("attention.wk.weight") + lay("attention.wv.weight") + lay("attention.wo.weight") \
                + lay("ffn_norm.weight") + lay("feed_forward.w1.weight") + lay("feed_forward.w2.weight") \
                + lay("feed_forward.w3.weight") + [W["norm.weight"]]
            freqs = 1.0 / (10000.0 ** (np.arange(0, HS, 2) / HS))
            ang = np.outer(np.arange(seq), freqs)
            parts += [np.cos(ang), np.sin(ang)]  # freq_cis_real / _imag [seq, HS/2]
        else:
            out = struct.pack("<Ii", 0x616b3432, 1) + struct.pack("<7i", *hdr) + struct.pack("<B", int(cfg["tied"]))
            out += b"\0" * (256 - len(out))
            parts = lay("attention_norm.weight") + lay("ffn_norm.weight") + [W["norm.weight"], W["tok_embeddings.weight"]] \
                + lay("attention.wq.weight") + lay("attention.wk.weight") + lay("attention.wv.weight") \
                + lay("attention.wo.weight") + lay("feed_forward.w1.weight") + lay("feed_forward.w2.weight") \
                + lay("feed_forward.w3.weight")
        if not cfg["tied"]:
            parts.append(W["output.weight"])
        out += b"".join(f32bytes(p_) for p_ in parts)
        with open(fpath("ld_%s.bin" % name), "wb") as f:
            f.write(out)
        reference(name, W, cfg, IDS)
    # tokenizer.bin for the 40-token vocabulary, as llama2.c's tokenizer.py writes it
    toks, scores, types = tiny_spm()
    out = b""
    pieces = []
    for i, t in enumerate(toks):
        t = t.decode()
        if i == 1:
            t = "\n<s>\n"
        elif i == 2:
            t = "\n</s>\n"
        pieces.append(t.replace(LB, " ").encode())
    out = struct.pack("<i", max(len(p_) for p_ in pieces))
    for p_, sc in zip(pieces, scores):
        out += struct.pack("<fi", float(sc), len(p_)) + p_
    with open(fpath("ld_l2c_tokenizer.bin"), "wb") as f:
        f.write(out)
    strs = [b"ab ba", b"abc cab bad", b"dead beef", b"cx"]
    pack_strings("l2c_tok", strs, [tr.spm_encode((toks, scores, types), s_, 0, 1) for s_ in strs])
    with open(fpath("ld_l2c_bad_trunc.bin"), "wb") as f:  # a plausible header, 100 bytes of weights
        f.write(struct.pack("<7i", 32, 48, 1, 4, 2, 40, 16) + b"\0" * 100)
    with open(fpath("ld_l2c_bad_v2.bin"), "wb") as f:
        f.write(struct.pack("<Ii", 0x616b3432, 2) + b"\0" * 300)


# --------------------------------------------------------------------------
# Hugging Face folders (config.json, safetensors, tokenizer.json)
# --------------------------------------------------------------------------

HF_NAMES = {"tok_embeddings.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
            "output.weight": "lm_head.weight"}
HF_LAYER = {"attention_norm.weight": "input_layernorm.weight", "attention.wq.weight": "self_attn.q_proj.weight",
            "attention.wq.bias": "self_attn.q_proj.bias", "attention.wk.weight": "self_attn.k_proj.weight",
            "attention.wk.bias": "self_attn.k_proj.bias", "attention.wv.weight": "self_attn.v_proj.weight",
            "attention.wv.bias": "self_attn.v_proj.bias", "attention.wo.weight": "self_attn.o_proj.weight",
            "ffn_norm.weight": "post_attention_layernorm.weight", "feed_forward.w1.weight": "mlp.gate_proj.weight",
            "feed_forward.w2.weight": "mlp.down_proj.weight", "feed_forward.w3.weight": "mlp.up_proj.weight"}
ST_DTYPE = {"f32": "F32", "f16": "F16", "bf16": "BF16"}


def hf_name(name):
    if name in HF_NAMES:
        return HF_NAMES[name]
    parts = name.split(".", 2)
    return "model.layers.%s.%s" % (parts[1], HF_LAYER[parts[2]])


def write_safetensors(path, items):
    """items: list of (name, dtype string, shape, bytes); the safetensors
    layout: u64 header length, JSON header padded with spaces to 8 bytes,
    data in order."""
    import json
    hdr, off = {"__metadata__": {"format": "pt"}}, 0
    for name, dt, shp, b in items:
        hdr[name] = {"dtype": dt, "shape": list(shp), "data_offsets": [off, off + len(b)]}
        off += len(b)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(x[3] for x in items))


def hf_permute(w, n_heads):
    """Meta's q/k rows (adjacent RoPE pairs) -> Hugging Face's (rotate_half),
    as transformers' convert_llama_weights_to_hf.py permutes them."""
    rows, cols = w.shape
    return w.reshape(n_heads, rows // n_heads // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def llama3_factors(HS, theta, factor, low, high, old):
    """freq / new_freq per pair, after transformers' _compute_llama3_parameters."""
    out = []
    for i in range(HS // 2):
        freq = theta ** (-2.0 * i / HS)
        wave = 2 * math.pi / freq
        if wave < old / high:
            nf = freq
        elif wave > old / low:
            nf = freq / factor
        else:
            sm = (old / wave - low) / (high - low)
            nf = (1 - sm) * freq / factor + sm * freq
        out.append(freq / nf)
    return out


def gen_hf():
    import json
    # ---- Llama, BF16, one file, llama3 rope scaling, SentencePiece-style tokenizer.json ----
    d = fpath("ld_hf_llama")
    os.makedirs(d, exist_ok=True)
    factors = llama3_factors(8, 500000.0, 8.0, 1.0, 4.0, 32.0)
    cfg = cfg_base(L=2, theta=500000.0, eps=float(np.float32(1e-6)), factors=factors, neox=True)
    W, B, TY = make_weights(cfg, lambda n: "bf16")
    # Hugging Face q/k rows: the reference runs rotate_half (neox) on them as
    # stored; check that this is the Meta model of the un-permuted rows
    Wm = dict(W)
    for name in list(W):
        if name.endswith("wq.weight") or name.endswith("wk.weight"):
            nh = cfg["NH"] if "wq" in name else cfg["NKV"]
            inv = W[name].reshape(nh, 2, -1, W[name].shape[1]).transpose(0, 2, 1, 3).reshape(W[name].shape)
            assert np.array_equal(hf_permute(inv, nh), W[name])
            Wm[name] = inv
    a = forward({k: torch.tensor(np.asarray(v, np.float64)) for k, v in W.items()}, cfg, IDS)
    b = forward({k: torch.tensor(np.asarray(v, np.float64)) for k, v in Wm.items()}, dict(cfg, neox=False), IDS)
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-12), "rotate_half on permuted rows == adjacent pairs"
    write_safetensors(os.path.join(d, "model.safetensors"),
                      [(hf_name(n), ST_DTYPE[TY[n]], W[n].shape, B[n]) for n in B])
    conf = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": cfg["C"],
            "intermediate_size": cfg["H"], "num_hidden_layers": cfg["L"], "num_attention_heads": cfg["NH"],
            "num_key_value_heads": cfg["NKV"], "rms_norm_eps": 1e-6, "rope_theta": 500000.0,
            "vocab_size": cfg["V"], "tie_word_embeddings": False, "max_position_embeddings": 128,
            "hidden_act": "silu", "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2,
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 32}}
    json.dump(conf, open(os.path.join(d, "config.json"), "w"), indent=2)
    reference("hf_llama", W, cfg, IDS)
    # tokenizer.json in the Llama 2 style: specials in added_tokens, "▁"
    # prepended by the normalizer, merges = every split of every merged
    # piece, in score order
    toks, scores, types = tiny_spm()
    vocab = {t.decode(): i for i, t in enumerate(toks)}
    merges = []
    for i in sorted(range(len(toks)), key=lambda i: -scores[i]):
        t = toks[i].decode()
        if types[i] != 1 or len(t) < 2:
            continue
        for k in range(1, len(t)):
            if t[:k] in vocab and t[k:] in vocab:
                merges.append(t[:k] + " " + t[k:])
    tj = {"version": "1.0", "truncation": None, "padding": None,
          "added_tokens": [{"id": i, "content": toks[i].decode(), "single_word": False, "lstrip": False,
                            "rstrip": False, "normalized": False, "special": True} for i in range(3)],
          "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": LB},
                                                             {"type": "Replace", "pattern": {"String": " "},
                                                              "content": LB}]},
          "pre_tokenizer": None,
          "post_processor": None,
          "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": LB}, "content": " "},
                                                       {"type": "ByteFallback"}, {"type": "Fuse"},
                                                       {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
          "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                    "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True,
                    "vocab": vocab, "merges": merges}}
    json.dump(tj, open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8"), ensure_ascii=False)
    json.dump({"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
               "unk_token": "<unk>", "chat_template": LLAMA2_TPL},
              open(os.path.join(d, "tokenizer_config.json"), "w"), indent=1)
    strs = [b"ab ba", b"abc cab bad", b"dead beef", b"a  b", b"cx"]
    pack_strings("hf_spm", strs, [tr.spm_encode((toks, scores, types), s_, 0, 1) for s_ in strs])

    # ---- Qwen2, F16 in two shards + index, biases, tied, byte-level tokenizer.json ----
    d = fpath("ld_hf_qwen2")
    os.makedirs(d, exist_ok=True)
    btoks, btypes, bmerges = tr.build_gpt2_vocab()
    cfg = cfg_base(L=2, V=len(btoks), tied=True, neox=True, qkv_bias=True, theta=1000000.0,
                   eps=float(np.float32(1e-6)))
    W, B, TY = make_weights(cfg, lambda n: "f16")
    names = list(B)
    half = len(names) // 2
    wmap = {}
    for k, part in enumerate((names[:half], names[half:])):
        fn = "model-%05d-of-00002.safetensors" % (k + 1)
        write_safetensors(os.path.join(d, fn), [(hf_name(n), ST_DTYPE[TY[n]], W[n].shape, B[n]) for n in part])
        wmap.update({hf_name(n): fn for n in part})
    json.dump({"metadata": {"total_size": sum(len(b) for b in B.values())}, "weight_map": wmap},
              open(os.path.join(d, "model.safetensors.index.json"), "w"), indent=1)
    conf = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": cfg["C"],
            "intermediate_size": cfg["H"], "num_hidden_layers": cfg["L"], "num_attention_heads": cfg["NH"],
            "num_key_value_heads": cfg["NKV"], "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
            "vocab_size": cfg["V"], "tie_word_embeddings": True, "max_position_embeddings": 256,
            "hidden_act": "silu", "torch_dtype": "float16"}
    json.dump(conf, open(os.path.join(d, "config.json"), "w"), indent=2)
    reference("hf_qwen2", W, cfg, IDS)
    normal = [i for i, ty in enumerate(btypes) if ty not in (tr.T_CONTROL, tr.T_USER)]
    llama3_re = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
                 "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
    tj = {"version": "1.0",
          "added_tokens": [{"id": i, "content": btoks[i].decode(), "special": btypes[i] == tr.T_CONTROL,
                            "normalized": False} for i in range(len(btoks)) if i not in normal],
          "normalizer": None,
          "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
              {"type": "Split", "pattern": {"Regex": llama3_re}, "behavior": "Isolated", "invert": False},
              {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
          "post_processor": None,
          "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
          "model": {"type": "BPE", "ignore_merges": True, "byte_fallback": False,
                    "vocab": {tr.to_bl(btoks[i]).decode(): i for i in normal},
                    "merges": [[tr.to_bl(a_).decode(), tr.to_bl(b_).decode()] for a_, b_ in bmerges]}}
    json.dump(tj, open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8"), ensure_ascii=False)
    json.dump({"bos_token": None, "eos_token": "<|im_end|>", "chat_template": CHATML},
              open(os.path.join(d, "tokenizer_config.json"), "w"), indent=1)
    strs = [s_ for s_ in tr.test_strings() if len(s_) < 120][:30]
    pack_strings("hf_bl", strs, [tr.gpt2_encode((btoks, btypes, bmerges), "llama3", s_, 0, 1) for s_ in strs])
    OUT["hf_bl.eos"] = np.array([btoks.index(b"<|im_end|>")], np.int32)
    # bad folders: an unknown architecture; a missing tensor
    d = fpath("ld_hf_bad_arch")
    os.makedirs(d, exist_ok=True)
    json.dump(dict(conf, architectures=["MambaForCausalLM"], model_type="mamba"),
              open(os.path.join(d, "config.json"), "w"))
    d = fpath("ld_hf_bad_missing")
    os.makedirs(d, exist_ok=True)
    json.dump(conf, open(os.path.join(d, "config.json"), "w"))
    cfg = cfg_base(L=1, V=8, tied=True, qkv_bias=True, C=8, NH=2, NKV=1, H=8)
    W, B, TY = make_weights(cfg, lambda n: "f16")
    json.dump(dict(conf, hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2,
                   num_key_value_heads=1, vocab_size=8), open(os.path.join(d, "config.json"), "w"))
    write_safetensors(os.path.join(d, "model.safetensors"),
                      [(hf_name(n), ST_DTYPE[TY[n]], W[n].shape, B[n]) for n in B if "k_proj.bias" not in hf_name(n)])


def main():
    gen_gguf_models()
    gen_gguf_tokenizers()
    gen_llama2c()
    gen_hf()
    fixture.write("ld_expect.bin", OUT)
    for f in sorted(os.listdir(fixture.FIXTURES)):
        if f.startswith("ld_") and os.path.isfile(fpath(f)):
            print("%-28s %7d bytes" % (f, os.path.getsize(fpath(f))))


if __name__ == "__main__":
    main()
