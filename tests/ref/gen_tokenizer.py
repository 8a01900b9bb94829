"""gen_tokenizer.py — an independent, deliberately plain reference for the
byte-level BPE in src/tokenizer/bpe.c. Writes tests/fixtures/tok_ref.bin.

What it checks (the spec in the tokenizer section of include/duet.h):
  * pre-tokenization: GPT-2's pattern, run by Python's `re` on bytes with the
    byte classes spelled out (letters = A-Z a-z and bytes >= 0x80, numbers =
    0-9, whitespace = space \\t \\n \\v \\f \\r);
  * training: ids 0..255 are bytes, merge m makes id 256 + m; at every step
    ALL pair counts are recounted from scratch over the distinct pre-tokens
    (weighted by frequency), the best pair is the highest count, ties to the
    smallest (left, right); stop at the wanted number of merges or when the
    best count < min_frequency; occurrences merge left to right, no overlap;
  * encoding: GPT-2's classic loop per pre-token (find the lowest-rank pair
    present, merge all its occurrences left to right, repeat).
The C code uses incremental counts, a max-heap and a per-token min-heap, so
agreement is a real check. Run: cd tests/ref && /usr/bin/python3 gen_tokenizer.py
"""
import os
import random
import re
from collections import Counter

import numpy as np

import fixture

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "fixtures", "tok_corpus.txt")

L = rb"A-Za-z\x80-\xff"
N = rb"0-9"
S = rb"\t\n\x0b\x0c\r "
PAT = re.compile(
    rb"'s|'t|'re|'ve|'m|'ll|'d"
    + rb"| ?[" + L + rb"]+"
    + rb"| ?[" + N + rb"]+"
    + rb"| ?[^" + S + L + N + rb"]+"
    + rb"|[" + S + rb"]+(?![^" + S + rb"])"
    + rb"|[" + S + rb"]+",
    re.DOTALL,
)


def pretokenize(data):
    pieces = [m.group(0) for m in PAT.finditer(data)]
    assert b"".join(pieces) == data, "the pattern must cover every byte"
    return pieces


def merge_seq(seq, a, b, c):
    out, i = [], 0
    while i < len(seq):
        if i + 1 < len(seq) and seq[i] == a and seq[i + 1] == b:
            out.append(c)
            i += 2
        else:
            out.append(seq[i])
            i += 1
    return out


def train(data, n_merges, min_frequency):
    words = Counter(pretokenize(data))
    seqs = [(list(w), cnt) for w, cnt in words.items()]
    merges = []
    while len(merges) < n_merges:
        counts = Counter()
        for seq, cnt in seqs:
            for i in range(len(seq) - 1):
                counts[(seq[i], seq[i + 1])] += cnt
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p[0], p[1]))
        if counts[best] < min_frequency:
            break
        c = 256 + len(merges)
        merges.append(best)
        seqs = [(merge_seq(seq, best[0], best[1], c), cnt) for seq, cnt in seqs]
    return merges


def encode(data, merges, bos=None, eos=None):
    rank = {p: r for r, p in enumerate(merges)}
    ids = [] if bos is None else [bos]
    for piece in pretokenize(data):
        seq = list(piece)
        while len(seq) > 1:
            cands = [(rank[(seq[i], seq[i + 1])], i) for i in range(len(seq) - 1)
                     if (seq[i], seq[i + 1]) in rank]
            if not cands:
                break
            r = min(cands)[0]
            seq = merge_seq(seq, merges[r][0], merges[r][1], 256 + r)
        ids.extend(seq)
    if eos is not None:
        ids.append(eos)
    return ids


def test_strings(corpus):
    rnd = random.Random(1234)
    s = [
        b"",
        b"a",
        b" ",
        b"Hello world",
        b"The lighthouse keeper's log",
        b"they'll we've I'm she'd it's don't 'tis rock'n'roll",
        b"'S 'T 'RE 'LL (upper-case contractions are not contractions)",
        b"a   b",
        b"  \tword",
        b"x \t y\n\n\nz  ",
        b"trailing   ",
        b"   leading",
        b"\n",
        b"\r\n\r\n",
        b"12345 678 9.99 -42 1e10",
        b"!!! ?? ... --- ;; @@ (x) [y] {z}",
        " Ærøskøbing Köln Zürich São — “quoted” ☃ 🌊⚓".encode(),
        "Ελληνικά: η θάλασσα. 日本語: 海は穏やかです。".encode(),
        b"\xff\xfe\x80abc\xc3(\xe2\x82 invalid utf-8 \xed\xa0\x80",
        b"nul\x00bytes\x00\x00 in\x00 the middle \x00",
        b"\x01\x02\x7f control \x1b[0m",
        b"<|endoftext|> is plain text unless asked",
        b"Day 14. Storm. Wind force 9, gusting 10.",
        corpus[:600],
        corpus[1500:2100],
        bytes(rnd.randrange(256) for _ in range(300)),
        bytes(rnd.choice(b"ab '\n1.") for _ in range(300)),
    ]
    return s


def bytes_to_unicode():
    """GPT-2's byte -> printable character table (as Hugging Face's ByteLevel)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) \
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def write_hf_json(path, merges):
    """A tokenizer.json laid out the way the `tokenizers` BpeTrainer writes one:
    special tokens first, then the alphabet sorted by character, then one id
    per merge; merges as ["a", "b"] pairs (tokenizers >= 0.20). Returns the
    map from our reference ids (byte = id, 256 + m) to the file's ids."""
    import json
    b2u = bytes_to_unicode()
    tok = {b: bytes([b]) for b in range(256)}
    for m, (a, b) in enumerate(merges):
        tok[256 + m] = tok[a] + tok[b]
    text = {i: "".join(b2u[c] for c in t) for i, t in tok.items()}
    specials = ["<|endoftext|>", "<|pad|>"]
    vocab, remap = {}, {}
    for sp in specials:
        vocab[sp] = len(vocab)
    for b in sorted(range(256), key=lambda b: b2u[b]):
        remap[b] = vocab[text[b]] = len(vocab)
    for m in range(len(merges)):
        remap[256 + m] = vocab[text[256 + m]] = len(vocab)
    added = [{"id": vocab[sp], "content": sp, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True} for sp in specials]
    doc = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [[text[a], text[b]] for a, b in merges]},
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=2)
    return remap


def main():
    with open(CORPUS, "rb") as f:
        corpus = f.read()
    # A: the default min_frequency (2), enough merges to run out of pairs
    # seen twice; B: min_frequency 1 and fewer merges, where ties at low
    # counts are everywhere, so the tie-break is exercised hard.
    configs = {"a": (2000, 2), "b": (500, 1)}
    out = {}
    strings = test_strings(corpus)
    out["n_strings"] = np.array([len(strings)], dtype=np.int32)
    for i, s in enumerate(strings):
        out["str_%d" % i] = np.frombuffer(s, dtype=np.uint8).astype(np.int32)
        ends, p = [], 0
        for piece in pretokenize(s):
            p += len(piece)
            ends.append(p)
        out["pre_%d" % i] = np.array(ends, dtype=np.int32)
    for name, (want, min_freq) in configs.items():
        merges = train(corpus, want, min_freq)
        print("config %s: %d merges (asked %d, min_frequency %d)" % (name, len(merges), want, min_freq))
        out["merges_" + name] = np.array(merges, dtype=np.int32).reshape(-1, 2)
        out["cfg_" + name] = np.array([want, min_freq], dtype=np.int32)
        for i, s in enumerate(strings):
            out["enc_%s_%d" % (name, i)] = np.array(encode(s, merges), dtype=np.int32)
        # the corpus itself, with BOS/EOS (<|endoftext|> = 256 + merges)
        eot = 256 + len(merges)
        out["enc_%s_corpus" % name] = np.array(encode(corpus, merges, eot, eot), dtype=np.int32)
    # an HF-layout file (other id order, pair merges) from config b's merges
    remap = write_hf_json(os.path.join(HERE, "..", "fixtures", "tok_hf_pairs.json"),
                          [tuple(m) for m in out["merges_b"].tolist()])
    for i, s in enumerate(strings):
        out["enc_hf_%d" % i] = np.array([remap[x] for x in out["enc_b_%d" % i]], dtype=np.int32)
    fixture.write("tok_ref.bin", out)


if __name__ == "__main__":
    main()
