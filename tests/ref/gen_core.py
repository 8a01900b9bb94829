"""gen_core.py — half-precision conversion reference: numpy's float16 (IEEE
round to nearest even) and torch's bfloat16 conversion."""
import numpy as np
import torch

import fixture

rng = np.random.default_rng(1)
vals = np.concatenate([
    rng.standard_normal(2000).astype(np.float32) * 10.0,
    rng.standard_normal(500).astype(np.float32) * 1e-5,      # f16 subnormals
    rng.standard_normal(500).astype(np.float32) * 6e4,       # near f16 max
    np.array([0.0, -0.0, 1.0, -1.0, 65504.0, 65519.0, 65520.0, 1e9, -1e9, np.inf, -np.inf,
              np.nan, 5.96e-8, 2.98e-8, 2.99e-8, 6.1035156e-05, 1.0009765625, 1.00048828125,
              1.00146484375, 3.0e-38, 1e-45], dtype=np.float32),
]).astype(np.float32)
# bit patterns with mantissa ties for bf16 rounding
ties = (np.arange(200, dtype=np.uint32) * 0x00010000 + 0x3f808000).view(np.float32)
vals = np.concatenate([vals, ties])

h = vals.astype(np.float16)
b = torch.from_numpy(vals).to(torch.bfloat16)
fixture.write("half.bin", {
    "x": vals,
    "f16_bits": h.view(np.uint16).astype(np.int32),
    "bf16_bits": b.view(torch.int16).numpy().astype(np.uint16).astype(np.int32),
    "f16_back": h.astype(np.float32),
    "bf16_back": b.float().numpy(),
})
