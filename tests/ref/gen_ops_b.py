"""gen_ops_b.py — PyTorch references for the ops in src/nn/attention.c, conv.c
and misc.c: attention (grouped-query, causal with S > T, non-causal, decode),
RoPE (both pair orders, written out), conv2d (every K/stride/pad the library
supports, odd sizes with stride 2), nearest upsample, average pool, timestep
embedding, concat and transpose.

Each case draws float32 inputs and a random upstream gradient r, evaluates the
op in float64 from those float32 values (so the reference carries no float32
rounding of its own), takes loss = sum(out * r) and writes inputs, r, the
output and every input gradient. The C test holds its float32 results to
these. Dropout needs no file: its mask is a pure function of Philox, which the
C test recomputes.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

import fixture

torch.manual_seed(0)
rng = np.random.default_rng(7)


def randn(*shape, scale=1.0):
    """float32 draw, returned as a float64 leaf that requires grad."""
    a = (rng.standard_normal(shape) * scale).astype(np.float32)
    return torch.from_numpy(a.astype(np.float64)).requires_grad_(True)


def f32(t):
    return t.detach().to(torch.float32)


def backward_with_r(out):
    r = torch.from_numpy(rng.standard_normal(tuple(out.shape)).astype(np.float32).astype(np.float64))
    (out * r).sum().backward()
    return r


# ---- attention -------------------------------------------------------------

def attention_ref(q, k, v, causal, scale):
    """q [B,T,NH,HS], k/v [B,S,NKV,HS] -> out [B,T,NH,HS], att [B,NH,T,S]."""
    B, T, NH, HS = q.shape
    S, NKV = k.shape[1], k.shape[2]
    G = NH // NKV
    qh = q.permute(0, 2, 1, 3)                                      # [B,NH,T,HS]
    kh = k.permute(0, 2, 1, 3).repeat_interleave(G, dim=1)          # [B,NH,S,HS]
    vh = v.permute(0, 2, 1, 3).repeat_interleave(G, dim=1)
    scores = torch.matmul(qh, kh.transpose(-1, -2)) * scale         # [B,NH,T,S]
    if causal:
        # query t sits at absolute position S - T + t and sees keys <= that
        tpos = torch.arange(T).unsqueeze(1) + (S - T)
        spos = torch.arange(S).unsqueeze(0)
        scores = scores.masked_fill(spos > tpos, float("-inf"))
    att = torch.softmax(scores, dim=-1)
    out = torch.matmul(att, vh).permute(0, 2, 1, 3).contiguous()   # [B,T,NH,HS]
    return out, att


def gen_attention(name, B, T, S, NH, NKV, HS, causal, scale):
    q, k, v = randn(B, T, NH, HS), randn(B, S, NKV, HS), randn(B, S, NKV, HS)
    out, att = attention_ref(q, k, v, causal, scale)
    r = backward_with_r(out)
    fixture.write("ops_b_%s.bin" % name, {
        "dims": np.array([B, T, S, NH, NKV, HS, causal], dtype=np.int32),
        "scale": np.array([scale], dtype=np.float32),
        "q": f32(q), "k": f32(k), "v": f32(v), "r": f32(r),
        "out": f32(out), "att": f32(att),
        "dq": f32(q.grad), "dk": f32(k.grad), "dv": f32(v.grad),
    })


gen_attention("att_gqa_causal", B=2, T=5, S=7, NH=4, NKV=2, HS=8, causal=1, scale=1 / math.sqrt(8))
gen_attention("att_full", B=1, T=6, S=9, NH=2, NKV=2, HS=4, causal=0, scale=0.3)
gen_attention("att_decode", B=2, T=1, S=6, NH=4, NKV=1, HS=8, causal=1, scale=1 / math.sqrt(8))
gen_attention("att_t2", B=1, T=2, S=5, NH=2, NKV=1, HS=4, causal=1, scale=0.5)
# more than one 64-row query block, causal, T == S
gen_attention("att_blocks", B=1, T=66, S=66, NH=2, NKV=1, HS=4, causal=1, scale=0.5)


# ---- RoPE --------------------------------------------------------------------

def rope_ref(x, pos0, theta, neox):
    """x [B,T,NH,HS]; pair i rotated by (pos0 + t) * theta^(-2i/HS)."""
    B, T, NH, HS = x.shape
    P = HS // 2
    i = torch.arange(P, dtype=torch.float64)
    freq = theta ** (-2.0 * i / HS)
    pos = torch.arange(T, dtype=torch.float64) + pos0
    ang = pos[:, None] * freq[None, :]                              # [T, P]
    c = torch.cos(ang)[None, :, None, :]
    s = torch.sin(ang)[None, :, None, :]
    if neox:   # Hugging Face: (i, i + HS/2)
        x0, x1 = x[..., :P], x[..., P:]
        return torch.cat([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1)
    # Meta / GGUF: (2i, 2i+1)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    y0, y1 = x0 * c - x1 * s, x0 * s + x1 * c
    return torch.stack([y0, y1], dim=-1).reshape(B, T, NH, HS)


def gen_rope(name, B, T, NH, HS, pos0, theta, neox):
    x = randn(B, T, NH, HS)
    out = rope_ref(x, pos0, theta, neox)
    r = backward_with_r(out)
    fixture.write("ops_b_%s.bin" % name, {
        "dims": np.array([B, T, NH, HS, pos0, neox], dtype=np.int32),
        "theta": np.array([theta], dtype=np.float32),
        "x": f32(x), "r": f32(r), "out": f32(out), "dx": f32(x.grad),
    })


gen_rope("rope_meta", B=2, T=3, NH=2, HS=8, pos0=5, theta=10000.0, neox=0)
gen_rope("rope_neox", B=2, T=3, NH=2, HS=8, pos0=5, theta=10000.0, neox=1)
# far positions: angles in the thousands of radians
gen_rope("rope_far_meta", B=1, T=4, NH=1, HS=16, pos0=4090, theta=10000.0, neox=0)
gen_rope("rope_far_neox", B=1, T=4, NH=1, HS=16, pos0=4090, theta=500000.0, neox=1)


# ---- conv2d, upsample, avgpool ----------------------------------------------

def gen_conv(name, N, C, H, W, OC, K, stride, pad, bias):
    x, w = randn(N, C, H, W), randn(OC, C, K, K, scale=0.5)
    b = randn(OC) if bias else None
    out = F.conv2d(x, w, b, stride=stride, padding=pad)
    r = backward_with_r(out)
    arrs = {
        "dims": np.array([N, C, H, W, OC, K, stride, pad, int(bias)], dtype=np.int32),
        "x": f32(x), "w": f32(w), "r": f32(r), "out": f32(out),
        "dx": f32(x.grad), "dw": f32(w.grad),
    }
    if bias:
        arrs["b"] = f32(b)
        arrs["db"] = f32(b.grad)
    fixture.write("ops_b_conv_%s.bin" % name, arrs)


CONV_CASES = [
    # name        N  C  H  W  OC K  s  p  bias
    ("k1s1p0",    2, 3, 5, 6, 4, 1, 1, 0, 1),
    ("k1s2p0",    2, 3, 5, 5, 4, 1, 2, 0, 1),
    ("k1s1p1",    1, 3, 4, 4, 2, 1, 1, 1, 0),
    ("k3s1p1",    2, 3, 6, 5, 4, 3, 1, 1, 1),
    ("k3s1p0",    2, 2, 5, 6, 3, 3, 1, 0, 0),
    ("k3s2p1",    2, 3, 7, 7, 4, 3, 2, 1, 1),
    ("k3s2p1e",   1, 2, 8, 6, 3, 3, 2, 1, 1),
    ("k3s2p0",    2, 3, 7, 5, 2, 3, 2, 0, 1),
    ("k3s1p2",    1, 2, 4, 4, 3, 3, 1, 2, 1),
]
for c in CONV_CASES:
    gen_conv(*c)

x = randn(2, 3, 3, 5)
out = F.interpolate(x, scale_factor=2, mode="nearest")
r = backward_with_r(out)
fixture.write("ops_b_upsample.bin", {"x": f32(x), "r": f32(r), "out": f32(out), "dx": f32(x.grad)})

x = randn(2, 3, 4, 6)
out = F.avg_pool2d(x, 2)
r = backward_with_r(out)
fixture.write("ops_b_avgpool.bin", {"x": f32(x), "r": f32(r), "out": f32(out), "dx": f32(x.grad)})


# ---- timestep embedding ------------------------------------------------------

def temb_ref(t, dim, max_period, dtype):
    """diffusers get_timestep_embedding(flip_sin_to_cos=True, downscale_freq_shift=0)."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=dtype) / half
    emb = t[:, None].to(dtype) * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.cos(emb), torch.sin(emb)], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


for dim in (8, 7):
    tv = np.array([0.0, 1.0, 17.5, 999.0, 500.25, 3.0], dtype=np.float32)
    t = torch.from_numpy(tv.astype(np.float64)).requires_grad_(True)
    out = temb_ref(t, dim, 10000.0, torch.float64)
    r = backward_with_r(out)
    # what diffusers itself computes, in float32 (angle rounding ~1e-4 at t ~ 1000)
    out32 = temb_ref(torch.from_numpy(tv), dim, 10000.0, torch.float32)
    fixture.write("ops_b_temb%d.bin" % dim, {
        "t": tv, "r": f32(r), "out": f32(out), "dt": f32(t.grad), "out_f32": out32,
    })


# ---- concat, transpose -------------------------------------------------------

a, b = randn(2, 3, 4, 5), randn(2, 2, 4, 5)
out = torch.cat([a, b], dim=1)
r = backward_with_r(out)
fixture.write("ops_b_concat.bin", {"a": f32(a), "b": f32(b), "r": f32(r), "out": f32(out),
                                   "da": f32(a.grad), "db": f32(b.grad)})

x = randn(2, 3, 37)        # 37 > one 32-wide tile
out = x.transpose(1, 2).contiguous()
r = backward_with_r(out)
x4 = randn(2, 3, 2, 4)     # [N,C,H,W] -> [N, H*W, C]
out4 = x4.flatten(2).transpose(1, 2).contiguous()
r4 = backward_with_r(out4)
fixture.write("ops_b_transpose.bin", {"x": f32(x), "r": f32(r), "out": f32(out), "dx": f32(x.grad),
                                      "x4": f32(x4), "r4": f32(r4), "out4": f32(out4),
                                      "dx4": f32(x4.grad)})
