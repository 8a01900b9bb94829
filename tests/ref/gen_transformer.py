"""gen_transformer.py — PyTorch reference for the storyteller (src/models/transformer.c).

A plain nn.Module implementation of both families, written from the papers /
the public model descriptions, not from duet's code:
  gpt2  — learned positions, LayerNorm with bias, GELU(tanh) MLP with biases,
          biased q/k/v/o, tied output embedding.
  llama — RMSNorm, rotary embedding on adjacent pairs (Meta's complex-number
          formulation), SwiGLU MLP, grouped-query attention, untied output,
          no biases.
For a tiny config each fixture holds the initial weights under duet's
checkpoint names, a batch of ids/targets, the logits, the loss, every
parameter gradient, and the losses of 10 AdamW steps (foreach=False, weight
decay on matrices/embeddings only, global grad-norm clipping) on 10 batches.

Writes tests/fixtures/tf_gpt2.bin and tests/fixtures/tf_llama.bin.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import fixture

torch.set_default_dtype(torch.float32)


class Attention(nn.Module):
    def __init__(self, C, NH, NKV, bias, rope_theta=None):
        super().__init__()
        self.NH, self.NKV, self.HS = NH, NKV, C // NH
        self.wq = nn.Linear(C, NH * self.HS, bias=bias)
        self.wk = nn.Linear(C, NKV * self.HS, bias=bias)
        self.wv = nn.Linear(C, NKV * self.HS, bias=bias)
        self.wo = nn.Linear(NH * self.HS, C, bias=bias)
        self.rope_theta = rope_theta

    def rope(self, x):
        # x [B, T, H, HS]; pairs (2i, 2i+1) are one complex number
        B, T, H, HS = x.shape
        freqs = 1.0 / (self.rope_theta ** (torch.arange(0, HS, 2, dtype=torch.float64) / HS))
        ang = torch.outer(torch.arange(T, dtype=torch.float64), freqs)  # [T, HS/2]
        rot = torch.polar(torch.ones_like(ang), ang).to(torch.complex64)
        xc = torch.view_as_complex(x.float().reshape(B, T, H, HS // 2, 2))
        out = torch.view_as_real(xc * rot[None, :, None, :]).reshape(B, T, H, HS)
        return out

    def forward(self, x):
        B, T, C = x.shape
        q = self.wq(x).view(B, T, self.NH, self.HS)
        k = self.wk(x).view(B, T, self.NKV, self.HS)
        v = self.wv(x).view(B, T, self.NKV, self.HS)
        if self.rope_theta is not None:
            q, k = self.rope(q), self.rope(k)
        rep = self.NH // self.NKV
        k = k.repeat_interleave(rep, dim=2)  # head h uses kv head h // rep
        v = v.repeat_interleave(rep, dim=2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, T, HS]
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.HS)
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        att = att.masked_fill(mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, self.NH * self.HS)
        return self.wo(y)


class RMSNorm(nn.Module):
    def __init__(self, C, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class GPT2MLP(nn.Module):
    def __init__(self, C, H):
        super().__init__()
        self.w1 = nn.Linear(C, H)
        self.w2 = nn.Linear(H, C)

    def forward(self, x):
        return self.w2(F.gelu(self.w1(x), approximate="tanh"))


class SwiGLU(nn.Module):
    def __init__(self, C, H):
        super().__init__()
        self.w1 = nn.Linear(C, H, bias=False)
        self.w2 = nn.Linear(H, C, bias=False)
        self.w3 = nn.Linear(C, H, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C, eps = cfg["C"], cfg["eps"]
        if cfg["arch"] == "gpt2":
            self.attention_norm = nn.LayerNorm(C, eps=eps)
            self.ffn_norm = nn.LayerNorm(C, eps=eps)
            self.attention = Attention(C, cfg["NH"], cfg["NKV"], True)
            self.feed_forward = GPT2MLP(C, cfg["H"])
        else:
            self.attention_norm = RMSNorm(C, eps)
            self.ffn_norm = RMSNorm(C, eps)
            self.attention = Attention(C, cfg["NH"], cfg["NKV"], False, cfg["theta"])
            self.feed_forward = SwiGLU(C, cfg["H"])

    def forward(self, x):
        x = x + self.attention(self.attention_norm(x))
        return x + self.feed_forward(self.ffn_norm(x))


class LM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        V, T, C = cfg["V"], cfg["T"], cfg["C"]
        self.tok_embeddings = nn.Embedding(V, C)
        if cfg["arch"] == "gpt2":
            self.pos_embeddings = nn.Embedding(T, C)
            self.norm = nn.LayerNorm(C, eps=cfg["eps"])
        else:
            self.norm = RMSNorm(C, cfg["eps"])
        self.layers = nn.ModuleList([Block(cfg) for _ in range(cfg["L"])])
        if not cfg["tied"]:
            self.output = nn.Linear(C, V, bias=False)

    def forward(self, ids, targets=None):
        B, T = ids.shape
        x = self.tok_embeddings(ids)
        if self.cfg["arch"] == "gpt2":
            x = x + self.pos_embeddings(torch.arange(T))[None]
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)
        w = self.tok_embeddings.weight if self.cfg["tied"] else self.output.weight
        logits = x @ w.t()
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, loss


def gen(name, cfg, seed):
    torch.manual_seed(seed)
    model = LM(cfg)
    # random (not init-like) weights so every path, bias and norm weight matters
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif pname.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / math.sqrt(p.shape[-1]))
    B, T, V = cfg["B"], cfg["T"], cfg["V"]
    g = torch.Generator().manual_seed(seed + 1)
    steps = 10
    data = torch.randint(0, V, (steps, B, T + 1), generator=g)
    out = {}
    for pname, p in model.named_parameters():
        out["w." + pname] = p.detach().clone()
    ids, targets = data[0, :, :-1], data[0, :, 1:]
    logits, loss = model(ids, targets)
    loss.backward()
    out["ids"] = ids
    out["targets"] = targets
    out["logits"] = logits.detach()
    out["loss"] = loss.detach().reshape(1)
    for pname, p in model.named_parameters():
        out["g." + pname] = p.grad.detach().clone()

    # 10 AdamW steps, one batch each; losses before each step
    model.zero_grad()
    decay = [p for n_, p in model.named_parameters() if p.dim() >= 2]
    nodecay = [p for n_, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["wd"]},
                             {"params": nodecay, "weight_decay": 0.0}],
                            lr=cfg["lr"], betas=(0.9, 0.95), eps=1e-8, foreach=False)
    losses, norms = [], []
    for s in range(steps):
        opt.zero_grad(set_to_none=False)
        _, l = model(data[s, :, :-1], data[s, :, 1:])
        l.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip"])))
        opt.step()
        losses.append(l.item())
    _, l = model(data[0, :, :-1], data[0, :, 1:])
    losses.append(l.item())
    out["train_data"] = data
    out["train_losses"] = torch.tensor(losses, dtype=torch.float64)
    out["cfg"] = torch.tensor([cfg["V"], cfg["T"], cfg["C"], cfg["L"], cfg["NH"], cfg["NKV"],
                               cfg["H"], cfg["tied"], B], dtype=torch.int32)
    out["hyper"] = torch.tensor([cfg["lr"], cfg["wd"], cfg["clip"], cfg["eps"], cfg.get("theta", 0)],
                                dtype=torch.float64)
    fixture.write(name, out)
    print(name, "loss", loss.item(), "grad norms", ["%.3f" % n for n in norms[:4]],
          "losses", ["%.4f" % x for x in losses])


gen("tf_gpt2.bin", dict(arch="gpt2", V=37, T=8, C=16, L=2, NH=4, NKV=4, H=64, tied=1, eps=1e-5,
                        B=2, lr=1e-2, wd=0.1, clip=1.0), 1234)
gen("tf_llama.bin", dict(arch="llama", V=37, T=8, C=32, L=2, NH=4, NKV=2, H=32, tied=0, eps=1e-5,
                         theta=10000.0, B=2, lr=1e-2, wd=0.1, clip=1.0), 4321)
