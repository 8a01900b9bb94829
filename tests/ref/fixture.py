"""fixture.py — writes the DUETFIX1 files the C tests read (see tests/testutil.h).

Layout: b"DUETFIX1", u32 count, then per array: u32 name length, name (utf-8),
u32 dtype (0 f32, 1 i32, 2 f64), u32 ndim, i64 shape[ndim], little-endian data.
"""
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")


def _as_np(v):
    try:
        import torch
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().numpy()
    except ImportError:
        pass
    return np.asarray(v)


def write(name, arrays):
    """Writes tests/fixtures/<name> from a dict of name -> array (or torch tensor).
    float32 -> f32, float64 -> f64, any integer -> i32."""
    os.makedirs(FIXTURES, exist_ok=True)
    path = os.path.join(FIXTURES, name)
    with open(path, "wb") as f:
        f.write(b"DUETFIX1")
        f.write(struct.pack("<I", len(arrays)))
        for key, v in arrays.items():
            a = _as_np(v)
            if a.dtype == np.float64:
                code = 2
            elif np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
                a, code = a.astype("<i4"), 1
            else:
                a, code = a.astype("<f4"), 0
            a = np.ascontiguousarray(a)
            kb = key.encode()
            f.write(struct.pack("<I", len(kb)))
            f.write(kb)
            f.write(struct.pack("<II", code, a.ndim))
            for d in a.shape:
                f.write(struct.pack("<q", d))
            f.write(a.astype(a.dtype.newbyteorder("<")).tobytes())
    return path
