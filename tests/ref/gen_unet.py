"""gen_unet.py — an independent PyTorch UNet with the same architecture and
parameter names as src/models/unet.c; writes a tiny config's weights, inputs,
prediction, MSE loss against fixed noise and every parameter gradient."""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import fixture


def timestep_embedding(t, dim, max_period=10000.0):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Res(nn.Module):
    def __init__(self, cin, cout, E, groups, dropout):
        super().__init__()
        self.gn1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(E, cout)
        self.gn2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.dropout = dropout

    def forward(self, x, temb_act):
        h = self.conv1(F.silu(self.gn1(x)))
        h = h + self.temb(temb_act)[:, :, None, None]
        h = F.dropout(F.silu(self.gn2(h)), self.dropout, self.training)
        h = self.conv2(h)
        return (self.skip(x) if self.skip is not None else x) + h


class Attn(nn.Module):
    def __init__(self, c, heads, groups):
        super().__init__()
        self.gn = nn.GroupNorm(groups, c)
        self.q, self.k, self.v, self.o = (nn.Linear(c, c) for _ in range(4))
        self.heads = heads

    def forward(self, x):
        N, C, H, W = x.shape
        hs = C // self.heads
        h = self.gn(x).reshape(N, C, H * W).transpose(1, 2)
        q = self.q(h).reshape(N, H * W, self.heads, hs).transpose(1, 2)
        k = self.k(h).reshape(N, H * W, self.heads, hs).transpose(1, 2)
        v = self.v(h).reshape(N, H * W, self.heads, hs).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hs), dim=-1)
        o = (a @ v).transpose(1, 2).reshape(N, H * W, C)
        o = self.o(o).transpose(1, 2).reshape(N, C, H, W)
        return x + o


class UNet(nn.Module):
    def __init__(self, in_ch, ch, mults, nres, attn_levels, heads, groups, classes, dropout=0.0):
        super().__init__()
        E = 4 * ch
        self.ch, self.classes, self.nres = ch, classes, nres
        self.time = nn.ModuleDict({"lin1": nn.Linear(ch, E), "lin2": nn.Linear(E, E)})
        self.class_emb = nn.Embedding(classes + 1, E) if classes else None
        self.conv_in = nn.Conv2d(in_ch, ch, 3, padding=1)
        self.down = nn.ModuleList()
        skip = [ch]
        cur = ch
        for i, m in enumerate(mults):
            lv = nn.Module()
            lv.res = nn.ModuleList()
            lv.attn = nn.ModuleList() if i in attn_levels else None
            for j in range(nres):
                lv.res.append(Res(cur, ch * m, E, groups, dropout))
                cur = ch * m
                if lv.attn is not None:
                    lv.attn.append(Attn(cur, heads, groups))
                skip.append(cur)
            if i + 1 < len(mults):
                lv.downsample = nn.Conv2d(cur, cur, 3, stride=2, padding=1)
                skip.append(cur)
            else:
                lv.downsample = None
            self.down.append(lv)
        self.mid = nn.Module()
        self.mid.res1 = Res(cur, cur, E, groups, dropout)
        self.mid.attn = Attn(cur, heads, groups)
        self.mid.res2 = Res(cur, cur, E, groups, dropout)
        self.up = nn.ModuleDict()
        for i in reversed(range(len(mults))):
            lv = nn.Module()
            lv.res = nn.ModuleList()
            lv.attn = nn.ModuleList() if i in attn_levels else None
            for j in range(nres + 1):
                lv.res.append(Res(cur + skip.pop(), ch * mults[i], E, groups, dropout))
                cur = ch * mults[i]
                if lv.attn is not None:
                    lv.attn.append(Attn(cur, heads, groups))
            lv.upsample = nn.Conv2d(cur, cur, 3, padding=1) if i > 0 else None
            self.up[str(i)] = lv
        self.out = nn.Module()
        self.out.gn = nn.GroupNorm(groups, cur)
        self.out.conv = nn.Conv2d(cur, in_ch, 3, padding=1)
        self.nlevels = len(mults)

    def forward(self, x, t, labels):
        temb = self.time["lin2"](F.silu(self.time["lin1"](timestep_embedding(t, self.ch))))
        if self.class_emb is not None:
            temb = temb + self.class_emb(labels)
        ta = F.silu(temb)
        h = self.conv_in(x)
        hs = [h]
        for lv in self.down:
            for j in range(self.nres):
                h = lv.res[j](h, ta)
                if lv.attn is not None:
                    h = lv.attn[j](h)
                hs.append(h)
            if lv.downsample is not None:
                h = lv.downsample(h)
                hs.append(h)
        h = self.mid.res2(self.mid.attn(self.mid.res1(h, ta)), ta)
        for i in reversed(range(self.nlevels)):
            lv = self.up[str(i)]
            for j in range(self.nres + 1):
                h = lv.res[j](torch.cat([h, hs.pop()], dim=1), ta)
                if lv.attn is not None:
                    h = lv.attn[j](h)
            if lv.upsample is not None:
                h = lv.upsample(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.out.conv(F.silu(self.out.gn(h)))


def main():
    torch.manual_seed(0)
    cfg = dict(in_ch=1, ch=8, mults=(1, 2), nres=1, attn_levels=(1,), heads=2, groups=4, classes=3)
    m = UNet(**cfg)
    with torch.no_grad():  # no zero-init here: every gradient path must be exercised
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    N, S = 3, 8
    x0 = torch.rand(N, 1, S, S) * 2 - 1
    noise = torch.randn(N, 1, S, S)
    t = torch.tensor([3.0, 500.0, 999.0])
    labels = torch.tensor([0, 2, 3])  # 3 = "no class"
    abar = torch.tensor([0.99, 0.5, 0.01])
    xt = (abar.sqrt()[:, None, None, None] * x0 + (1 - abar).sqrt()[:, None, None, None] * noise)
    xt = xt.float()
    pred = m(xt, t, labels)
    loss = F.mse_loss(pred, noise)
    loss.backward()
    out = {"xt": xt, "t": t, "labels": labels, "noise": noise, "pred": pred, "loss": loss.reshape(1)}
    names = []
    for name, p in m.named_parameters():
        name = name.replace("time.lin", "time.lin")
        out["w:" + name] = p
        out["g:" + name] = p.grad
        names.append(name)
    out["nparams"] = np.array([len(names)])
    fixture.write("unet.bin", out)


if __name__ == "__main__":
    main()
