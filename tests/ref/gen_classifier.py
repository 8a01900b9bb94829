"""gen_classifier.py — references for src/models/classifier.c:
  classifier.bin  an independent PyTorch model of the judge CNN (tiny config):
                  weights, input, features, logits, cross-entropy and grads;
  frechet.bin     feature statistics (np.mean, np.cov), eigenvalues (np.linalg.eigh)
                  and Frechet distances computed with numpy in float64."""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import fixture


class Judge(nn.Module):
    def __init__(self, cin, size, classes, feats, w):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, w, 3, padding=1)
        self.gn1 = nn.GroupNorm(8, w)
        self.conv2 = nn.Conv2d(w, 2 * w, 3, stride=2, padding=1)
        self.gn2 = nn.GroupNorm(8, 2 * w)
        self.conv3 = nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1)
        self.gn3 = nn.GroupNorm(8, 2 * w)
        self.fc1 = nn.Linear(2 * w * (size // 4) ** 2, feats)
        self.fc2 = nn.Linear(feats, classes)

    def forward(self, x):
        h = F.silu(self.gn1(self.conv1(x)))
        h = F.silu(self.gn2(self.conv2(h)))
        h = F.silu(self.gn3(self.conv3(h)))
        f = self.fc1(h.flatten(1))
        return self.fc2(F.silu(f)), f


def classifier():
    torch.manual_seed(0)
    m = Judge(1, 8, 3, 6, 8)
    with torch.no_grad():  # move GN weights off 1/0 so their grads matter
        for name, p in m.named_parameters():
            if name.startswith("gn"):
                p.add_(torch.randn_like(p) * 0.1)
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    y = torch.tensor([0, 2, 1, 2])
    logits, f = m(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    out = {"x": x, "y": y, "features": f, "logits": logits, "loss": loss.reshape(1)}
    for name, p in m.named_parameters():
        out["w:" + name] = p
        out["g:" + name] = p.grad
    fixture.write("classifier.bin", out)


def frechet_np(mu1, s1, mu2, s2):
    w, v = np.linalg.eigh(s1)
    r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = r @ s2 @ r
    e = np.linalg.eigvalsh((m + m.T) / 2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(e, 0, None)).sum())


def frechet():
    rng = np.random.default_rng(7)
    out = {}
    # a full-rank case: correlated features
    d, n = 12, 80
    a = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 0.5
    b = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 0.3 + 0.2
    a = a.astype(np.float32)
    b = b.astype(np.float32)
    for tag, fa, fb in (("full", a, b),):
        ad, bd = fa.astype(np.float64), fb.astype(np.float64)
        mu1, mu2 = ad.mean(0), bd.mean(0)
        s1, s2 = np.cov(ad, rowvar=False), np.cov(bd, rowvar=False)
        out[tag + "_a"], out[tag + "_b"] = fa, fb
        out[tag + "_mu1"], out[tag + "_s1"] = mu1, s1
        out[tag + "_mu2"], out[tag + "_s2"] = mu2, s2
        out[tag + "_fd"] = np.array([frechet_np(mu1, s1, mu2, s2)])
        out[tag + "_eig1"] = np.linalg.eigvalsh(s1)
    # rank-deficient covariances (fewer rows than dimensions), as with few samples
    d, n = 20, 9
    fa = rng.standard_normal((n, d)).astype(np.float32)
    fb = (rng.standard_normal((n, d)) * 1.5 + 0.1).astype(np.float32)
    ad, bd = fa.astype(np.float64), fb.astype(np.float64)
    mu1, mu2 = ad.mean(0), bd.mean(0)
    s1, s2 = np.cov(ad, rowvar=False), np.cov(bd, rowvar=False)
    out.update({"rank_a": fa, "rank_b": fb, "rank_fd": np.array([frechet_np(mu1, s1, mu2, s2)])})
    # a symmetric matrix with repeated eigenvalues, for the eigen-solver alone
    q, _ = np.linalg.qr(rng.standard_normal((7, 7)))
    lam = np.array([-2.0, 0.5, 0.5, 1.0, 3.0, 3.0, 10.0])
    sym = (q * lam) @ q.T
    out["sym"] = (sym + sym.T) / 2
    out["sym_eig"] = np.linalg.eigvalsh(out["sym"])
    fixture.write("frechet.bin", out)


if __name__ == "__main__":
    classifier()
    frechet()
