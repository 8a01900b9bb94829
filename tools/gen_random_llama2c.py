"""gen_random_llama2c.py — a llama2.c checkpoint (.bin, the legacy header:
seven int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size
(negative: separate classifier), seq_len, then every tensor in f32) with
random weights, and a matching tokenizer.bin (int32 max_token_length, then
per token: f32 score, int32 length, bytes), for speed comparisons of duet
and llama2.c's own `run` on one file (bench/run_llama2c.sh). Layout from
llama2.c's run.c / export.py (a format fact, no code carried over).

  /usr/bin/python3 tools/gen_random_llama2c.py --out /tmp/m15.bin --tokenizer /tmp/tok15.bin
      # the issue's 15M shape: dim 288, hidden 768, 6 layers, 6 heads,
      # vocab 32000, seq_len 256, untied classifier (add --tied to share it)

Do not commit its output.
"""
import argparse
import struct

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--dim", type=int, default=288)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--kv-heads", type=int, default=0)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--tied", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    kv = a.kv_heads or a.heads
    hs = a.dim // a.heads
    rng = np.random.default_rng(a.seed)

    def mat(*shape):  # uniform, 1/sqrt(fan_in) scale
        lim = 1.0 / np.sqrt(shape[-1])
        return rng.uniform(-lim, lim, size=shape).astype(np.float32)

    L, D, H, V = a.layers, a.dim, a.hidden, a.vocab
    with open(a.out, "wb") as f:
        f.write(struct.pack("<7i", D, H, L, a.heads, kv, V if a.tied else -V, a.ctx))
        parts = [mat(V, D), np.ones((L, D), np.float32), mat(L, D, D), mat(L, kv * hs, D),
                 mat(L, kv * hs, D), mat(L, D, D), np.ones((L, D), np.float32),
                 mat(L, H, D), mat(L, D, H), mat(L, H, D), np.ones(D, np.float32),
                 np.zeros((a.ctx, hs // 2), np.float32), np.zeros((a.ctx, hs // 2), np.float32)]
        if not a.tied:
            parts.append(mat(V, D))
        for p in parts:
            f.write(np.ascontiguousarray(p, dtype="<f4").tobytes())
    with open(a.tokenizer, "wb") as f:
        toks = [b"<unk>", b"<s>", b"</s>"] + [b"<0x%02X>" % i for i in range(256)]
        toks += [b"t%d" % i for i in range(V - len(toks))]
        f.write(struct.pack("<i", max(len(t) for t in toks)))
        for t in toks[:V]:
            f.write(struct.pack("<fi", 0.0, len(t)) + t)


if __name__ == "__main__":
    main()
