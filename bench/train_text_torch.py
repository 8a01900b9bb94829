"""train_text_torch.py — the PyTorch baseline for bench/bench_train_text.c.

Same model (GPT-2 family: learned positions, LayerNorm, GELU-tanh MLP, tied
output; or Llama: RMSNorm, RoPE, SwiGLU, GQA), same config, same threads:
  - training tokens/s: forward, cross-entropy, backward, grad clip 1.0,
    AdamW on B x T random tokens (nanoGPT-style module: fused qkv projection,
    masked softmax attention);
  - sampling ms/token: batch 1, greedy, with a preallocated KV cache, under
    torch.inference_mode().

Run with Debian's torch:  /usr/bin/python3 bench/train_text_torch.py --threads 2
Compare with              OMP_WAIT_POLICY=PASSIVE OPENBLAS_CORETYPE=SkylakeX
(both settings are printed; run the script once under each environment).
"""
import argparse
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a
        C, H = a.dim, a.hidden
        self.NH, self.NKV, self.HS = a.heads, a.kv_heads, a.dim // a.heads
        llama = a.arch == "llama"
        self.n1 = nn.LayerNorm(C) if not llama else RMS(C)
        self.n2 = nn.LayerNorm(C) if not llama else RMS(C)
        self.qkv = nn.Linear(C, (self.NH + 2 * self.NKV) * self.HS, bias=not llama)
        self.o = nn.Linear(C, C, bias=not llama)
        if llama:
            self.w13 = nn.Linear(C, 2 * H, bias=False)
            self.w2 = nn.Linear(H, C, bias=False)
        else:
            self.fc = nn.Linear(C, H)
            self.proj = nn.Linear(H, C)

    def mlp(self, x):
        if self.a.arch == "llama":
            g, u = self.w13(x).chunk(2, dim=-1)
            return self.w2(F.silu(g) * u)
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))

    def split(self, x, pos0, rope):
        B, T, _ = x.shape
        q, k, v = self.qkv(x).split([self.NH * self.HS, self.NKV * self.HS, self.NKV * self.HS], -1)
        q = q.view(B, T, self.NH, self.HS)
        k = k.view(B, T, self.NKV, self.HS)
        v = v.view(B, T, self.NKV, self.HS)
        if rope is not None:
            q, k = apply_rope(q, rope[pos0:pos0 + T]), apply_rope(k, rope[pos0:pos0 + T])
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def attend(self, q, k, v, causal):
        rep = self.NH // self.NKV
        if rep > 1:
            k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.HS))
        if causal:
            T = q.shape[2]
            mask = torch.ones(T, T, dtype=torch.bool).triu(1)
            att = att.masked_fill(mask, float("-inf"))
        return att.softmax(-1) @ v

    def forward(self, x, rope):
        B, T, C = x.shape
        q, k, v = self.split(self.n1(x), 0, rope)
        y = self.attend(q, k, v, True).transpose(1, 2).reshape(B, T, C)
        x = x + self.o(y)
        return x + self.mlp(self.n2(x))

    def step(self, x, pos, cache, rope):
        q, k, v = self.split(self.n1(x), pos, rope)
        kc, vc = cache
        kc[:, :, pos:pos + 1] = k
        vc[:, :, pos:pos + 1] = v
        y = self.attend(q, kc[:, :, :pos + 1], vc[:, :, :pos + 1], False)
        x = x + self.o(y.transpose(1, 2).reshape(1, 1, -1))
        return x + self.mlp(self.n2(x))


class RMS(nn.Module):
    def __init__(self, C, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_table(T, HS, theta=10000.0):
    f = 1.0 / theta ** (torch.arange(0, HS, 2).float() / HS)
    ang = torch.outer(torch.arange(T).float(), f)
    return torch.stack([ang.cos(), ang.sin()], -1)  # [T, HS/2, 2]


def apply_rope(x, tab):
    # adjacent pairs (2i, 2i+1), x [B, T, H, HS], tab [T, HS/2, 2]
    x2 = x.reshape(*x.shape[:-1], -1, 2)
    c, s = tab[None, :, None, :, 0], tab[None, :, None, :, 1]
    a, b = x2[..., 0], x2[..., 1]
    return torch.stack([a * c - b * s, a * s + b * c], -1).flatten(-2)


class LM(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a
        self.tok = nn.Embedding(a.vocab, a.dim)
        self.pos = nn.Embedding(a.ctx, a.dim) if a.arch == "gpt2" else None
        self.blocks = nn.ModuleList([Block(a) for _ in range(a.layers)])
        self.norm = nn.LayerNorm(a.dim) if a.arch == "gpt2" else RMS(a.dim)
        self.out = None if a.arch == "gpt2" else nn.Linear(a.dim, a.vocab, bias=False)
        self.rope = rope_table(a.ctx, a.dim // a.heads) if a.arch == "llama" else None
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, 0.0, 0.02)

    def head(self, x):
        x = self.norm(x)
        return x @ self.tok.weight.t() if self.out is None else self.out(x)

    def forward(self, ids):
        B, T = ids.shape
        x = self.tok(ids)
        if self.pos is not None:
            x = x + self.pos(torch.arange(T))
        for b in self.blocks:
            x = b(x, self.rope)
        return self.head(x)

    def step(self, tok, pos, caches):
        x = self.tok(tok)
        if self.pos is not None:
            x = x + self.pos.weight[pos]
        for b, c in zip(self.blocks, caches):
            x = b.step(x, pos, c, self.rope)
        return self.head(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="gpt2")
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--kv-heads", type=int, default=0)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    a.kv_heads = a.kv_heads or a.heads
    a.hidden = 4 * a.dim if a.arch == "gpt2" else (8 * a.dim // 3 + 31) // 32 * 32
    a.tokens = a.tokens or a.ctx - 1
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print("torch %s | threads %d | OMP_WAIT_POLICY=%s OPENBLAS_CORETYPE=%s | %s" % (
        torch.__version__, torch.get_num_threads(), os.environ.get("OMP_WAIT_POLICY", "-"),
        os.environ.get("OPENBLAS_CORETYPE", "-"), torch.backends.cpu.get_cpu_capability()
        if hasattr(torch.backends, "cpu") else "?"))
    m = LM(a)
    nparams = sum(p.numel() for p in m.parameters())
    print("model: %s V %d T %d L %d NH %d NKV %d C %d hidden %d, %.2fM params; batch %d" % (
        a.arch, a.vocab, a.ctx, a.layers, a.heads, a.kv_heads, a.dim, a.hidden, nparams / 1e6, a.batch))
    decay = [p for p in m.parameters() if p.dim() >= 2]
    nodecay = [p for p in m.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": nodecay, "weight_decay": 0.0}], lr=1e-4, betas=(0.9, 0.95))
    B, T, V = a.batch, a.ctx, a.vocab
    warm, total, first = 2, 0.0, None
    for s in range(warm + a.steps):
        ids = torch.randint(0, V, (B, T))
        tg = torch.randint(0, V, (B, T))
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(m(ids).view(-1, V), tg.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        if s == 0:
            first = loss.item()
        if s >= warm:
            total += dt
    print("train: %.0f tokens/s (%.1f ms/step) first loss %.4f" % (
        B * T * a.steps / total, 1e3 * total / a.steps, first))

    HS = a.dim // a.heads
    with torch.inference_mode():
        for rep in range(2):
            caches = [(torch.zeros(1, a.kv_heads, a.ctx, HS), torch.zeros(1, a.kv_heads, a.ctx, HS))
                      for _ in range(a.layers)]
            tok = torch.tensor([[1]])
            t0 = time.perf_counter()
            for i in range(a.tokens):
                logits = m.step(tok, i, caches)
                tok = logits[:, -1].argmax(-1, keepdim=True)
            dt = time.perf_counter() - t0
            if rep == 1:
                print("sample: %.3f ms/token (%.0f tokens/s) over %d tokens, batch 1, KV cache" % (
                    1e3 * dt / a.tokens, a.tokens / dt, a.tokens))


if __name__ == "__main__":
    main()
