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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
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
