"""gen_gguf.py — GGUF test files written from the spec (ggml docs/gguf.md)
with struct and numpy only, independent of duet's reader and writer.

  gguf_all.gguf       v3, default alignment 32: every metadata type, arrays
                      of every scalar type, string arrays with empty/UTF-8/NUL
                      strings, nested arrays (8 deep), every supported tensor
                      type plus a known-but-unsupported one (q2_K) and an
                      empty tensor; tensor data placed in reverse order of the
                      infos with a gap (legal: only offsets matter)
  gguf_align64.gguf   v2, general.alignment = 64, odd tensor sizes
  gguf_golden.gguf    exactly the file duet's writer must produce for the
                      inputs test_gguf.c gives it (keys in order, v3, data
                      padded to 64 after every tensor)
  gguf_bad_*.gguf     one malformation each; BAD below lists the status and
                      the words the error message must contain (written to
                      gguf_expect.bin as well, for the C test)
  gguf_expect.bin     (DUETFIX1) per tensor of gguf_all / gguf_align64:
                      <file>:<name>.bytes (i32 per byte), .values (f32, the
                      numpy dequantization of gen_quant.py), .ne, .type
"""
import struct

import numpy as np

import fixture
import gen_quant

UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
PACK = {UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i",
        FLOAT32: "<f", BOOL: "<B", UINT64: "<Q", INT64: "<q", FLOAT64: "<d"}
QTYPES = {name: num for name, (num, bs, size) in gen_quant.TYPES.items()}
QTYPES["q2_K"] = 10
QSIZE = {name: (bs, size) for name, (num, bs, size) in gen_quant.TYPES.items()}
QSIZE["q2_K"] = (256, 84)


def gstr(b):
    if isinstance(b, str):
        b = b.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def val(t, v):
    """The encoding of a value of type t (after its type tag)."""
    if t == STRING:
        return gstr(v)
    if t == ARRAY:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(val(et, x) for x in items)
    return struct.pack(PACK[t], v)


def kv(key, t, v):
    return gstr(key) + struct.pack("<I", t) + val(t, v)


def tinfo(name, ne, qtype, offset):
    return (gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
            + struct.pack("<IQ", qtype, offset))


def pad(n, a):
    return (a - n % a) % a


def gguf(kvs, tensors, alignment=32, version=3, data_order=None, gap=0):
    """kvs: list of (key, type, value); tensors: list of (name, ne, qtype name,
    bytes). Data is placed in data_order (default: info order), each tensor
    padded to the alignment, with `gap` extra aligned units before the first."""
    order = data_order if data_order is not None else list(range(len(tensors)))
    offsets, off = {}, gap * alignment
    for i in order:
        offsets[i] = off
        off += len(tensors[i][3]) + pad(len(tensors[i][3]), alignment)
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    head += b"".join(kv(*x) for x in kvs)
    head += b"".join(tinfo(n, ne, QTYPES[q], offsets[i]) for i, (n, ne, q, _) in enumerate(tensors))
    head += b"\0" * pad(len(head), alignment)
    data = bytearray(b"\0" * off)
    for i in order:
        b = tensors[i][3]
        data[offsets[i]:offsets[i] + len(b)] = b
    return head + bytes(data)


def tensor_bytes(qname, ne, seed):
    bs, size = QSIZE[qname]
    n = int(np.prod(ne)) if len(ne) else 1
    nb = n // bs
    if qname == "q2_K":
        return np.random.default_rng(seed).integers(0, 256, nb * size, dtype=np.uint8).tobytes()
    if nb == 0:
        return b""
    return gen_quant.random_blocks(qname, nb).reshape(-1).tobytes()


def write(name, data):
    with open(fixture.os.path.join(fixture.FIXTURES, name), "wb") as f:
        f.write(data)


# ---- gguf_all.gguf -------------------------------------------------------

ALL_KVS = [
    ("general.architecture", STRING, "llama"),
    ("general.name", STRING, "duet test ünïcode"),
    ("t.u8", UINT8, 200), ("t.i8", INT8, -100), ("t.u16", UINT16, 60000), ("t.i16", INT16, -30000),
    ("t.u32", UINT32, 4000000000), ("t.i32", INT32, -2000000000), ("t.f32", FLOAT32, 3.25),
    ("t.bool_t", BOOL, 1), ("t.bool_f", BOOL, 0), ("t.str_empty", STRING, ""),
    ("t.str_nul", STRING, b"a\0b"), ("t.u64", UINT64, 2**64 - 1), ("t.i64", INT64, -2**63),
    ("t.f64", FLOAT64, -1.5e300),
    ("tokenizer.ggml.tokens", ARRAY, (STRING, ["<unk>", "<s>", "</s>", "a", " the", "", "ü", "<0x0A>"])),
    ("tokenizer.ggml.scores", ARRAY, (FLOAT32, [0.0, -1.5, -2.0, -3.25, -4.0, -5.5, -6.0, -1e9])),
    ("tokenizer.ggml.token_type", ARRAY, (INT32, [2, 3, 3, 1, 1, 1, 1, 6])),
    ("tokenizer.ggml.merges", ARRAY, (STRING, ["a b", " t he"])),
    ("t.arr_u8", ARRAY, (UINT8, [0, 1, 255])), ("t.arr_i8", ARRAY, (INT8, [-128, 0, 127])),
    ("t.arr_u16", ARRAY, (UINT16, [65535, 1])), ("t.arr_i16", ARRAY, (INT16, [-32768, 32767])),
    ("t.arr_u32", ARRAY, (UINT32, [4294967295, 7])), ("t.arr_u64", ARRAY, (UINT64, [2**64 - 1, 2**63])),
    ("t.arr_i64", ARRAY, (INT64, [-2**63, 2**63 - 1])), ("t.arr_f64", ARRAY, (FLOAT64, [0.1, -2.5])),
    ("t.arr_bool", ARRAY, (BOOL, [1, 0, 1])), ("t.arr_empty", ARRAY, (UINT32, [])),
    ("t.nested", ARRAY, (ARRAY, [(INT16, [1, 2, 3]), (INT16, []), (INT16, [4])])),
    ("t.nested_str", ARRAY, (ARRAY, [(STRING, ["x", "yy"]), (STRING, ["zzz"])])),
    ("t.deep", ARRAY, (ARRAY, [(ARRAY, [(ARRAY, [(ARRAY, [(ARRAY, [(ARRAY, [(ARRAY, [(UINT8, [7])])])])])])])])),
    ("llama.context_length", UINT32, 4096), ("llama.rope.freq_base", FLOAT32, 10000.0),
]

ALL_TENSORS = [("tok_embd.weight", [8, 3], "f32"), ("f16.w", [16, 2], "f16"), ("bf16.w", [8, 2, 2], "bf16"),
               ("q4_0.w", [64, 2], "q4_0"), ("q4_1.w", [32, 3], "q4_1"), ("q5_0.w", [32, 1, 2, 1], "q5_0"),
               ("q5_1.w", [96], "q5_1"), ("q8_0.w", [32, 2], "q8_0"), ("q4_K.w", [256, 2], "q4_K"),
               ("q5_K.w", [256], "q5_K"), ("q6_K.w", [512, 1], "q6_K"), ("q2_K.w", [256], "q2_K"),
               ("empty.w", [4, 0], "f32")]

ALIGN64_TENSORS = [("a", [5], "f32"), ("b", [32, 3], "q8_0"), ("c", [7, 3], "f16")]


def expect_arrays(prefix, tensors):
    out = {}
    for name, ne, q, data in tensors:
        key = prefix + ":" + name
        out[key + ".bytes"] = np.frombuffer(data, dtype=np.uint8).astype(np.int32) if data else np.zeros(0, np.int32)
        out[key + ".ne"] = np.array(ne, dtype=np.int32)
        out[key + ".type"] = np.array([QTYPES[q]], dtype=np.int32)
        if q != "q2_K":
            nb = len(data) // QSIZE[q][1]
            vals = gen_quant.dequant(q, np.frombuffer(data, np.uint8).reshape(nb, QSIZE[q][1])) if nb else np.zeros(0, np.float32)
            out[key + ".values"] = vals.astype(np.float32)
    return out


# ---- the golden file (test_gguf.c builds the same with duet's writer) ----

def golden():
    def tbytes(j, n):  # byte k of tensor j
        return bytes(((k * 31 + j * 7 + 1) & 0xFF) for k in range(n))
    kvs = [
        ("general.alignment", UINT32, 64),
        ("general.architecture", STRING, "duet"),
        ("g.u8", UINT8, 7), ("g.i8", INT8, -7), ("g.u16", UINT16, 65535), ("g.i16", INT16, -32768),
        ("g.u32", UINT32, 123456789), ("g.i32", INT32, -123456789),
        ("g.f32", FLOAT32, float(np.float32(0.1))), ("g.bool", BOOL, 1),
        ("g.u64", UINT64, 2**64 - 1), ("g.i64", INT64, -2**63), ("g.f64", FLOAT64, 1.0 / 3.0),
        ("g.str", STRING, "hello GGUF"),
        ("g.arr_f32", ARRAY, (FLOAT32, [1.5, -2.25, float(np.float32(1e-3))])),
        ("g.arr_i32", ARRAY, (INT32, [1, -2, 3, 2147483647])),
        ("g.arr_str", ARRAY, (STRING, ["a", "", "üñ"])),
        ("g.nested", ARRAY, (ARRAY, [(UINT8, [1, 2]), (UINT8, [3])])),
    ]
    shapes = [("a", [3, 2], "f32"), ("b", [32, 3], "q8_0"), ("c", [5], "f16"), ("d", [256, 1, 1, 2], "q4_K")]
    tensors = []
    for j, (n, ne, q) in enumerate(shapes):
        bs, size = QSIZE[q]
        nbytes = int(np.prod(ne)) // bs * size
        tensors.append((n, ne, q, tbytes(j, nbytes)))
    return gguf(kvs, tensors, alignment=64, version=3)


# ---- malformed files ---------------------------------------------------------

def small(kvs=None, tensors=None, **kw):
    kvs = kvs if kvs is not None else [("general.architecture", STRING, "x")]
    tensors = tensors if tensors is not None else [("w", [32], "f32", b"\1" * 128)]
    return gguf(kvs, tensors, **kw)


def bad_files():
    ok = small()
    out = {}
    # (status: 3 FORMAT, 6 UNSUPPORTED), message words, bytes
    out["magic"] = (3, "magic", b"GGUX" + ok[4:])
    out["empty"] = (3, "magic", b"")
    out["v1"] = (6, "version 1", ok[:4] + struct.pack("<I", 1) + ok[8:])
    out["v4"] = (6, "version 4", ok[:4] + struct.pack("<I", 4) + ok[8:])
    out["v0"] = (3, "version 0", ok[:4] + struct.pack("<I", 0) + ok[8:])
    out["bigendian"] = (6, "big-endian", ok[:4] + struct.pack(">I", 3) + ok[8:])
    out["trunc_header"] = (3, "tensor_count", ok[:10])
    out["kv_count_huge"] = (3, "metadata_kv_count", ok[:16] + struct.pack("<Q", 2**62) + ok[24:])
    out["tensor_count_huge"] = (3, "tensor_count", ok[:8] + struct.pack("<Q", 2**40) + ok[16:])
    hdr = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    out["key_len_huge"] = (3, "key has length", hdr + struct.pack("<Q", 2**63 + 5) + b"abc" + b"\0" * 32)
    out["key_empty"] = (3, "key is empty", hdr + gstr("") + struct.pack("<I", UINT8) + b"\1")
    out["key_nul"] = (3, "NUL", hdr + gstr(b"a\0b") + struct.pack("<I", UINT8) + b"\1")
    out["value_type"] = (3, "value type 13", hdr + gstr("k") + struct.pack("<I", 13) + b"\0" * 8)
    out["bool"] = (3, "bool value is 2", hdr + gstr("k") + struct.pack("<I", BOOL) + b"\2")
    out["bool_arr"] = (3, "element[2]", hdr + gstr("k") + struct.pack("<IIQ", ARRAY, BOOL, 3) + b"\0\1\5")
    out["elem_type"] = (3, "array element type 99", hdr + gstr("k") + struct.pack("<IIQ", ARRAY, 99, 1) + b"\0" * 8)
    out["arr_count"] = (3, "array of", hdr + gstr("k") + struct.pack("<IIQ", ARRAY, UINT32, 2**40) + b"\0" * 16)
    out["str_len"] = (3, "string has length", hdr + gstr("k") + struct.pack("<IQ", STRING, 1000) + b"abc")
    deep = (UINT8, [1])
    for _ in range(8):
        deep = (ARRAY, [deep])
    out["nest_deep"] = (3, "nested more than 8", hdr + kv("k", ARRAY, deep))
    out["dup_key"] = (3, "duplicate key", small(kvs=[("a", UINT8, 1), ("b", UINT8, 2), ("a", UINT8, 3)]))
    out["align_type"] = (3, "must be a uint32", small(kvs=[("general.alignment", UINT64, 32)]))
    out["align_npot"] = (3, "not a power of two", small(kvs=[("general.alignment", UINT32, 48)]))
    out["align_zero"] = (3, "not a power of two", small(kvs=[("general.alignment", UINT32, 0)]))
    t = struct.pack("<IQQ", 3, 1, 0)

    def tfile(info, data=b"\0" * 64):
        h = b"GGUF" + t + info
        return h + b"\0" * pad(len(h), 32) + data
    out["name_long"] = (3, "name is 65 bytes", tfile(tinfo("n" * 65, [32], 0, 0)))
    out["name_empty"] = (3, "name is empty", tfile(tinfo("", [32], 0, 0)))
    out["ndims"] = (3, "n_dims is 5", tfile(tinfo("w", [1, 1, 1, 1, 1], 0, 0)))
    out["dim_overflow"] = (3, "overflows", tfile(tinfo("w", [2**40, 2**40], 0, 0)))
    out["dim_huge"] = (3, "too large", tfile(tinfo("w", [2**63], 0, 0)))
    out["qtype"] = (3, "tensor type 4", tfile(tinfo("w", [32], 4, 0)))
    out["qtype_big"] = (3, "tensor type 4000", tfile(tinfo("w", [32], 4000, 0)))
    out["ne0_block"] = (3, "not a multiple of the q4_0 block", tfile(tinfo("w", [48], 2, 0)))
    out["offset_align"] = (3, "not a multiple of the alignment", tfile(tinfo("w", [4], 0, 16)))
    out["past_end"] = (3, "past the end", tfile(tinfo("w", [32], 0, 0), b"\0" * 100))
    out["offset_huge"] = (3, "past the end", tfile(tinfo("w", [8], 0, 2**64 - 32)))
    two = small(tensors=[("a", [8], "f32", b"\0" * 32), ("b", [8], "f32", b"\0" * 32)])
    i = two.index(b"\x01\x00\x00\x00\x00\x00\x00\x00b")  # the second info's name (len 1, "b")
    off_at = i + 8 + 1 + 4 + 8 + 4                             # ...its offset field
    out["overlap"] = (3, "overlaps", two[:off_at] + struct.pack("<Q", 0) + two[off_at + 8:])
    out["dup_tensor"] = (3, "duplicate tensor name",
                         small(tensors=[("a", [8], "f32", b"\0" * 32), ("a", [8], "f32", b"\0" * 32)]))
    out["trunc_info"] = (3, "offset needs 8 bytes", ok[:ok.index(b"w") + 1 + 4 + 8 + 4 + 3])
    return out


def main():
    rng_seed = 0
    all_t = [(n, ne, q, tensor_bytes(q, ne, rng_seed + i)) for i, (n, ne, q) in enumerate(ALL_TENSORS)]
    order = list(reversed(range(len(all_t))))
    write("gguf_all.gguf", gguf(ALL_KVS, all_t, alignment=32, version=3, data_order=order, gap=1))
    a64 = [(n, ne, q, tensor_bytes(q, ne, 50 + i)) for i, (n, ne, q) in enumerate(ALIGN64_TENSORS)]
    a64_kvs = [("general.architecture", STRING, "test"), ("general.alignment", UINT32, 64)]
    write("gguf_align64.gguf", gguf(a64_kvs, a64, alignment=64, version=2))
    write("gguf_golden.gguf", golden())
    bad = bad_files()
    names = sorted(bad)
    for name in names:
        write("gguf_bad_%s.gguf" % name, bad[name][2])
    arrays = expect_arrays("all", all_t)
    arrays.update(expect_arrays("align64", a64))
    arrays["bad.names"] = np.frombuffer("\n".join(names).encode(), np.uint8).astype(np.int32)
    arrays["bad.status"] = np.array([bad[n][0] for n in names], np.int32)
    arrays["bad.words"] = np.frombuffer("\n".join(bad[n][1] for n in names).encode(), np.uint8).astype(np.int32)
    fixture.write("gguf_expect.bin", arrays)


if __name__ == "__main__":
    main()
