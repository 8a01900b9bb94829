"""gen_ops_a.py — PyTorch references for the first op family (tests/test_ops_a.c):
linear, bmm, layernorm, rmsnorm, groupnorm, gelu (exact and tanh), silu, swiglu,
softmax, cross-entropy, mse, embedding, add_channel.

For each case: float32 inputs, the forward, and the backward of
loss = sum(out * r) for a random upstream gradient r (losses: r is a scalar
dloss). Every array is named "<case>.<what>" with cases 0..count-1 per file.
Run with Debian's torch: cd tests/ref && /usr/bin/python3 gen_ops_a.py
"""
import numpy as np
import torch
import torch.nn.functional as F

import fixture

torch.manual_seed(1234)


def rnd(*shape, lo=-2.0, hi=2.0):
    return (torch.rand(*shape, dtype=torch.float32) * (hi - lo) + lo)


def leaf(t):
    return t.clone().requires_grad_(True)


def backward(out):
    """Backward of sum(out * r) for a random r; returns (r, out)."""
    r = torch.randn(out.shape, dtype=torch.float32)
    (out * r).sum().backward()
    return r, out.detach()


def write(name, cases):
    arrays = {"count": np.array([len(cases)], dtype=np.int32)}
    for i, c in enumerate(cases):
        for k, v in c.items():
            arrays["%d.%s" % (i, k)] = v
    fixture.write(name, arrays)


# ---- linear: F.linear over x [..., C] --------------------------------------
cases = []
for xshape, oc, bias in [((3, 5), 4, True), ((2, 3, 7), 6, True), ((1, 8), 3, False),
                         ((5, 17), 9, True)]:
    c = xshape[-1]
    x, w = leaf(rnd(*xshape)), leaf(rnd(oc, c) * 0.5)
    b = leaf(rnd(oc)) if bias else None
    out = F.linear(x, w, b)
    r, out = backward(out)
    a = {"x": x.detach(), "w": w.detach(), "r": r, "out": out, "dx": x.grad, "dw": w.grad}
    if bias:
        a["b"], a["db"] = b.detach(), b.grad
    cases.append(a)
write("ops_a_linear.bin", cases)

# ---- bmm with transposes ----------------------------------------------------
cases = []
for batch, m, n, k, ta, tb in [(2, 3, 5, 4, 0, 0), (2, 3, 5, 4, 1, 0), (2, 3, 5, 4, 0, 1),
                               (2, 3, 5, 4, 1, 1), (3, 7, 2, 5, 1, 0), (1, 1, 6, 9, 0, 1)]:
    a = leaf(rnd(batch, k, m) if ta else rnd(batch, m, k))
    b = leaf(rnd(batch, n, k) if tb else rnd(batch, k, n))
    opa = a.transpose(1, 2) if ta else a
    opb = b.transpose(1, 2) if tb else b
    out = torch.bmm(opa, opb)
    r, out = backward(out)
    cases.append({"a": a.detach(), "b": b.detach(), "trans": np.array([ta, tb], dtype=np.int32),
                  "dims": np.array([batch, m, n, k], dtype=np.int32), "r": r,
                  "out": out, "da": a.grad, "db": b.grad})
write("ops_a_bmm.bin", cases)

# ---- layernorm / rmsnorm / groupnorm ---------------------------------------
cases = []
for n, c, affine in [(4, 7, True), (3, 32, True), (2, 5, False), (1, 65, True)]:
    x = leaf(rnd(n, c) * 1.5 + 0.3)
    w = leaf(rnd(c) + 1.0) if affine else None
    b = leaf(rnd(c)) if affine else None
    eps = 1e-5
    out = F.layer_norm(x, (c,), w, b, eps)
    r, out = backward(out)
    a = {"x": x.detach(), "eps": np.array([eps], dtype=np.float32), "r": r,
         "out": out, "dx": x.grad}
    if affine:
        a.update({"w": w.detach(), "b": b.detach(), "dw": w.grad, "db": b.grad})
    cases.append(a)
write("ops_a_layernorm.bin", cases)

cases = []
for n, c in [(4, 7), (3, 33), (2, 64)]:
    x = leaf(rnd(n, c))
    w = leaf(rnd(c) + 1.0)
    eps = 1e-6
    out = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w
    r, out = backward(out)
    cases.append({"x": x.detach(), "w": w.detach(), "eps": np.array([eps], dtype=np.float32),
                  "r": r, "out": out, "dx": x.grad, "dw": w.grad})
write("ops_a_rmsnorm.bin", cases)

cases = []
for shape, groups, affine in [((2, 6, 5), 3, True), ((2, 4, 3, 3), 2, True),
                              ((1, 8, 2, 3), 8, True), ((3, 4, 7), 1, False)]:
    x = leaf(rnd(*shape) * 2.0 - 0.5)
    c = shape[1]
    w = leaf(rnd(c) + 1.0) if affine else None
    b = leaf(rnd(c)) if affine else None
    eps = 1e-5
    out = F.group_norm(x, groups, w, b, eps)
    r, out = backward(out)
    a = {"x": x.detach(), "groups": np.array([groups], dtype=np.int32),
         "eps": np.array([eps], dtype=np.float32), "r": r, "out": out,
         "dx": x.grad}
    if affine:
        a.update({"w": w.detach(), "b": b.detach(), "dw": w.grad, "db": b.grad})
    cases.append(a)
write("ops_a_groupnorm.bin", cases)

# ---- activations -------------------------------------------------------------
cases = []
for kind, n in [("gelu", 37), ("gelu_tanh", 37), ("silu", 41), ("gelu", 8), ("silu", 5)]:
    x = leaf(rnd(n, lo=-5.0, hi=5.0))
    if kind == "gelu":
        out = F.gelu(x)
    elif kind == "gelu_tanh":
        out = F.gelu(x, approximate="tanh")
    else:
        out = F.silu(x)
    r, out = backward(out)
    cases.append({"kind": np.array([{"gelu": 0, "gelu_tanh": 1, "silu": 2}[kind]], dtype=np.int32),
                  "x": x.detach(), "r": r, "out": out, "dx": x.grad})
write("ops_a_act.bin", cases)

cases = []
for n in [29, 64]:
    gate, up = leaf(rnd(n, lo=-5.0, hi=5.0)), leaf(rnd(n))
    out = F.silu(gate) * up
    r, out = backward(out)
    cases.append({"gate": gate.detach(), "up": up.detach(), "r": r, "out": out,
                  "dgate": gate.grad, "dup": up.grad})
write("ops_a_swiglu.bin", cases)

cases = []
for shape in [(5, 7), (3, 33), (2, 3, 4)]:
    x = leaf(rnd(*shape, lo=-4.0, hi=4.0))
    out = F.softmax(x, dim=-1)
    r, out = backward(out)
    cases.append({"x": x.detach(), "r": r, "out": out, "dx": x.grad})
write("ops_a_softmax.bin", cases)

# ---- losses ------------------------------------------------------------------
IGNORE = -100
cases = []
for shape, v, weighted, ignored, big in [((6,), 9, True, [1, 4], False),
                                         ((2, 3), 11, False, [2], False),
                                         ((5,), 7, True, [], True),
                                         ((4,), 5, True, [0, 1, 2], False)]:
    logits = leaf(rnd(*shape, v, lo=-3.0, hi=3.0))
    tg = torch.randint(0, v, shape, dtype=torch.int64)
    flat = tg.view(-1)
    for i in ignored:
        flat[i] = IGNORE
    if big:  # a target whose probability underflows float32 (logit 150 below the max)
        with torch.no_grad():
            logits.view(-1, v)[0, :] = 0.0
            logits.view(-1, v)[0, (int(flat[0]) + 1) % v] = 150.0
    w = rnd(*shape, lo=0.2, hi=2.0) if weighted else torch.ones(shape)
    ce = F.cross_entropy(logits.view(-1, v), flat, reduction="none", ignore_index=IGNORE)
    kept = flat != IGNORE
    loss = (w.view(-1) * ce).sum() / w.view(-1)[kept].sum()
    dloss = float(torch.rand(1) + 0.5)
    (loss * dloss).backward()
    a = {"logits": logits.detach(), "targets": tg.to(torch.int32),
         "ignore": np.array([IGNORE], dtype=np.int32), "dloss": np.array([dloss], dtype=np.float32),
         "loss": loss.detach().reshape(1), "dlogits": logits.grad}
    if weighted:
        a["weights"] = w
    cases.append(a)
write("ops_a_ce.bin", cases)

cases = []
for shape in [(3, 7), (37,)]:
    a_, b_ = leaf(rnd(*shape)), leaf(rnd(*shape))
    loss = F.mse_loss(a_, b_)
    dloss = float(torch.rand(1) + 0.5)
    (loss * dloss).backward()
    cases.append({"a": a_.detach(), "b": b_.detach(), "dloss": np.array([dloss], dtype=np.float32),
                  "loss": loss.detach().reshape(1), "da": a_.grad, "db": b_.grad})
write("ops_a_mse.bin", cases)

# ---- embedding, add_channel --------------------------------------------------
cases = []
for v, c, idshape in [(10, 6, (3, 5)), (7, 3, (11,)), (4, 65, (2, 3))]:
    table = leaf(rnd(v, c))
    ids = torch.randint(0, v, idshape, dtype=torch.int64)
    ids.view(-1)[-1] = ids.view(-1)[0]  # at least one repeated id
    out = F.embedding(ids, table)
    r, out = backward(out)
    cases.append({"table": table.detach(), "ids": ids.to(torch.int32), "r": r,
                  "out": out, "dtable": table.grad})
write("ops_a_embedding.bin", cases)

cases = []
for shape in [(2, 3, 5), (2, 4, 3, 3), (1, 5, 1)]:
    x, b = leaf(rnd(*shape)), leaf(rnd(shape[0], shape[1]))
    bb = b.view(shape[0], shape[1], *([1] * (len(shape) - 2)))
    out = x + bb
    r, out = backward(out)
    cases.append({"x": x.detach(), "b": b.detach(), "r": r, "out": out,
                  "dx": x.grad, "db": b.grad})
write("ops_a_add_channel.bin", cases)
