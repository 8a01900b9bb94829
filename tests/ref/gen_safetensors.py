"""gen_safetensors.py — safetensors fixtures written and read independently of duet.

Writes, with nothing but json + struct + numpy (the spec is the reference:
https://github.com/huggingface/safetensors "Format"):
  tests/fixtures/st_<name>.safetensors         well-formed files
  tests/fixtures/st_<name>_expect.bin          what each holds (DUETFIX1, see fixture.py):
      "<tensor>"        the values (f32 for F32/F16/BF16, i32 for I32/U8/I8, f64 for I64/F64)
      "<tensor>.bits"   raw 16-bit patterns of F16/BF16 tensors
      "<tensor>.dtype"  the spec dtype name as character codes
      "<tensor>.shape"  the shape (i32; empty for 0-d tensors)
      "<tensor>.order"  position of the tensor in data order
      "@meta.<key>"     metadata values as character codes (UTF-8 bytes)
  tests/fixtures/st_bad_<what>.safetensors     malformed files (tests/test_safetensors.c
                                               knows which rule each breaks)
Then the independent readback: builds build/tests/test_safetensors, runs it with
--write-golden to write tests/fixtures/st_duet_written.safetensors with duet's
writer, parses that file here with json + struct, and raises unless every dtype,
shape, value and metadata entry equals GOLDEN below and the layout follows the
spec (8-byte size, header padded with spaces to a multiple of 8, metadata
first, insertion order, contiguous offsets covering the buffer). The C test
re-writes the same tensors and compares bytes with that committed file.
"""
import json
import os
import struct
import subprocess
import sys

import numpy as np

import fixture

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FIX = fixture.FIXTURES

SIZES = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "U8": 1, "I8": 1}
NP = {"F64": "<f8", "I64": "<i8", "F32": "<f4", "I32": "<i4", "F16": "<f2", "BF16": "<u2",
      "U8": "u1", "I8": "i1"}


def path_of(name):
    return os.path.join(FIX, name)


def bf16_bits(x):
    """float32 -> bfloat16 bits, round to nearest even (values here are finite)."""
    u = np.asarray(x, dtype="<f4").view("<u4").astype(np.uint64)
    r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return r.astype("<u2")


def to_bytes(dtype, values):
    if dtype == "BF16":
        return bf16_bits(values).tobytes()
    return np.asarray(values).astype(NP[dtype]).tobytes()


def write_file(fname, tensors, metadata=None, data_order=None, header_order=None,
               ensure_ascii=False, extra_pad=0, align=8, header_mod8=None):
    """tensors: list of (name, dtype, shape, values). Data is laid out in data_order
    (default: as given); the header lists keys in header_order (default: as given).
    The header is padded with spaces so 8 + N is a multiple of `align` (then
    extra_pad more spaces); align=1 means no padding; header_mod8=k pads so that
    N % 8 == k instead (a deliberately misaligned data buffer)."""
    data_order = data_order or [t[0] for t in tensors]
    header_order = header_order or [t[0] for t in tensors]
    by_name = {t[0]: t for t in tensors}
    blobs, offs, off = [], {}, 0
    for name in data_order:
        _, dt, shape, vals = by_name[name]
        b = to_bytes(dt, vals)
        assert len(b) == int(np.prod(shape, dtype=np.int64)) * SIZES[dt]
        offs[name] = (off, off + len(b))
        blobs.append(b)
        off += len(b)
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    for name in header_order:
        _, dt, shape, _ = by_name[name]
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": list(offs[name])}
    h = json.dumps(header, ensure_ascii=ensure_ascii, separators=(",", ":")).encode("utf-8")
    if align > 1:
        h += b" " * ((-(8 + len(h))) % align)
    h += b" " * extra_pad
    if header_mod8 is not None:
        h += b" " * ((header_mod8 - len(h)) % 8)
    with open(path_of(fname), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    return data_order


def codes(s):
    return np.frombuffer(s.encode("utf-8"), dtype=np.uint8).astype(np.int32)


def write_expect(fname, tensors, metadata, data_order):
    arrays = {}
    for name, dt, shape, vals in tensors:
        v = np.asarray(vals)
        if dt in ("F32", "F16", "BF16"):
            if dt == "F16":
                h = v.astype("<f2")
                arrays[name + ".bits"] = h.view("<u2").astype(np.int32).reshape(shape)
                arrays[name] = h.astype(np.float32).reshape(shape)
            elif dt == "BF16":
                b = bf16_bits(v)
                arrays[name + ".bits"] = b.astype(np.int32).reshape(shape)
                arrays[name] = (b.astype(np.uint32) << 16).view(np.float32).reshape(shape)
            else:
                arrays[name] = v.astype(np.float32).reshape(shape)
        elif dt in ("I64", "F64"):
            arrays[name] = v.astype(np.float64).reshape(shape)
            if dt == "I64":  # values below are chosen exact in f64
                assert (arrays[name].astype(np.int64) == v.astype(np.int64)).all()
        else:
            arrays[name] = v.astype(np.int32).reshape(shape)
        arrays[name + ".dtype"] = codes(dt)
        # fixture.write makes 0-d arrays 1-d, so the shape travels on its own
        arrays[name + ".shape"] = np.array(shape, dtype=np.int32).reshape(len(shape))
        arrays[name + ".order"] = np.array([data_order.index(name)], dtype=np.int32)
    for k, val in (metadata or {}).items():
        arrays["@meta." + k] = codes(val)
    # name lists, NUL-separated (names may contain '.', so they cannot be
    # recovered from the array names)
    arrays["@names"] = codes("\0".join(data_order)) if data_order else np.zeros(0, np.int32)
    keys = list((metadata or {}).keys())
    arrays["@meta_keys"] = codes("\0".join(keys)) if keys else np.zeros(0, np.int32)
    fixture.write(fname, arrays)


rng = np.random.default_rng(7)

# ---- well-formed files ----------------------------------------------------------

BASIC = [
    ("w_f32", "F32", [2, 3], rng.standard_normal(6).astype(np.float32)),
    ("h_f16", "F16", [5], np.array([0.5, -2.0, 65504.0, 5.9604645e-08, 0.1], np.float32)),
    ("b_bf16", "BF16", [3], np.array([1.0, -3.140625, 1e-3], np.float32)),
    ("i_i32", "I32", [2, 2], np.array([-2147483648, -1, 0, 2147483647], np.int64)),
    ("i_i64", "I64", [3], np.array([(1 << 40) + 3, -(1 << 62), 7], np.int64)),
    ("u_u8", "U8", [5], np.array([0, 1, 127, 128, 255], np.int64)),
    ("s_i8", "I8", [4], np.array([-128, -1, 0, 127], np.int64)),
    ("d_f64", "F64", [2], np.array([np.pi, -1e300])),
    ("scalar", "F32", [], np.array(3.25, np.float32)),
    ("empty", "F32", [0, 4], np.zeros(0, np.float32)),
    ("ß/ñame.权重", "F32", [2], np.array([1.5, -0.25], np.float32)),
]
META = {"format": "pt", "note": 'héllo "quoted" \\ back\nslash\ttab', "日本": "語"}
# data from the widest elements down (keeps every tensor aligned), header in
# another order: the reader must not assume they agree
order = ["d_f64", "i_i64", "w_f32", "i_i32", "scalar", "empty", "ß/ñame.权重", "h_f16", "b_bf16",
         "u_u8", "s_i8"]
hdr = sorted(order, reverse=True)
write_file("st_basic.safetensors", BASIC, META, data_order=order, header_order=hdr)
write_expect("st_basic_expect.bin", BASIC, META, order)

# same content, header \u-escaped (surrogate pair for the emoji), extra padding
ESC = BASIC + [("emoji_😀", "F16", [1, 1], np.array([-1.0], np.float32))]
META2 = dict(META, smile="😀 \u0001 end")
order2 = order + ["emoji_😀"]
write_file("st_escaped.safetensors", ESC, META2, data_order=order2,
           header_order=sorted(order2), ensure_ascii=True, extra_pad=24)
write_expect("st_escaped_expect.bin", ESC, META2, order2)

# no header padding and a U8 tensor first: F32/F16 data land misaligned
UNAL = [
    ("a_u8", "U8", [3], np.array([9, 8, 7], np.int64)),
    ("b_f32", "F32", [4], np.array([1.0, -2.5, 3.75, 1e-30], np.float32)),
    ("c_f16", "F16", [2], np.array([0.333, -7.0], np.float32)),
    ("d_i64", "I64", [1], np.array([-5], np.int64)),
]
write_file("st_unaligned.safetensors", UNAL, None, align=1, header_mod8=3)
with open(path_of("st_unaligned.safetensors"), "rb") as f:
    assert struct.unpack("<Q", f.read(8))[0] % 8 != 0, "meant to be unaligned"
write_expect("st_unaligned_expect.bin", UNAL, None, [t[0] for t in UNAL])

# no tensors at all, only metadata
write_file("st_meta_only.safetensors", [], {"only": "metadata"})
write_expect("st_meta_only_expect.bin", [], {"only": "metadata"}, [])

# ---- malformed files --------------------------------------------------------------


def raw(fname, header, data=b"", n=None, pad=True):
    """header: dict (json-dumped) or bytes; n overrides the size field."""
    h = header if isinstance(header, bytes) else json.dumps(header).encode("utf-8")
    if pad:
        h += b" " * ((-(8 + len(h))) % 8)
    with open(path_of(fname), "wb") as f:
        f.write(struct.pack("<Q", len(h) if n is None else n) + h + data)


def ent(dt, shape, b, e):
    return {"dtype": dt, "shape": shape, "data_offsets": [b, e]}


z16 = bytes(16)
z24 = bytes(24)
with open(path_of("st_bad_short.safetensors"), "wb") as f:
    f.write(b"\x10\x00\x00\x00\x00")
raw("st_bad_header_trunc.safetensors", {"a": ent("F32", [4], 0, 16)}, n=1000)  # header cut off
raw("st_bad_header_eof.safetensors", {"a": ent("F32", [4], 0, 16)}, z16, n=50_000_000)
raw("st_bad_header_huge.safetensors", {"a": ent("F32", [4], 0, 16)}, z16, n=200_000_000)
raw("st_bad_json.safetensors", b'{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]', z16)
raw("st_bad_not_object.safetensors", b"[1, 2, 3]", z16)
raw("st_bad_dtype.safetensors", {"a": ent("F12", [4], 0, 16)}, z16)
raw("st_bad_unsupported.safetensors", {"a": ent("F8_E4M3", [4], 0, 4)}, bytes(4))
raw("st_bad_past_end.safetensors", {"w": ent("F32", [100], 0, 400)}, z24)
raw("st_bad_overlap.safetensors", {"a": ent("F32", [4], 0, 16), "b": ent("F32", [4], 8, 24)}, z24)
raw("st_bad_gap.safetensors", {"a": ent("F32", [4], 0, 16), "b": ent("F32", [4], 24, 40)},
    bytes(40))
raw("st_bad_trailing.safetensors", {"a": ent("F32", [4], 0, 16)}, z24)
raw("st_bad_nbytes.safetensors", {"w1": ent("F32", [5, 6], 0, 100)}, bytes(100))
raw("st_bad_neg_shape.safetensors", {"a": ent("F32", [-1, 4], 0, 16)}, z16)
raw("st_bad_frac_shape.safetensors", {"a": ent("F32", [2.5], 0, 16)}, z16)
raw("st_bad_overflow.safetensors", {"a": ent("F32", [1 << 62, 1 << 62, 4], 0, 16)}, z16)
raw("st_bad_meta_value.safetensors",
    {"__metadata__": {"ok": "x", "epoch": 3}, "a": ent("F32", [4], 0, 16)}, z16)
raw("st_bad_dup_key.safetensors",
    b'{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},'
    b'"a":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}}', bytes(32))
raw("st_bad_offsets_type.safetensors", {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0]}},
    z16)
raw("st_bad_offsets_order.safetensors", {"a": ent("F32", [0], 16, 8)}, z16)
raw("st_bad_missing_field.safetensors", {"a": {"dtype": "F32", "data_offsets": [0, 16]}}, z16)
raw("st_bad_entry_type.safetensors", {"a": "F32"}, z16)
raw("st_bad_utf8.safetensors", b'{"a\xff":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', z16)
# a valid file whose data was cut short by 4 bytes
write_file("st_bad_data_trunc.safetensors", BASIC[:2], None)
with open(path_of("st_bad_data_trunc.safetensors"), "rb") as f:
    whole = f.read()
with open(path_of("st_bad_data_trunc.safetensors"), "wb") as f:
    f.write(whole[:-4])

# ---- the independent readback of duet's writer ---------------------------------------

GOLDEN_META = [("format", "duet"), ("step", "1234"), ("note", 'tab\there "q" \\ é 😀')]
GOLDEN = [  # name, dtype, shape, values (exact in their dtype)
    ("tok_emb.weight", "F32", [4, 3], (np.arange(12) - 5) * 0.25),
    ("ln.bias", "F16", [5], [1.0, -0.5, 0.125, 65504.0, -0.0009765625]),
    ("proj.w", "BF16", [2, 2], [1.5, -2.0, 0.15625, 256.0]),
    ("ids", "I32", [3], [-7, 0, 2147483647]),
    ("big", "I64", [2], [-(1 << 63), 1 << 40]),
    ("mask", "U8", [4], [0, 1, 200, 255]),
    ("s", "I8", [2], [-128, 127]),
    ("d", "F64", [1], [0.1]),
    ("scalar", "F32", [], [2.5]),
    ("empty", "F32", [0], []),
    ("ünïcode/名前", "F32", [1], [-1.0]),
]


def read_st(path):
    """A from-the-spec reader (json + struct); returns (N, raw header, header, buffer)."""
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    raw_h = blob[8:8 + n]
    return n, raw_h, json.loads(raw_h.decode("utf-8")), blob[8 + n:]


def check_golden(path):
    n, raw_h, header, buf = read_st(path)
    if (8 + n) % 8:
        raise AssertionError("header not padded to a multiple of 8: N=%d" % n)
    body = raw_h.rstrip(b" ")
    if not body.endswith(b"}"):
        raise AssertionError("header padding is not spaces")
    keys = list(header.keys())
    if keys[0] != "__metadata__" or keys[1:] != [g[0] for g in GOLDEN]:
        raise AssertionError("key order %r" % keys)
    if list(header["__metadata__"].items()) != GOLDEN_META:
        raise AssertionError("metadata %r" % header["__metadata__"])
    off = 0
    for name, dt, shape, vals in GOLDEN:
        e = header[name]
        if set(e) != {"dtype", "shape", "data_offsets"}:
            raise AssertionError("%s: fields %r" % (name, sorted(e)))
        if e["dtype"] != dt or e["shape"] != shape:
            raise AssertionError("%s: dtype/shape %r %r" % (name, e["dtype"], e["shape"]))
        b, end = e["data_offsets"]
        if b != off:
            raise AssertionError("%s: offsets %r, expected to start at %d" % (name, (b, end), off))
        want = to_bytes(dt, np.asarray(vals, dtype=np.float64 if dt[0] in "FB" else np.int64))
        got = buf[b:end]
        if got != want:
            raise AssertionError("%s: bytes differ: %r vs %r" % (name, got[:32], want[:32]))
        if dt == "BF16":  # the values are exact in bf16: decode and compare as numbers too
            dec = (np.frombuffer(got, "<u2").astype(np.uint32) << 16).view(np.float32)
            if not np.array_equal(dec, np.asarray(vals, np.float32)):
                raise AssertionError("%s: values %r" % (name, dec))
        elif len(got):
            dec = np.frombuffer(got, NP[dt]).astype(np.float64)
            if not np.array_equal(dec, np.asarray(vals, np.float64)):
                raise AssertionError("%s: values %r" % (name, dec))
        off = end
    if off != len(buf):
        raise AssertionError("buffer is %d bytes, tensors cover %d" % (len(buf), off))


def golden():
    out = path_of("st_duet_written.safetensors")
    subprocess.run(["make", "-j2", "build/tests/test_safetensors"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["./build/tests/test_safetensors", "--write-golden", out], cwd=ROOT, check=True)
    check_golden(out)
    print("gen_safetensors: duet-written file verified independently:", out)


if __name__ == "__main__":
    if os.environ.get("DUET_SKIP_GOLDEN") != "1":
        golden()
