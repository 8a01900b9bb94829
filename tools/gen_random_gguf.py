"""gen_random_gguf.py — a llama-arch GGUF file with random F32 weights of a
given shape, for speed smoke tests (duet bench) without downloading a model.
Written from the GGUF spec (ggml docs/gguf.md) with struct and numpy only.

  /usr/bin/python3 tools/gen_random_gguf.py --out /tmp/r15m.gguf
      # llama2.c stories15M's shape: dim 288, hidden 768, 6 layers, 6 heads,
      # vocab 32000, ctx 256, tied output (about 15M parameters, 61 MB)
  duet quantize /tmp/r15m.gguf /tmp/r15m-q8_0.gguf --type q8_0
  duet bench --model /tmp/r15m-q8_0.gguf

The weights are uniform with the usual 1/sqrt(fan_in) scale; the file has no
tokenizer (duet bench does not need one). Do not commit its output.

  /usr/bin/python3 tools/gen_random_gguf.py --q4-k-m OUT.gguf --from-q4k A.gguf --from-q6k B.gguf
      # llama.cpp's Q4_K_M mix from two `duet quantize` outputs of one model
      # (--type q4_k and --type q6_k): output.weight, and attn_v / ffn_down in
      # the layers llama.cpp's use_more_bits picks (the first and last eighth
      # and every third between), from the Q6_K file; every other tensor from
      # the Q4_K file. Tensor bytes are copied, nothing is requantized.
"""
import argparse
import struct

import numpy as np

STRING, UINT32, FLOAT32 = 8, 4, 6


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, t, v):
    if t == STRING:
        return gstr(key) + struct.pack("<I", t) + gstr(v)
    return gstr(key) + struct.pack("<I", t) + struct.pack("<I" if t == UINT32 else "<f", v)


def read_gguf(path):
    """(header kv bytes, kv count, [(name, dims, type, data bytes)], alignment) of a GGUF v2/v3
    file whose metadata holds only scalars, strings and arrays of them."""
    d = open(path, "rb").read()
    assert d[:4] == b"GGUF", path
    ver, nt, nkv = struct.unpack_from("<IQQ", d, 4)
    assert ver in (2, 3), path
    o = 24
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip_str(o):
        (n,) = struct.unpack_from("<Q", d, o)
        return o + 8 + n

    def skip_val(t, o):
        if t == STRING:
            return skip_str(o)
        if t == 9:
            et, n = struct.unpack_from("<IQ", d, o)
            o += 12
            for _ in range(n):
                o = skip_val(et, o)
            return o
        return o + sizes[t]

    kv0, align = o, 32
    for _ in range(nkv):
        k0 = o
        o = skip_str(o)
        (t,) = struct.unpack_from("<I", d, o)
        o = skip_val(t, o + 4)
        (kl,) = struct.unpack_from("<Q", d, k0)
        if d[k0 + 8:k0 + 8 + kl] == b"general.alignment":
            (align,) = struct.unpack_from("<I", d, o - 4)
    kvs = d[kv0:o]
    infos = []
    for _ in range(nt):
        (n,) = struct.unpack_from("<Q", d, o)
        name = d[o + 8:o + 8 + n].decode()
        o += 8 + n
        (nd,) = struct.unpack_from("<I", d, o)
        dims = struct.unpack_from("<%dQ" % nd, d, o + 4)
        o += 4 + 8 * nd
        t, off = struct.unpack_from("<IQ", d, o)
        o += 12
        infos.append((name, dims, t, off))
    base = o + (-o % align)
    ends = sorted(off for _, _, _, off in infos) + [len(d) - base]
    out = []
    for name, dims, t, off in infos:
        end = min(e for e in ends if e > off) if any(e > off for e in ends) else len(d) - base
        out.append((name, dims, t, d[base + off:base + end]))
    return kvs, nkv, out, align


def q4_k_m(out, a_path, b_path):
    kvs, nkv, ta, align = read_gguf(a_path)
    _, _, tb, _ = read_gguf(b_path)
    tb = {name: (dims, t, data) for name, dims, t, data in tb}
    n_layer = 1 + max(int(n.split(".")[1]) for n, _, _, _ in ta if n.startswith("blk."))

    def more_bits(i, n):  # llama.cpp's use_more_bits
        return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2

    def from_b(name):
        if name == "output.weight":
            return True
        if name.startswith("blk.") and (name.endswith(".attn_v.weight") or name.endswith(".ffn_down.weight")):
            return more_bits(int(name.split(".")[1]), n_layer)
        return False

    # general.file_type -> 15 (MOSTLY_Q4_K_M): rewrite its u32 value in place
    key = gstr("general.file_type") + struct.pack("<I", UINT32)
    i = kvs.find(key)
    if i >= 0:
        kvs = kvs[:i + len(key)] + struct.pack("<I", 15) + kvs[i + len(key) + 4:]
    tensors = []
    for name, dims, t, data in ta:
        if from_b(name) and tb[name][1] == 14:  # Q6_K there (not a q8_0 fallback)
            dims, t, data = tb[name]
        tensors.append((name, dims, t, data))
    infos, off = b"", 0
    for name, dims, t, data in tensors:
        infos += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", x) for x in dims)
        infos += struct.pack("<IQ", t, off)
        off += len(data)
        off += -off % align
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), nkv) + kvs + infos
    head += b"\0" * (-len(head) % align)
    with open(out, "wb") as f:
        f.write(head)
        for _, _, _, data in tensors:
            f.write(data + b"\0" * (-len(data) % align))
    n6 = sum(1 for _, _, t, _ in tensors if t == 14)
    print("wrote %s: %d tensors, %d of them q6_K" % (out, len(tensors), n6))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--q4-k-m", metavar="OUT")
    ap.add_argument("--from-q4k")
    ap.add_argument("--from-q6k")
    ap.add_argument("--dim", type=int, default=288)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--kv-heads", type=int, default=0)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--untied", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.q4_k_m:
        return q4_k_m(a.q4_k_m, a.from_q4k, a.from_q6k)
    if not a.out:
        ap.error("--out is required")
    C, H, L, NH, V = a.dim, a.hidden, a.layers, a.heads, a.vocab
    NKV = a.kv_heads or NH
    HS = C // NH
    rng = np.random.default_rng(a.seed)
    kvs = [kv("general.architecture", STRING, "llama"), kv("general.name", STRING, "random %dx%d" % (L, C)),
           kv("llama.context_length", UINT32, a.ctx), kv("llama.embedding_length", UINT32, C),
           kv("llama.block_count", UINT32, L), kv("llama.feed_forward_length", UINT32, H),
           kv("llama.rope.dimension_count", UINT32, HS), kv("llama.attention.head_count", UINT32, NH),
           kv("llama.attention.head_count_kv", UINT32, NKV),
           kv("llama.attention.layer_norm_rms_epsilon", FLOAT32, 1e-5),
           kv("llama.rope.freq_base", FLOAT32, 10000.0), kv("general.file_type", UINT32, 0)]
    shapes = [("token_embd.weight", (V, C))]
    for l in range(L):
        p = "blk.%d." % l
        shapes += [(p + "attn_norm.weight", (C,)), (p + "attn_q.weight", (NH * HS, C)),
                   (p + "attn_k.weight", (NKV * HS, C)), (p + "attn_v.weight", (NKV * HS, C)),
                   (p + "attn_output.weight", (C, NH * HS)), (p + "ffn_norm.weight", (C,)),
                   (p + "ffn_gate.weight", (H, C)), (p + "ffn_down.weight", (C, H)), (p + "ffn_up.weight", (H, C))]
    shapes += [("output_norm.weight", (C,))]
    if a.untied:
        shapes += [("output.weight", (V, C))]
    align = 32
    infos, off = b"", 0
    for name, shp in shapes:
        ne = list(reversed(shp))
        infos += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        infos += struct.pack("<IQ", 0, off)
        off += int(np.prod(shp)) * 4
        off += -off % align
    head = b"GGUF" + struct.pack("<IQQ", 3, len(shapes), len(kvs)) + b"".join(kvs) + infos
    head += b"\0" * (-len(head) % align)
    with open(a.out, "wb") as f:
        f.write(head)
        for name, shp in shapes:
            if len(shp) == 1:
                w = np.ones(shp, np.float32)
            else:
                s = 1.0 if name == "token_embd.weight" else np.sqrt(3.0 / shp[1])
                w = rng.uniform(-s, s, shp).astype(np.float32)
            b = w.tobytes()
            f.write(b + b"\0" * (-len(b) % align))
    n = sum(int(np.prod(s)) for _, s in shapes)
    print("wrote %s: %.2fM parameters, %.1f MB" % (a.out, n / 1e6, (len(head) + off) / 1e6))


if __name__ == "__main__":
    main()
