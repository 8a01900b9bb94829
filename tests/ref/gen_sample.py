"""gen_sample.py — reference distributions for the next-token sampler
(src/gen/sample.c), written the way Hugging Face's logits warpers do it, in
float64 with PyTorch. Writes tests/fixtures/sample.bin.

Order (the contract in duet.h): repetition penalty over the distinct ids of
the last repeat_last_n recent ids (positive logits / penalty, others *
penalty), temperature, top-k, top-p, min-p, renormalise.
  top-p here is HF's formulation (sort ascending, drop tokens whose ascending
  cumulative probability is <= 1 - top_p, keep at least one) — the C code
  walks the other way (keep the best until the cumulative reaches top_p);
  the two agree, which is part of what the test checks.
  min-p drops tokens whose probability is below min_p * max probability.
The logits avoid exact ties so top-k needs no tie rule.
Run: cd tests/ref && /usr/bin/python3 gen_sample.py
"""
import numpy as np
import torch

import fixture


def reference(logits, recent, temperature, top_k, top_p, min_p, penalty, last_n):
    x = torch.tensor(logits, dtype=torch.float32).double()
    if penalty != 1.0 and last_n != 0 and len(recent):
        window = recent if last_n < 0 else recent[-last_n:]
        ids = torch.tensor(sorted(set(window)), dtype=torch.long)
        sel = x[ids]
        x[ids] = torch.where(sel > 0, sel / penalty, sel * penalty)
    if temperature == 0:
        p = torch.zeros_like(x)
        p[torch.argmax(x)] = 1.0
        return p.numpy()
    # the C code divides in float32; do the same before going to float64
    x = (x.float() / np.float32(temperature)).double()
    if top_k > 0 and top_k < x.numel():
        kth = torch.topk(x, top_k).values[-1]
        x = x.masked_fill(x < kth, float("-inf"))
    if top_p < 1.0:
        probs = torch.softmax(x, dim=-1)
        sp, si = torch.sort(probs, descending=False)
        cum = torch.cumsum(sp, dim=-1)
        remove_sorted = cum <= (1 - top_p)
        remove_sorted[-1] = False
        remove = torch.zeros_like(remove_sorted).scatter(0, si, remove_sorted)
        x = x.masked_fill(remove, float("-inf"))
    if min_p > 0:
        probs = torch.softmax(x, dim=-1)
        thr = min_p * probs.max()
        x = x.masked_fill(probs < thr, float("-inf"))
    return torch.softmax(x, dim=-1).numpy()


def main():
    g = torch.Generator().manual_seed(1234)
    cases = []
    V = 64
    base = (torch.randn(V, generator=g) * 3.0).numpy().astype(np.float32)
    recent = [3, 7, 7, 11, 40, 3, 12, 50, 60, 61, 5]  # last 8: 11 40 3 12 50 60 61 5
    base[[3, 11, 40]] = np.abs(base[[3, 11, 40]]) + 1.0    # penalised positives
    base[[12, 50, 61]] = -np.abs(base[[12, 50, 61]]) - 0.5  # penalised negatives
    base[7] = 6.0   # only in the part of recent outside the last 8: not penalised
    # (name, logits, recent, T, top_k, top_p, min_p, penalty, last_n)
    cases.append(("plain", base, [], 1.0, 0, 1.0, 0.0, 1.0, 64))
    cases.append(("temp07", base, [], 0.7, 0, 1.0, 0.0, 1.0, 64))
    cases.append(("temp15_topk5", base, [], 1.5, 5, 1.0, 0.0, 1.0, 64))
    cases.append(("topp09_t08", base, [], 0.8, 0, 0.9, 0.0, 1.0, 64))
    cases.append(("minp005", base, [], 1.0, 0, 1.0, 0.05, 1.0, 64))
    cases.append(("penalty13_last8", base, recent, 1.0, 0, 1.0, 0.0, 1.3, 8))
    cases.append(("penalty_all", base, recent, 1.0, 0, 1.0, 0.0, 1.5, -1))
    cases.append(("combined", base, recent, 0.9, 20, 0.8, 0.02, 1.2, 8))
    cases.append(("topk1", base, [], 1.3, 1, 1.0, 0.0, 1.0, 64))
    cases.append(("greedy_penalty", base, recent, 0.0, 0, 1.0, 0.0, 2.0, 64))
    big = (torch.randn(1000, generator=g) * 2.0).numpy().astype(np.float32)
    cases.append(("v1000_topp095", big, [], 1.0, 0, 0.95, 0.0, 1.0, 64))
    cases.append(("v1000_topk50_minp", big, [], 0.6, 50, 1.0, 0.1, 1.0, 64))
    out = {"n_cases": np.array([len(cases)], dtype=np.int32)}
    for i, (name, logits, rec, T, k, p, mp, pen, ln) in enumerate(cases):
        out["logits_%d" % i] = logits
        out["recent_%d" % i] = np.array(rec, dtype=np.int32)
        out["params_%d" % i] = np.array([T, k, p, mp, pen, ln], dtype=np.float64)
        out["probs_%d" % i] = reference(logits, rec, T, k, p, mp, pen, ln).astype(np.float64)
        kept = int((out["probs_%d" % i] > 0).sum())
        print("%-20s kept %4d of %4d" % (name, kept, len(logits)))
    fixture.write("sample.bin", out)


if __name__ == "__main__":
    main()
