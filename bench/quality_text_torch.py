"""quality_text_torch.py — the PyTorch half of bench/quality_text.sh: trains
the storyteller for the same wall time as `duet train text` did, on the same
token streams, and measures validation loss the same way.

Everything that defines the run is read back from duet's finished model
(safetensors metadata), so the two sides cannot drift apart:
  - model: arch, vocab, ctx, dim, layers, heads, kv_heads, hidden, norm_eps,
    tied output (the GPT-2 module of bench/train_text_torch.py, imported);
  - initial weights: duet's own init, regenerated here bit for bit from the
    seed (Philox4x32-10 + Box-Muller, as src/core/rng.c and
    src/models/transformer.c do it; --check-init compares with a duet file);
  - batches: window b of batch k starts at philox(seed ^ 0x5eed0da7a0000000,
    k*B + b) mod (ntrain - T), as draw_batch() in src/cli/cmd_train_text.c;
  - optimizer: AdamW betas (0.9, 0.95), eps 1e-8, decay on tensors with
    ndim >= 2 only, grad-norm clip, lr warmup (lr*(k+1)/warmup) then constant
    (the --minutes schedule);
  - wall time: the clock starts right before the first step and the loop
    stops at the first step boundary past the budget (data loading, model
    setup and the final validation are outside, as in duet);
  - validation: eval_batches*B windows of T tokens spread evenly over the
    validation tokens (evaluate() in cmd_train_text.c), mean cross-entropy in
    nats/token; bits/byte = loss * val_tokens / val_bytes / ln 2.

Writes a CSV in duet's layout (step,lr,train_loss,val_loss,val_bpb,
tokens_per_s,elapsed_s) so one summary reads both.

Run by bench/quality_text.sh with Debian's torch (/usr/bin/python3).
Not a general trainer: gpt2 arch only, fp32, no checkpoints.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_text_torch import LM  # noqa: E402  (same GPT-2 module as the speed bench)

MASK32 = np.uint64(0xFFFFFFFF)


def philox(key, ctr):
    """Philox4x32-10 of uint64 counters ctr under a 64-bit key: four uint64
    arrays holding 32-bit words (duet_philox in src/core/rng.c)."""
    c0 = ctr & MASK32
    c1 = ctr >> np.uint64(32)
    c2 = np.zeros_like(ctr)
    c3 = np.zeros_like(ctr)
    k0, k1 = key & 0xFFFFFFFF, (key >> 32) & 0xFFFFFFFF
    m0, m1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
    for _ in range(10):
        p0 = m0 * c0
        p1 = m1 * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ np.uint64(k0), p1 & MASK32,
                          (p0 >> np.uint64(32)) ^ c3 ^ np.uint64(k1), p0 & MASK32)
        k0 = (k0 + 0x9E3779B9) & 0xFFFFFFFF
        k1 = (k1 + 0xBB67AE85) & 0xFFFFFFFF
    return c0, c1, c2, c3


def rng_normal(seed, offset, n, std):
    """duet_rng_normal: draw i uses counter offset + i; Box-Muller in double,
    then std * (float)z in float."""
    w0, w1, _, _ = philox(seed, np.arange(offset, offset + n, dtype=np.uint64))
    u1 = (w0.astype(np.float64) + 1.0) * (1.0 / 4294967296.0)
    u2 = w1.astype(np.float64) * (1.0 / 4294967296.0)
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos(6.283185307179586 * u2)
    return np.float32(std) * z.astype(np.float32)


def duet_init(cfg, seed):
    """duet_tf_new's weights by checkpoint name, in table order (one rng
    stream: N(0, 0.02) for weights, N(0, 0.02/sqrt(2L)) for wo and w2,
    biases 0, norm weights 1)."""
    V, T, C, L, H = cfg["vocab"], cfg["ctx"], cfg["dim"], cfg["layers"], cfg["hidden"]
    HS = C // cfg["heads"]
    Q, K = cfg["heads"] * HS, cfg["kv_heads"] * HS
    std = np.float32(0.02)
    resid = np.float32(0.02) / np.sqrt(np.float32(2.0) * np.float32(L))
    out, off = {}, 0

    def normal(name, shape, s):
        nonlocal off
        n = int(np.prod(shape))
        out[name] = rng_normal(seed, off, n, s).reshape(shape)
        off += n

    normal("tok_embeddings.weight", (V, C), std)
    normal("pos_embeddings.weight", (T, C), std)
    for l in range(L):
        p = "layers.%d." % l
        out[p + "attention_norm.weight"] = np.ones(C, np.float32)
        out[p + "attention_norm.bias"] = np.zeros(C, np.float32)
        normal(p + "attention.wq.weight", (Q, C), std)
        out[p + "attention.wq.bias"] = np.zeros(Q, np.float32)
        normal(p + "attention.wk.weight", (K, C), std)
        out[p + "attention.wk.bias"] = np.zeros(K, np.float32)
        normal(p + "attention.wv.weight", (K, C), std)
        out[p + "attention.wv.bias"] = np.zeros(K, np.float32)
        normal(p + "attention.wo.weight", (C, Q), resid)
        out[p + "attention.wo.bias"] = np.zeros(C, np.float32)
        out[p + "ffn_norm.weight"] = np.ones(C, np.float32)
        out[p + "ffn_norm.bias"] = np.zeros(C, np.float32)
        normal(p + "feed_forward.w1.weight", (H, C), std)
        out[p + "feed_forward.w1.bias"] = np.zeros(H, np.float32)
        normal(p + "feed_forward.w2.weight", (C, H), resid)
        out[p + "feed_forward.w2.bias"] = np.zeros(C, np.float32)
    out["norm.weight"] = np.ones(C, np.float32)
    out["norm.bias"] = np.zeros(C, np.float32)
    return out


def load_into(m, w):
    """Copies duet-named weights into the train_text_torch module (fused qkv)."""
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    with torch.no_grad():
        m.tok.weight.copy_(t(w["tok_embeddings.weight"]))
        m.pos.weight.copy_(t(w["pos_embeddings.weight"]))
        for l, b in enumerate(m.blocks):
            p = "layers.%d." % l
            b.n1.weight.copy_(t(w[p + "attention_norm.weight"]))
            b.n1.bias.copy_(t(w[p + "attention_norm.bias"]))
            b.qkv.weight.copy_(t(np.concatenate([w[p + "attention.w%s.weight" % k] for k in "qkv"])))
            b.qkv.bias.copy_(t(np.concatenate([w[p + "attention.w%s.bias" % k] for k in "qkv"])))
            b.o.weight.copy_(t(w[p + "attention.wo.weight"]))
            b.o.bias.copy_(t(w[p + "attention.wo.bias"]))
            b.n2.weight.copy_(t(w[p + "ffn_norm.weight"]))
            b.n2.bias.copy_(t(w[p + "ffn_norm.bias"]))
            b.fc.weight.copy_(t(w[p + "feed_forward.w1.weight"]))
            b.fc.bias.copy_(t(w[p + "feed_forward.w1.bias"]))
            b.proj.weight.copy_(t(w[p + "feed_forward.w2.weight"]))
            b.proj.bias.copy_(t(w[p + "feed_forward.w2.bias"]))
        m.norm.weight.copy_(t(w["norm.weight"]))
        m.norm.bias.copy_(t(w["norm.bias"]))


# ---- duet's safetensors: header (with metadata) and f32 tensors ----

def st_open(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
    return head, 8 + n


def st_tensors(path):
    head, base = st_open(path)
    out = {}
    for name, e in head.items():
        if name == "__metadata__":
            continue
        if e["dtype"] != "F32":
            sys.exit("%s: tensor %s is %s; expected F32 (a model written by duet train text)"
                     % (path, name, e["dtype"]))
        a, b = e["data_offsets"]
        out[name] = np.fromfile(path, np.float32, (b - a) // 4, offset=base + a).reshape(e["shape"])
    return out


def read_config(path):
    meta = st_open(path)[0].get("__metadata__", {})
    if meta.get("duet.kind") != "storyteller" or "duet.train.seed" not in meta:
        sys.exit("%s: not a model written by `duet train text` (no duet.kind / duet.train.*)" % path)
    i = lambda k: int(meta[k])  # noqa: E731
    f = lambda k: float(meta[k])  # noqa: E731
    cfg = {"arch": meta["duet.arch"], "vocab": i("duet.vocab"), "ctx": i("duet.ctx"),
           "dim": i("duet.dim"), "layers": i("duet.layers"), "heads": i("duet.heads"),
           "kv_heads": i("duet.kv_heads"), "hidden": i("duet.hidden"),
           "norm_eps": f("duet.norm_eps"), "tied": i("duet.tied"),
           "seed": i("duet.train.seed"), "batch": i("duet.train.batch"),
           "warmup": i("duet.train.warmup"), "lr": f("duet.train.lr"),
           "wd": f("duet.train.weight_decay"), "clip": f("duet.train.grad_clip"),
           "eval_batches": i("duet.train.eval_batches"), "minutes": f("duet.train.minutes"),
           "steps": i("duet.train.step"), "val_loss": f("duet.train.val_loss"),
           "tokenizer": meta.get("duet.tokenizer")}
    if cfg["arch"] != "gpt2" or cfg["tied"] != 1 or cfg["kv_heads"] != cfg["heads"] \
            or abs(cfg["norm_eps"] - 1e-5) > 1e-9 or cfg["hidden"] != 4 * cfg["dim"]:
        sys.exit("%s: only the gpt2 shape of --preset small is mirrored here (tied output, "
                 "kv_heads = heads, hidden 4*dim, eps 1e-5)" % path)
    return cfg


def read_ids(path):
    with open(path) as f:
        return np.array(f.read().split(), dtype=np.int64)


# ---- training and validation, as cmd_train_text.c does them ----

BATCH_KEY = 0x5eed0da7a0000000


def draw_batch(tokens, B, T, seed, k):
    w0, w1, _, _ = philox(seed ^ BATCH_KEY, np.arange(k * B, k * B + B, dtype=np.uint64))
    off = ((w0 << np.uint64(32)) | w1) % np.uint64(len(tokens) - T)
    idx = off.astype(np.int64)[:, None] + np.arange(T)[None, :]
    return torch.from_numpy(tokens[idx]), torch.from_numpy(tokens[idx + 1])


def evaluate(m, val, B, T, max_windows, V):
    Te = min(len(val) - 1, T)
    slots = (len(val) - 1) // Te
    nwin = min(slots, max_windows)
    total, count = 0.0, 0
    with torch.no_grad():
        for w0 in range(0, nwin, B):
            rows = min(nwin - w0, B)
            off = np.array([((w0 + r) * slots // nwin) * Te for r in range(rows)])
            idx = off[:, None] + np.arange(Te)[None, :]
            ids, tg = torch.from_numpy(val[idx]), torch.from_numpy(val[idx + 1])
            loss = F.cross_entropy(m(ids).view(-1, V), tg.reshape(-1))
            total += loss.item() * rows * Te
            count += rows * Te
    return total / count


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duet-model", required=True, help="model written by duet train text")
    ap.add_argument("--export-tokenizer", metavar="OUT", help="write the embedded tokenizer.json and exit")
    ap.add_argument("--check-init", metavar="FILE",
                    help="compare this script's init with FILE (duet's weights after one step at "
                         "lr 1e-30) and exit")
    ap.add_argument("--eval-duet", action="store_true",
                    help="validate duet's final weights here, compare with the loss duet "
                         "reported, and exit (checks that both sides validate the same way)")
    ap.add_argument("--train-ids")
    ap.add_argument("--val-ids")
    ap.add_argument("--val-bytes", type=int)
    ap.add_argument("--minutes", type=float)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--csv", default="torch.csv")
    a = ap.parse_args()
    cfg = read_config(a.duet_model)

    if a.export_tokenizer:
        if not cfg["tokenizer"]:
            sys.exit("%s has no embedded tokenizer (duet.tokenizer)" % a.duet_model)
        with open(a.export_tokenizer, "w") as f:
            f.write(cfg["tokenizer"])
        return
    if a.check_init:
        mine, theirs = duet_init(cfg, cfg["seed"]), st_tensors(a.check_init)
        if set(mine) != set(theirs):
            sys.exit("init check: tensor names differ: %s" % sorted(set(mine) ^ set(theirs)))
        worst = max((float(np.abs(mine[k] - theirs[k]).max()), k) for k in mine)
        print("init check: %d tensors, %.2fM values, max |torch - duet| = %.3g (%s)" % (
            len(mine), sum(v.size for v in mine.values()) / 1e6, worst[0], worst[1]))
        if not worst[0] < 1e-6:
            sys.exit("init check FAILED: PyTorch does not start from duet's weights")
        return
    need = ("val_ids", "val_bytes") if a.eval_duet else ("train_ids", "val_ids", "val_bytes", "minutes")
    for k in need:
        if getattr(a, k) is None:
            sys.exit("--%s is required" % k.replace("_", "-"))

    torch.set_num_threads(a.threads)
    V, T, B, L = cfg["vocab"], cfg["ctx"], cfg["batch"], cfg["layers"]
    val = read_ids(a.val_ids)
    args = argparse.Namespace(arch="gpt2", vocab=V, ctx=T, layers=L, heads=cfg["heads"],
                              kv_heads=cfg["kv_heads"], dim=cfg["dim"], hidden=cfg["hidden"])
    m = LM(args)
    if a.eval_duet:
        load_into(m, st_tensors(a.duet_model))
        vl = evaluate(m, val, B, T, cfg["eval_batches"] * B, V)
        print("validation check: PyTorch on duet's final weights %.6f nats/token, duet reported "
              "%.6f (diff %.2g)" % (vl, cfg["val_loss"], vl - cfg["val_loss"]))
        if not abs(vl - cfg["val_loss"]) < 1e-3:
            sys.exit("validation check FAILED: the two sides do not measure the same loss")
        return
    train = read_ids(a.train_ids)
    if train.max() >= V or val.max() >= V:
        sys.exit("token id >= vocab %d: the id files are not from this model's tokenizer" % V)
    if abs(a.minutes - cfg["minutes"]) > 1e-4 * a.minutes:
        print("warning: --minutes %g but duet trained for %g" % (a.minutes, cfg["minutes"]),
              file=sys.stderr)
    load_into(m, duet_init(cfg, cfg["seed"]))
    nparams = sum(p.numel() for p in m.parameters())
    decay = [p for p in m.parameters() if p.dim() >= 2]
    nodecay = [p for p in m.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["wd"]},
                             {"params": nodecay, "weight_decay": 0.0}],
                            lr=cfg["lr"], betas=(0.9, 0.95), eps=1e-8)
    print("torch %s, %d threads, OMP_WAIT_POLICY=%s OPENBLAS_CORETYPE=%s" % (
        torch.__version__, torch.get_num_threads(), os.environ.get("OMP_WAIT_POLICY", "-"),
        os.environ.get("OPENBLAS_CORETYPE", "-")), file=sys.stderr)
    print("torch: gpt2, %d layers, %d heads, dim %d, ctx %d, vocab %d: %.2fM parameters\n"
          "  %d train / %d validation tokens, batch %d, lr %g, warmup %d, wd %g, clip %g, "
          "minutes %g" % (L, cfg["heads"], cfg["dim"], T, V, nparams / 1e6, len(train), len(val),
                          B, cfg["lr"], cfg["warmup"], cfg["wd"], cfg["clip"], a.minutes),
          file=sys.stderr)

    budget = a.minutes * 60.0
    csv = open(a.csv, "w")
    csv.write("step,lr,train_loss,val_loss,val_bpb,tokens_per_s,elapsed_s\n")
    row = "%d,%.6g,%.6f,%s,%s,%.1f,%.2f\n"
    step, train_time, last_report = 0, 0.0, 0.0
    t_start = time.perf_counter()
    while True:  # duet: a step starts while elapsed < budget; here budget > 0
        lr = cfg["lr"] * (step + 1) / cfg["warmup"] if step < cfg["warmup"] else cfg["lr"]
        t_step = time.perf_counter()
        ids, tg = draw_batch(train, B, T, cfg["seed"], step)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(m(ids).view(-1, V), tg.reshape(-1))
        loss.backward()
        if cfg["clip"] > 0:
            torch.nn.utils.clip_grad_norm_(m.parameters(), cfg["clip"])
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        lv = loss.item()
        step += 1
        now = time.perf_counter()
        dt, elapsed = now - t_step, now - t_start
        train_time += dt
        if not math.isfinite(lv):
            sys.exit("torch: the loss is %g at step %d: diverged" % (lv, step))
        if elapsed - last_report >= 30 or step == 1:
            last_report = elapsed
            print("  torch step %d | loss %.4f | %.0f tok/s | %.0f s" % (
                step, lv, B * T * step / train_time, elapsed), file=sys.stderr)
        if elapsed >= budget:
            break
        csv.write(row % (step, lr, lv, "", "", B * T / dt, elapsed))
        csv.flush()
    # validation after the last step, outside the budget (as in duet)
    vl = evaluate(m, val, B, T, cfg["eval_batches"] * B, V)
    bpb = vl * len(val) / a.val_bytes / math.log(2.0)
    csv.write(row % (step, lr, lv, "%.6f" % vl, "%.6f" % bpb, B * T / dt, elapsed))
    csv.close()
    print("done: %d steps, %.0f tokens/s, val loss %.4f nats/token, %.4f bits/byte -> %s" % (
        step, B * T * step / train_time, vl, bpb, a.csv))


if __name__ == "__main__":
    main()
