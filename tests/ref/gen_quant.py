"""gen_quant.py — an independent numpy reading of ggml's block layouts
(ggml/src/ggml-common.h, dequantize_row_* in ggml-quants.c), written from
the layout description, not from duet's C code.

For every type duet supports it makes random blocks (random bytes, then
finite f16 scales — ordinary, zero, negative, subnormal and the largest f16)
and the floats ggml's dequantization gives for them. Every value is computed
with float32 operations in ggml's order, so the C test can demand bit
equality:
  Q4_0/Q5_0/Q8_0:  (q - off) * d
  Q4_1/Q5_1:       q * d + m
  Q4_K/Q5_K:       (d * sc) * q - (dmin * m)
  Q6_K:            (d * sc) * (q - 32)
  Q8_K:            d * q         (d is an f32)

Writes tests/fixtures/quant_blocks.bin with, per type name T:
  T.blocks  i32 [nblocks * type_size]  the raw bytes
  T.values  f32 [nblocks * block_size] the dequantized values
"""
import numpy as np

import fixture

F32 = np.float32
rng = np.random.default_rng(20240607)

# name: (ggml number, block size, bytes per block)
TYPES = {
    "f32": (0, 1, 4), "f16": (1, 1, 2), "bf16": (30, 1, 2),
    "q4_0": (2, 32, 18), "q4_1": (3, 32, 20), "q5_0": (6, 32, 22), "q5_1": (7, 32, 24),
    "q8_0": (8, 32, 34), "q4_K": (12, 256, 144), "q5_K": (13, 256, 176),
    "q6_K": (14, 256, 210), "q8_K": (15, 256, 292),
}


def f16_scales(n):
    """n finite f16 values as uint16: mostly ordinary scales of both signs,
    plus zero, a subnormal, the largest f16 and a tiny normal."""
    v = (rng.uniform(0.5, 2.0, n) * 2.0 ** rng.integers(-12, 3, n)).astype(np.float16)
    v = np.where(rng.random(n) < 0.3, -v, v).astype(np.float16)
    special = np.array([0.0, -0.0, 5.96e-8, 65504.0, 6.1e-5, -3.0e-6], dtype=np.float16)
    k = min(n, len(special))
    v[:k] = special[rng.permutation(len(special))[:k]]
    return v.view(np.uint16)


def put_u16(blocks, off, vals):
    blocks[:, off] = (vals & 0xFF).astype(np.uint8)
    blocks[:, off + 1] = (vals >> 8).astype(np.uint8)


def f16(blocks, off):
    return blocks[:, off:off + 2].copy().view(np.float16).astype(F32).reshape(-1)


def nibbles(qs):
    """(nb, 16) bytes -> (nb, 32): element j < 16 is the low nibble of qs[j],
    element j >= 16 the high nibble of qs[j - 16]."""
    return np.concatenate([qs & 0xF, qs >> 4], axis=1).astype(np.int32)


def qh_bits(blocks, off):
    """u32 at off -> (nb, 32) bits, bit j for element j."""
    qh = blocks[:, off:off + 4].copy().view("<u4").reshape(-1, 1)
    return ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.int32)


def k_scales(s):
    """(nb, 12) Q4_K/Q5_K scale bytes -> sc, m of shape (nb, 8): j < 4 from the
    low 6 bits of bytes j / j+4; j >= 4 low 4 bits from byte j+4's low / high
    nibble, high 2 bits from the top bits of byte j-4 / j."""
    s = s.astype(np.int32)
    sc = np.zeros((s.shape[0], 8), np.int32)
    m = np.zeros((s.shape[0], 8), np.int32)
    for j in range(4):
        sc[:, j] = s[:, j] & 63
        m[:, j] = s[:, j + 4] & 63
    for j in range(4, 8):
        sc[:, j] = (s[:, j + 4] & 0xF) | ((s[:, j - 4] >> 6) << 4)
        m[:, j] = (s[:, j + 4] >> 4) | ((s[:, j] >> 6) << 4)
    return sc, m


def dequant(name, blocks):
    nb = blocks.shape[0]
    if name == "f32":
        return blocks.copy().view(F32).reshape(-1)
    if name == "f16":
        return blocks.copy().view(np.float16).astype(F32).reshape(-1)
    if name == "bf16":
        return (blocks.copy().view("<u2").astype(np.uint32) << 16).view(F32).reshape(-1)
    if name == "q4_0":
        d = f16(blocks, 0)[:, None]
        return ((nibbles(blocks[:, 2:18]) - 8).astype(F32) * d).reshape(-1)
    if name == "q4_1":
        d, m = f16(blocks, 0)[:, None], f16(blocks, 2)[:, None]
        return (nibbles(blocks[:, 4:20]).astype(F32) * d + m).reshape(-1)
    if name == "q5_0":
        d = f16(blocks, 0)[:, None]
        q = nibbles(blocks[:, 6:22]) | (qh_bits(blocks, 2) << 4)
        return ((q - 16).astype(F32) * d).reshape(-1)
    if name == "q5_1":
        d, m = f16(blocks, 0)[:, None], f16(blocks, 2)[:, None]
        q = nibbles(blocks[:, 8:24]) | (qh_bits(blocks, 4) << 4)
        return (q.astype(F32) * d + m).reshape(-1)
    if name == "q8_0":
        d = f16(blocks, 0)[:, None]
        return (blocks[:, 2:34].view(np.int8).astype(F32) * d).reshape(-1)
    if name in ("q4_K", "q5_K"):
        d, dmin = f16(blocks, 0)[:, None], f16(blocks, 2)[:, None]
        sc, m = k_scales(blocks[:, 4:16])
        if name == "q4_K":
            qs, qh = blocks[:, 16:144], None
        else:
            qh, qs = blocks[:, 16:48].astype(np.int32), blocks[:, 48:176]
        out = np.zeros((nb, 256), F32)
        for j in range(8):  # sub-block j: 32 values
            c, hi = j // 2, j % 2
            byte = qs[:, 32 * c:32 * c + 32].astype(np.int32)
            q = (byte >> 4) if hi else (byte & 0xF)
            if qh is not None:
                q = q | (((qh >> j) & 1) << 4)
            ds = (d[:, 0] * sc[:, j].astype(F32))[:, None]     # exact in f32
            dm = (dmin[:, 0] * m[:, j].astype(F32))[:, None]
            out[:, 32 * j:32 * j + 32] = ds * q.astype(F32) - dm
        return out.reshape(-1)
    if name == "q6_K":
        ql, qh = blocks[:, 0:128].astype(np.int32), blocks[:, 128:192].astype(np.int32)
        sc = blocks[:, 192:208].view(np.int8).astype(F32)
        d = f16(blocks, 208)
        q = np.zeros((nb, 256), np.int32)
        for e in range(256):  # element e of the super-block
            h, r = e // 128, e % 128
            k, l = r // 32, r % 32            # quarter k of the half, lane l
            byte = ql[:, 64 * h + l + (32 if k in (1, 3) else 0)]
            low = (byte >> 4) if k >= 2 else (byte & 0xF)
            high = (qh[:, 32 * h + l] >> (2 * k)) & 3
            q[:, e] = low | (high << 4)
        ds = d[:, None] * np.repeat(sc, 16, axis=1)            # exact in f32
        return (ds * (q - 32).astype(F32)).reshape(-1)
    if name == "q8_K":
        d = blocks[:, 0:4].copy().view(F32)
        return (d * blocks[:, 4:260].view(np.int8).astype(F32)).reshape(-1)
    raise ValueError(name)


def random_blocks(name, nb):
    num, bs, size = TYPES[name]
    b = rng.integers(0, 256, (nb, size), dtype=np.uint8)
    if name == "f32":
        b = rng.standard_normal(nb).astype(F32).view(np.uint8).reshape(nb, 4)
    elif name == "f16":
        put_u16(b, 0, f16_scales(nb))
    elif name == "bf16":
        x = (rng.standard_normal(nb) * 10).astype(F32).view(np.uint32) >> 16
        put_u16(b, 0, x.astype(np.uint16))
    elif name in ("q4_0", "q5_0", "q8_0"):
        put_u16(b, 0, f16_scales(nb))
    elif name in ("q4_1", "q5_1", "q4_K", "q5_K"):
        put_u16(b, 0, f16_scales(nb))
        put_u16(b, 2, f16_scales(nb)[::-1].copy())
    elif name == "q6_K":
        put_u16(b, 208, f16_scales(nb))
    elif name == "q8_K":
        d = (rng.uniform(0.5, 2.0, nb) * 2.0 ** rng.integers(-10, 3, nb)).astype(F32)
        d[0] = 0.0
        b[:, 0:4] = d.view(np.uint8).reshape(nb, 4)
    return b


def main():
    arrays = {}
    for name, (num, bs, size) in TYPES.items():
        nb = {1: 96, 32: 12, 256: 5}[bs]
        blocks = random_blocks(name, nb)
        vals = dequant(name, blocks)
        assert vals.dtype == F32 and vals.size == nb * bs and np.all(np.isfinite(vals)), name
        arrays[name + ".blocks"] = blocks.reshape(-1).astype(np.int32)
        arrays[name + ".values"] = vals
    fixture.write("quant_blocks.bin", arrays)


if __name__ == "__main__":
    main()
