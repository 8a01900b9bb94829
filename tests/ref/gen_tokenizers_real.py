"""gen_tokenizers_real.py — reference encodings for the tokenizers of real
models (src/tokenizer/spm.c, gpt2bpe.c) and reference renderings of chat
templates (src/tokenizer/chat.c). Writes tests/fixtures/tokreal_spm.bin,
tokreal_gpt2.bin and tokreal_chat.bin.

Independent of the C code on purpose:
  * SentencePiece BPE: the textbook loop — look at every adjacent pair, merge
    the one whose concatenation is a piece with the highest score (leftmost on
    ties), start again — over llama.cpp's character split; no heap.
  * GPT-2 byte-level BPE: the pre-tokenizer patterns run by Python's `re`
    engine, with \\p{L} / \\p{N} / \\s spelled out as character classes built
    from unicodedata (and White_Space from PropList.txt); invalid UTF-8 is
    decoded with surrogateescape, so each bad byte is one character that is
    neither letter, number nor space. Merges: lowest rank first, leftmost on
    ties, recounting every step.
  * Chat templates: the published Jinja templates rendered by jinja2 the way
    Hugging Face transformers does (ImmutableSandboxedEnvironment,
    trim_blocks, lstrip_blocks, raise_exception).

The vocabularies are synthetic: pieces/merges learned here on a small
multilingual corpus, then some SentencePiece scores shuffled and tied so the
score order is not the learning order and ties happen.

Run: cd tests/ref && /usr/bin/python3 gen_tokenizers_real.py
Needs numpy (fixture.py) and, for the chat part, python3-jinja2 (Debian);
without jinja2 the chat fixture is left as it is.
"""
import random
import re
import unicodedata

import numpy as np

import fixture

# --------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------

CORPUS = """The quick brown fox jumps over the lazy dog. The dog didn't mind; it's a lazy dog.
We'll see what they've done: I'm sure you're right, and he'd agree.
Numbers: 1, 22, 333, 4444, 55555 and 3.14159 or 2024-06-01 at 12:30.
Café, naïve, résumé, Straße, Ünïcödé, façade, jalapeño, smörgåsbord.
日本語のテキストです。中文字符和标点。한국어 문장입니다.
Ελληνικά γράμματα και Русский текст и العربية.
Emoji: 😀 🎉 👍🏽 ❤️ and mixed😀text.
def square(x):
    return x ** 2  # the square of x
if (a < b) { c++; } else { d--; }
https://example.com/path?query=value&other=1
the the the and and of of to to in in is is that that for for
"""

BASE_STRINGS = [
    "", " ", "  ", "hello", "Hello world", " Hello  world ", "Hello\nworld", "a\n\nb", "\n",
    "\r\n\r\n x", "tab\there", "multiple   spaces   here", "don't", "DON'T STOP", "I'm You're we'll they've he'd it's",
    "'s", "'", "1234567", "12 345 6789", "3.14159", "x1y22z333", "café naïve résumé", "Ünïcödé straße",
    "日本語のテキスト", "中文 字符", "한국어", "emoji 😀🎉👍🏽", "mixed😀text", "Ελληνικά", "Русский текст",
    "العربية", "hello\u00a0world", "ideographic\u3000space", "   leading", "trailing   ", "a \n b",
    "<|im_start|>user\nHi<|im_end|>", "<|begin_of_text|>text", "<s>hi</s>", "x<|user_def|>y",
    "<|user_def|><|user_def|>", " <|ctrl|> ctrl", "def f(x):\n    return x**2  # square", "if (a<b) { c++; }",
    "https://example.com/a?b=c&d=e", "zyzzyva", " zyzzyva zyzzyva", "the the the", "The quick brown fox",
    "Café, naïve, résumé, Straße", "\u2581already marked", "!!!???...", "$100 €200 ¥300", "x\u0301y", "Ⅻ ½ ²",
]
BASE_BYTES = [
    b"\xff\xfe", b"abc\x80def", b"\xe4\xb8", b"\xe4\xb8\xad\xe6", b"\xc3(", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
    b"\xc0\xaf", b"\x00NUL\x00", b"\xe4AB", b"ok \xf0\x9f\x98 tail", b"\x80\x80 \xbf",
]


def random_strings(rng, count):
    pool = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ") + list("0123456789") + [" "] * 8 + ["\n", "\t", "\r"]
            + list("'.,!?-_()[]{}<>/\\\"#") + list("éüßçñåø") + list("日本語中文한국") + ["😀", "👍🏽", "\u00a0", "\u3000"]
            + ["<|user_def|>", "<|im_start|>", "<s>", "'s", "'LL"])
    out = []
    for _ in range(count):
        n = rng.randint(1, 24)
        s = "".join(rng.choice(pool) for _ in range(n)).encode()
        if rng.random() < 0.25:  # an invalid byte somewhere
            k = rng.randint(0, len(s))
            s = s[:k] + bytes([rng.choice([0x80, 0xBF, 0xC3, 0xE4, 0xF0, 0xFF])]) + s[k:]
        out.append(s)
    return out


def test_strings():
    rng = random.Random(1234)
    strs = [s.encode() for s in BASE_STRINGS] + BASE_BYTES + [l.encode() for l in CORPUS.splitlines()]
    return strs + random_strings(rng, 40)


def pack(strings):
    """list of bytes -> (the concatenated bytes, 4 to an int32 little-endian
    word, zero-padded; byte offsets int32 [len + 1])"""
    off = [0]
    for s in strings:
        off.append(off[-1] + len(s))
    raw = b"".join(strings)
    raw += b"\0" * (-len(raw) % 4)
    data = np.frombuffer(raw, dtype="<i4").astype(np.int32) if raw else np.zeros(0, np.int32)
    return data, np.array(off, dtype=np.int32)


def pack_ids(lists):
    off = [0]
    for l in lists:
        off.append(off[-1] + len(l))
    flat = [i for l in lists for i in l]
    return np.array(flat, dtype=np.int32), np.array(off, dtype=np.int32)


# --------------------------------------------------------------------------
# Special-token partition (shared by both kinds): leftmost match, longest
# when several start at the same place. specials: list of (bytes, id).
# --------------------------------------------------------------------------

def partition(text, specials):
    out, p = [], 0
    while p < len(text):
        best, best_len, best_id = len(text), 0, -1
        for s, i in specials:
            at = text.find(s, p)
            if at < 0:
                continue
            if at < best or (at == best and len(s) > best_len):
                best, best_len, best_id = at, len(s), i
        if best > p:
            out.append(("raw", text[p:best]))
        if best_id < 0:
            break
        out.append(("tok", best_id))
        p = best + best_len
    return out


# --------------------------------------------------------------------------
# SentencePiece BPE
# --------------------------------------------------------------------------

T_NORMAL, T_UNKNOWN, T_CONTROL, T_USER, T_UNUSED, T_BYTE = 1, 2, 3, 4, 5, 6
LB = "\u2581".encode()


def llama_chars(b):
    """llama.cpp's split: a character is as long as its lead byte says."""
    lens = [1] * 12 + [2, 2, 3, 4]
    out, p = [], 0
    while p < len(b):
        n = min(lens[b[p] >> 4], len(b) - p)
        out.append(b[p:p + n])
        p += n
    return out


def learn_spm_pieces(n_merges):
    words = {}
    for w in CORPUS.split():
        key = tuple(llama_chars(LB + w.encode()))
        words[key] = words.get(key, 0) + 1
    chars = sorted({c for w in words for c in w})
    pieces = []
    for _ in range(n_merges):
        counts = {}
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + c
        if not counts:
            break
        best = max(counts.items(), key=lambda kv: (kv[1], [-x for x in kv[0][0]], [-x for x in kv[0][1]]))[0]
        new = best[0] + best[1]
        if new not in pieces:
            pieces.append(new)
        nw = {}
        for w, c in words.items():
            o, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    o.append(new)
                    i += 2
                else:
                    o.append(w[i])
                    i += 1
            nw[tuple(o)] = nw.get(tuple(o), 0) + c
        words = nw
    return pieces, chars


def build_spm_vocab(with_bytes):
    rng = random.Random(99)
    pieces, chars = learn_spm_pieces(260)
    toks, scores, types = [b"<unk>", b"<s>", b"</s>"], [0.0, 0.0, 0.0], [T_UNKNOWN, T_CONTROL, T_CONTROL]
    if with_bytes:
        for b in range(256):
            toks.append(b"<0x%02X>" % b)
            scores.append(0.0)
            types.append(T_BYTE)
    toks += [b"<|user_def|>", b"<|ctrl|>"]
    scores += [0.0, 0.0]
    types += [T_USER, T_CONTROL]
    merged = [p for p in pieces if p not in chars]
    for i, p in enumerate(merged):
        toks.append(p)
        scores.append(-float(i))
        types.append(T_NORMAL)
    for i, c in enumerate(chars):
        toks.append(c)
        scores.append(-1000.0 - i)
        types.append(T_NORMAL)
    # an unused piece, and pieces no merge path reaches
    toks += ["\u2581unused".encode(), "\u2581zyzzyva".encode(), b"zz"]
    scores += [5.0, 3.0, -2.0]
    types += [T_UNUSED, T_NORMAL, T_NORMAL]
    # shuffle some scores and make ties, so the score order is not the learning order
    normal = [i for i, t in enumerate(types) if t == T_NORMAL]
    pick = rng.sample(normal, 40)
    vals = [scores[i] for i in pick]
    rng.shuffle(vals)
    for i, v in zip(pick, vals):
        scores[i] = v
    for i in rng.sample(normal, len(normal) * 2 // 5):  # many ties
        scores[i] = rng.choice([-5.0, -6.0, -7.0])
    for i in normal:  # every two-character piece ties with the others: overlaps
        if len(llama_chars(toks[i])) == 2:  # ("th" | "he" in "the") make leftmost-first matter
            scores[i] = -4.0
    return toks, np.array(scores, dtype=np.float32), types


def spm_encode(vocab, text, parse_special, add_space_prefix):
    toks, scores, types = vocab
    piece = {}
    for i, t in enumerate(toks):
        piece.setdefault(t, i)
    byte_tok = {}
    for i, (t, ty) in enumerate(zip(toks, types)):
        if ty == T_BYTE:
            byte_tok.setdefault(int(t[3:5], 16), i)
    unk = 0

    def byte_id(b):
        if b in byte_tok:
            return byte_tok[b]
        return piece.get(bytes([b]), unk)

    specials = [(t, i) for i, (t, ty) in enumerate(zip(toks, types))
                if len(t) > 0 and (ty == T_USER or (parse_special and ty in (T_CONTROL, T_UNKNOWN)))]
    out = []
    for kind, v in partition(text, specials):
        if kind == "tok":
            out.append(v)
            continue
        s = (LB if add_space_prefix else b"") + v.replace(b" ", LB)
        sym = llama_chars(s)
        while True:
            best, best_sc = -1, None
            for i in range(len(sym) - 1):
                j = piece.get(sym[i] + sym[i + 1])
                if j is not None and (best_sc is None or scores[j] > best_sc):
                    best, best_sc = i, scores[j]
            if best < 0:
                break
            sym[best:best + 2] = [sym[best] + sym[best + 1]]
        for s_ in sym:
            if s_ in piece:
                out.append(piece[s_])
            else:
                out += [byte_id(b) for b in s_]
    return out


def spm_decode(vocab, ids, add_space_prefix):
    toks, _, types = vocab
    out = b""
    prev = -1
    for i in ids:
        ty = types[i]
        if ty == T_BYTE:
            piece = bytes([int(toks[i][3:5], 16)])
        elif ty in (T_CONTROL, T_USER):
            piece = toks[i]
        else:
            piece = toks[i].replace(LB, b" ")
        if add_space_prefix and (prev < 0 or types[prev] in (T_CONTROL, T_USER)) and piece[:1] == b" ":
            piece = piece[1:]
        out += piece
        prev = i
    return out


def gen_spm(strings):
    arrays = {}
    sd, so = pack(strings)
    arrays["str_bytes"], arrays["str_off"] = sd, so
    for cfg, with_bytes, prefix in (("a", True, 1), ("b", True, 0), ("c", False, 1)):
        vocab = build_spm_vocab(with_bytes)
        toks, scores, types = vocab
        td, to = pack(toks)
        arrays[cfg + "_tok_bytes"], arrays[cfg + "_tok_off"] = td, to
        arrays[cfg + "_scores"] = scores
        arrays[cfg + "_types"] = np.array(types, dtype=np.int32)
        arrays[cfg + "_prefix"] = np.array([prefix], dtype=np.int32)
        for sp in (0, 1):
            encs = [spm_encode(vocab, s, sp, prefix) for s in strings]
            d, o = pack_ids(encs)
            arrays["%s_enc%d" % (cfg, sp)], arrays["%s_enc%d_off" % (cfg, sp)] = d, o
            if sp:  # decoding the encodings with specials covers the plain ones too
                decs = [spm_decode(vocab, e, prefix) for e in encs]
                d, o = pack(decs)
                arrays["%s_dec" % cfg], arrays["%s_dec_off" % cfg] = d, o
        print("spm config %s: %d tokens" % (cfg, len(toks)))
    fixture.write("tokreal_spm.bin", arrays)


# --------------------------------------------------------------------------
# GPT-2 byte-level BPE
# --------------------------------------------------------------------------

WHITE_SPACE = [(0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A),
               (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000)]


def class_ranges(first_letter):
    ranges, start = [], None
    for cp in range(0x110001):
        inside = cp < 0x110000 and not (0xD800 <= cp <= 0xDFFF) and unicodedata.category(chr(cp))[0] == first_letter
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            ranges.append((start, cp - 1))
            start = None
    return ranges


def cls(ranges):
    return "".join(re.escape(chr(a)) + ("-" + re.escape(chr(b)) if b > a else "") for a, b in ranges)


L_RANGES, N_RANGES = cls(class_ranges("L")), cls(class_ranges("N"))
WS = cls(WHITE_SPACE)
L, N, S, NS = "[" + L_RANGES + "]", "[" + N_RANGES + "]", "[" + WS + "]", "[^" + WS + "]"
OTHER = "[^" + WS + L_RANGES + N_RANGES + "]"
CONTR_CS = "'s|'t|'re|'ve|'m|'ll|'d"
CONTR_CI = "'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]"  # ASCII folding, as llama.cpp
GPT2_RE = re.compile(CONTR_CS + "| ?" + L + "+| ?" + N + "+| ?" + OTHER + "+|" + S + "+(?!" + NS + ")|" + S + "+")


def llama3_re(digits):
    return re.compile(CONTR_CI + "|[^\\r\\n" + L_RANGES + N_RANGES + "]?" + L + "+|" + N + "{1," + str(digits) + "}"
                      + "| ?" + OTHER + "+[\\r\\n]*|" + S + "*[\\r\\n]+|" + S + "+(?!" + NS + ")|" + S + "+")


LLAMA3_RE, QWEN2_RE = llama3_re(3), llama3_re(1)


def findall_all(rx, s):
    parts = rx.findall(s)
    assert "".join(parts) == s, (rx.pattern[:40], s)
    return parts


def pretokenize(pre, text):
    s = text.decode("utf-8", "surrogateescape")
    if pre == "gpt2":
        parts = findall_all(GPT2_RE, s)
    elif pre == "llama3":
        parts = findall_all(LLAMA3_RE, s)
    elif pre == "qwen2":
        parts = findall_all(QWEN2_RE, s)
    elif pre == "smollm":  # each \p{N} alone first, GPT-2's pattern inside the rest
        parts = []
        for frag in re.split("(" + N + ")", s):
            if frag:
                parts += [frag] if re.fullmatch(N, frag) else findall_all(GPT2_RE, frag)
    else:
        raise ValueError(pre)
    return [p.encode("utf-8", "surrogateescape") for p in parts]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


B2U = bytes_to_unicode()


def to_bl(b):
    return "".join(B2U[x] for x in b).encode()


def build_gpt2_vocab():
    """tokens (raw bytes for specials, else bytes), types, merges as (a, b) bytes."""
    rng = random.Random(7)
    byte_order = list(range(256))
    rng.shuffle(byte_order)  # ids are not bytes
    toks = [bytes([b]) for b in byte_order]
    types = [T_NORMAL] * 256
    words = {}
    for w in pretokenize("llama3", CORPUS.encode()):
        key = tuple(bytes([c]) for c in w)
        words[key] = words.get(key, 0) + 1
    merges = []
    index = {t: i for i, t in enumerate(toks)}
    for _ in range(320):
        counts = {}
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + c
        if not counts:
            break
        best = max(counts.items(), key=lambda kv: (kv[1], [-index[kv[0][0]], -index[kv[0][1]]]))[0]
        new = best[0] + best[1]
        merges.append(best)
        if new not in index:
            index[new] = len(toks)
            toks.append(new)
            types.append(T_NORMAL)
        nw = {}
        for w, c in words.items():
            o, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    o.append(new)
                    i += 2
                else:
                    o.append(w[i])
                    i += 1
            nw[tuple(o)] = nw.get(tuple(o), 0) + c
        words = nw
    # a whole word no merge path reaches (ignore_merges takes it as is)
    toks.append(b" zyzzyva")
    types.append(T_NORMAL)
    for s, ty in ((b"<|begin_of_text|>", T_CONTROL), (b"<|end_of_text|>", T_CONTROL), (b"<|im_start|>", T_CONTROL),
                  (b"<|im_end|>", T_CONTROL), (b"<|user_def|>", T_USER), (b"<|ctrl|>", T_CONTROL)):
        toks.append(s)
        types.append(ty)
    return toks, types, merges


def gpt2_encode(vocab, pre, text, parse_special, ignore_merges):
    toks, types, merges = vocab
    plain = {}
    for i, (t, ty) in enumerate(zip(toks, types)):
        if ty not in (T_CONTROL, T_USER, T_UNKNOWN):
            plain.setdefault(t, i)
    rank = {}
    for r, (a, b) in enumerate(merges):
        rank.setdefault((plain[a], plain[b]), r)
    specials = [(t, i) for i, (t, ty) in enumerate(zip(toks, types))
                if ty == T_USER or (parse_special and ty in (T_CONTROL, T_UNKNOWN))]
    out = []
    for kind, v in partition(text, specials):
        if kind == "tok":
            out.append(v)
            continue
        for w in pretokenize(pre, v):
            if ignore_merges and len(w) > 1 and w in plain:
                out.append(plain[w])
                continue
            sym = [plain[bytes([c])] for c in w]
            while True:
                best, best_r = -1, None
                for i in range(len(sym) - 1):
                    r = rank.get((sym[i], sym[i + 1]))
                    if r is not None and (best_r is None or r < best_r):
                        best, best_r = i, r
                if best < 0:
                    break
                a, b = merges[best_r]
                sym[best:best + 2] = [plain[a + b]]
            out += sym
    return out


def gen_gpt2(strings):
    arrays = {}
    sd, so = pack(strings)
    arrays["str_bytes"], arrays["str_off"] = sd, so
    vocab = build_gpt2_vocab()
    toks, types, merges = vocab
    stored = [t if ty in (T_CONTROL, T_USER) else to_bl(t) for t, ty in zip(toks, types)]
    d, o = pack(stored)
    arrays["tok_bytes"], arrays["tok_off"] = d, o
    arrays["types"] = np.array(types, dtype=np.int32)
    d, o = pack([to_bl(a) + b" " + to_bl(b) for a, b in merges])
    arrays["merge_bytes"], arrays["merge_off"] = d, o
    print("gpt2: %d tokens, %d merges" % (len(toks), len(merges)))
    # pre-tokens of every string (for the scanner test) and encodings
    for pre, ign in (("gpt2", 0), ("llama3", 1), ("qwen2", 0), ("smollm", 0)):
        ends = []
        for s in strings:
            e, p = [], 0
            for w in pretokenize(pre, s):
                p += len(w)
                e.append(p)
            ends.append(e)
        d, o = pack_ids(ends)
        arrays[pre + "_ends"], arrays[pre + "_ends_off"] = d, o
        for sp in (0, 1):
            encs = [gpt2_encode(vocab, pre, s, sp, ign) for s in strings]
            d, o = pack_ids(encs)
            arrays["%s_enc%d" % (pre, sp)], arrays["%s_enc%d_off" % (pre, sp)] = d, o
    # llama3 with ignore_merges off, to see that the switch matters
    encs = [gpt2_encode(vocab, "llama3", s, 0, 0) for s in strings]
    d, o = pack_ids(encs)
    arrays["llama3nomi_enc0"], arrays["llama3nomi_enc0_off"] = d, o
    fixture.write("tokreal_gpt2.bin", arrays)


# --------------------------------------------------------------------------
# Chat templates
# --------------------------------------------------------------------------

# Published templates, verbatim (sources in the comments). "\n" inside the
# Python strings below is what the JSON of tokenizer_config.json decodes to.
TEMPLATES = [
    # teknium/OpenHermes-2.5-Mistral-7B (ChatML), as in llama.cpp tests/test-chat-template.cpp
    ("chatml", None, None,
     "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
     "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"),
    # Qwen/Qwen2-7B-Instruct tokenizer_config.json (llama.cpp tests/chat/templates/Qwen-Qwen2-7B-Instruct.jinja)
    ("chatml", None, "<|im_end|>",
     "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
     "You are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
     "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
     "{% endif %}"),
    # HuggingFaceTB/SmolLM2-135M-Instruct chat_template
    ("chatml", None, "<|im_end|>",
     "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\n"
     "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + "
     "message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
     "{{ '<|im_start|>assistant\\n' }}{% endif %}"),
    # Qwen/Qwen2.5-7B-Instruct (llama.cpp tests/chat/templates/Qwen-Qwen2.5-7B-Instruct.jinja), no tools passed
    ("chatml", None, "<|im_end|>",
     "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n"
     "        {{- messages[0]['content'] }}\n    {%- else %}\n"
     "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n"
     "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\" }}\n"
     "    {{- \"<|im_end|>\\n\" }}\n{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n"
     "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n"
     "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n"
     "    {%- endif %}\n{%- endif %}\n{%- for message in messages %}\n"
     "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or "
     "(message.role == \"assistant\" and not message.tool_calls) %}\n"
     "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
     "    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n"),
    # meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json
    ("llama3", "<|begin_of_text|>", "<|eot_id|>",
     "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
     "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
     "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
     "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"),
    # meta-llama/Llama-2-13b-chat-hf tokenizer_config.json
    ("llama2", "<s>", "</s>",
     "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
     "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
     "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
     "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
     "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
     "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
     "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
     "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"),
    # mistralai/Mistral-7B-Instruct-v0.2 (llama.cpp tests/test-chat-template.cpp)
    ("mistral", "<s>", "</s>",
     "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
     "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
     "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
     "'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles "
     "are supported!') }}{% endif %}{% endfor %}"),
    # HuggingFaceH4/zephyr-7b-beta (alignment-handbook DEFAULT_CHAT_TEMPLATE; TinyLlama-1.1B-Chat-v1.0)
    ("zephyr", "<s>", "</s>",
     "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + "
     "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
     "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
     "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"),
    # google/gemma-7b-it (llama.cpp tests/chat/templates/google-gemma-7b-it.jinja)
    ("gemma", "<bos>", "<eos>",
     "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
     "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
     "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
     "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
     "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
     "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"),
    # not recognised: microsoft/Phi-3-mini-4k-instruct style, and OrionStarAI/Orion-14B-Chat
    ("", None, None,
     "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' + '\n' + "
     "message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}{% elif (message['role'] == 'assistant') %}"
     "{{message['content'] + '<|end|>' + '\n'}}{% endif %}{% endfor %}"),
    ("", None, None,
     "{% for message in messages %}{% if loop.first %}{{ bos_token }}{% endif %}{% if message['role'] == 'user' %}"
     "{{ 'Human: ' + message['content'] + '\\n\\nAssistant: ' + eos_token }}{% elif message['role'] == 'assistant' %}"
     "{{ message['content'] + eos_token }}{% endif %}{% endfor %}"),
]

CONVERSATIONS = [
    [("system", "You are a helpful assistant"), ("user", "Hello"), ("assistant", "Hi there"),
     ("user", "Who are you"), ("assistant", "   I am an assistant   "), ("user", "Another question")],
    [("user", "\u00a0Bonjour\u3000"), ("assistant", " Salut \n"), ("user", "\x1c x \t")],
    [("user", "Just one")],
    [("user", "first"), ("user", "second")],  # not alternating
    [("system", "  sys  "), ("user", "   ")],
]


def gen_chat():
    try:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        print("chat: jinja2 is not installed (apt-get install python3-jinja2); tokreal_chat.bin left as it is")
        return

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    arrays = {}
    for c, conv in enumerate(CONVERSATIONS):
        arrays["conv_%d_n" % c] = np.array([len(conv)], dtype=np.int32)
        for k, (role, content) in enumerate(conv):
            arrays["conv_%d_%d_role" % (c, k)] = pack([role.encode()])[0]
            arrays["conv_%d_%d_content" % (c, k)] = pack([content.encode()])[0]
    arrays["n_conv"] = np.array([len(CONVERSATIONS)], dtype=np.int32)
    arrays["n_tpl"] = np.array([len(TEMPLATES)], dtype=np.int32)
    for i, (name, bos, eos, text) in enumerate(TEMPLATES):
        arrays["tpl_%d" % i] = pack([text.encode()])[0]
        arrays["name_%d" % i] = pack([name.encode()])[0]
        arrays["bos_%d" % i] = pack([(bos or "").encode()])[0]
        arrays["eos_%d" % i] = pack([(eos or "").encode()])[0]
        arrays["hasbos_%d" % i] = np.array([bos is not None, eos is not None], dtype=np.int32)
        if not name:
            continue
        tpl = env.from_string(text)
        for c, conv in enumerate(CONVERSATIONS):
            msgs = [{"role": r, "content": t} for r, t in conv]
            for g in (0, 1):
                key = "out_%d_%d_%d" % (i, c, g)
                try:
                    out = tpl.render(messages=msgs, add_generation_prompt=bool(g), bos_token=bos or "",
                                     eos_token=eos or "", tools=None)
                    arrays[key] = pack([out.encode()])[0]
                except jinja2.exceptions.TemplateError:
                    arrays[key + "_err"] = np.array([1], dtype=np.int32)
    fixture.write("tokreal_chat.bin", arrays)
    print("chat: %d templates x %d conversations" % (len(TEMPLATES), len(CONVERSATIONS)))


if __name__ == "__main__":
    strings = test_strings()
    gen_spm(strings)
    gen_gpt2(strings)
    gen_chat()
