"""gen_diffusion.py — independent reference for the diffusion schedules and
samplers (numpy, float64), written from the papers' equations:
DDPM posterior (Ho et al. eq. 7), DDIM (Song et al. eq. 12), Euler / Euler
ancestral in sigma space (Karras et al.; k-diffusion conventions),
DPM-Solver++(2M) (Lu et al., multistep second order, data prediction).
The full-loop cases reproduce duet's Philox4x32-10 + Box-Muller noise here in
Python, so whole trajectories compare number for number."""
import math

import numpy as np

import fixture

T = 1000


def linear_abar(T):
    sc = 1000.0 / T
    b = np.linspace(sc * 1e-4, sc * 0.02, T, dtype=np.float64)
    return b, np.cumprod(1.0 - b)


def cosine_abar(T):
    s = 0.008
    f = lambda t: math.cos(((t / T) + s) / (1 + s) * math.pi / 2) ** 2
    b = np.array([min(1 - f(t + 1) / f(t), 0.999) for t in range(T)], dtype=np.float64)
    return b, np.cumprod(1.0 - b)


# ---- Philox4x32-10 and the normal draws duet uses ----
M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
MASK = 0xFFFFFFFF


def philox(seed, ctr):
    c = [ctr & MASK, (ctr >> 32) & MASK, 0, 0]
    k0, k1 = seed & MASK, (seed >> 32) & MASK
    for _ in range(10):
        p0 = M0 * c[0]
        p1 = M1 * c[2]
        c = [((p1 >> 32) ^ c[1] ^ k0) & MASK, p1 & MASK, ((p0 >> 32) ^ c[3] ^ k1) & MASK, p0 & MASK]
        k0 = (k0 + W0) & MASK
        k1 = (k1 + W1) & MASK
    return c


class Rng:
    def __init__(self, seed):
        self.seed, self.off = seed, 0

    def normal(self, n):
        out = np.empty(n, dtype=np.float32)
        for i in range(n):
            w = philox(self.seed, self.off + i)
            u1 = (w[0] + 1.0) / 4294967296.0
            u2 = w[1] / 4294967296.0
            out[i] = np.float32(math.sqrt(-2.0 * math.log(u1)) * math.cos(2 * math.pi * u2))
        self.off += n
        return out.astype(np.float64)


def timesteps(steps):
    if steps == 1:
        return [T - 1]
    return [int(math.floor((T - 1) * (1 - i / (steps - 1)) + 0.5)) for i in range(steps)]


# ---- steps ----
def pred_x0(x, eps, a, clip):
    x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
    return np.clip(x0, -1, 1) if clip else x0


def ddpm(x, eps, a, ap, noise, clip):
    x0 = pred_x0(x, eps, a, clip)
    beta = 1 - a / ap
    mean = math.sqrt(ap) * beta / (1 - a) * x0 + math.sqrt(1 - beta) * (1 - ap) / (1 - a) * x
    var = beta * (1 - ap) / (1 - a)
    return mean + (math.sqrt(var) * noise if noise is not None else 0), x0


def ddim(x, eps, a, ap, eta, noise, clip):
    x0 = pred_x0(x, eps, a, clip)
    if clip:
        eps = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
    sigma = eta * math.sqrt((1 - ap) / (1 - a)) * math.sqrt(1 - a / ap)
    out = math.sqrt(ap) * x0 + math.sqrt(max(1 - ap - sigma ** 2, 0)) * eps
    if noise is not None and sigma > 0:
        out = out + sigma * noise
    return out, x0


def euler(xk, den, s, sn):
    return xk + (xk - den) / s * (sn - s)


def euler_a(xk, den, s, sn, noise):
    up = min(sn, math.sqrt(sn ** 2 * (s ** 2 - sn ** 2) / s ** 2)) if sn > 0 else 0.0
    down = math.sqrt(sn ** 2 - up ** 2)
    out = xk + (xk - den) / s * (down - s)
    return out + up * noise if up > 0 else out


def dpmpp2m(xk, den, old, s, sn, sp):
    if sn == 0:
        return den.copy()
    t, tn = -math.log(s), -math.log(sn)
    h = tn - t
    if old is None:
        d = den
    else:
        r = (t + math.log(sp)) / h
        d = (1 + 1 / (2 * r)) * den - (1 / (2 * r)) * old
    return (sn / s) * xk - math.expm1(-h) * d


# ---- full loop with an analytic denoiser (Gaussian data N(mu, sd^2)) ----
def gauss_eps(x, a, mu, sd):
    return math.sqrt(1 - a) * (x - math.sqrt(a) * mu) / (a * sd * sd + 1 - a)


def sample(abar, sampler, steps, eta, seed, mu, sd, clip):
    n = mu.size
    rng = Rng(seed)
    x = rng.normal(n)
    ts = timesteps(steps)
    sig = lambda a: math.sqrt((1 - a) / a)
    ks = sampler in ("euler", "euler-a", "dpmpp-2m")
    if ks:
        x = x * math.sqrt(1 + sig(abar[ts[0]]) ** 2)
    old, sp = None, 0.0
    for k, t in enumerate(ts):
        tp = ts[k + 1] if k + 1 < steps else -1
        a, ap = abar[t], (abar[tp] if tp >= 0 else 1.0)
        if not ks:
            eps = gauss_eps(x.astype(np.float32).astype(np.float64), a, mu, sd)
            stoch = sampler == "ddpm" or eta > 0
            nz = rng.normal(n) if (stoch and tp >= 0) else None
            if sampler == "ddpm":
                x, _ = ddpm(x, eps, a, ap, nz, clip)
            else:
                x, _ = ddim(x, eps, a, ap, eta, nz, clip)
            continue
        s, sn = sig(a), (sig(ap) if tp >= 0 else 0.0)
        xvp = x / math.sqrt(1 + s * s)
        eps = gauss_eps(xvp, a, mu, sd)
        den = pred_x0(xvp, eps, a, clip)
        if sampler == "euler":
            x = euler(x, den, s, sn)
        elif sampler == "euler-a":
            nz = rng.normal(n) if sn > 0 else None
            x = euler_a(x, den, s, sn, nz) if nz is not None else euler_a(x, den, s, sn, 0)
        else:
            x = dpmpp2m(x, den, old, s, sn, sp)
            old, sp = den, s
    return x


def main():
    rng = np.random.default_rng(5)
    bl, al = linear_abar(T)
    bc, ac = cosine_abar(T)
    out = {"lin_betas": bl, "lin_abar": al, "cos_betas": bc, "cos_abar": ac,
           "ts_50": np.array(timesteps(50)), "ts_7": np.array(timesteps(7)),
           "ts_1": np.array(timesteps(1))}
    n = 64
    x = rng.standard_normal(n).astype(np.float32).astype(np.float64)
    eps = rng.standard_normal(n).astype(np.float32).astype(np.float64)
    nz = rng.standard_normal(n).astype(np.float32).astype(np.float64)
    den = (rng.standard_normal(n) * 0.5).astype(np.float32).astype(np.float64)
    old = (rng.standard_normal(n) * 0.5).astype(np.float32).astype(np.float64)
    out.update({"x": x, "eps": eps, "noise": nz, "den": den, "old": old})
    a, ap = ac[600], ac[580]
    out["a"], out["ap"] = np.array([a]), np.array([ap])
    for clip in (0, 1):
        out[f"ddpm_c{clip}"], out[f"ddpm_x0_c{clip}"] = ddpm(x, eps, a, ap, nz, clip)
        out[f"ddim0_c{clip}"], out[f"ddim0_x0_c{clip}"] = ddim(x, eps, a, ap, 0.0, None, clip)
        out[f"ddim5_c{clip}"], _ = ddim(x, eps, a, ap, 0.5, nz, clip)
    out["ddim_last"], _ = ddim(x, eps, a, 1.0, 0.0, None, 0)
    s, sn, sp = math.sqrt((1 - a) / a), math.sqrt((1 - ap) / ap), math.sqrt((1 - ac[620]) / ac[620])
    out["sig"] = np.array([s, sn, sp])
    out["euler"] = euler(x, den, s, sn)
    out["euler_a"] = euler_a(x, den, s, sn, nz)
    out["dpm_first"] = dpmpp2m(x, den, None, s, sn, sp)
    out["dpm_multi"] = dpmpp2m(x, den, old, s, sn, sp)
    out["dpm_last"] = dpmpp2m(x, den, old, s, 0.0, sp)
    # full loops: 16 elements, Gaussian data, no clipping
    mu = np.linspace(-0.5, 0.5, 16)
    sd = 0.3
    out["mu"] = mu
    for name, steps, eta in (("ddim", 20, 0.0), ("ddim", 10, 1.0), ("ddpm", 15, 0.0),
                             ("euler", 20, 0.0), ("euler-a", 12, 0.0), ("dpmpp-2m", 10, 0.0)):
        key = f"loop_{name}_{steps}_{int(eta * 10)}"
        out[key] = sample(ac, name, steps, eta, 1234, mu, sd, 0)
    fixture.write("diffusion.bin", out)


if __name__ == "__main__":
    main()
