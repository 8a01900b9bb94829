"""gen_data.py — fixtures for tests/test_data.c (the data layer), made without duet.

Writes (everything under tests/fixtures/):
  data_idx/*           IDX files written with gzip + struct: a good image/label pair
                       (gzip'd and plain) and one malformed file per rule the reader
                       checks (test_data.c knows which rule each breaks)
  data_idx.bin         what the good pair holds
  data_fashion.bin     Fashion-MNIST facts read with gzip + numpy from Debian's
                       dataset-fashion-mnist: counts, label histograms, pixel sums,
                       the first images (the script fails if the package is missing)
  data_resize.bin      resize cases: input planes, expected outputs from a numpy
                       implementation of the documented algorithm (area average down,
                       half-pixel bilinear up), itself checked here against PyTorch's
                       interpolate where the two coincide (integer-ratio "area", and
                       "bilinear" with align_corners=False)
  data_images/*        PNG/JPEG folders written with PIL (flat, per-class, corrupt,
                       fake), and data_images.bin: the loader's expected output from
                       PIL's decoding + convert("RGB"/"L") + the numpy crop/resize
  data_img.bin         pixels for the PNG/GIF writers, grid inputs with the expected
                       grid (numpy), u8 conversion cases, the 6x6x6 quantisation of the
                       RGB GIF frames
  data_fortunes/*      a tiny fortune folder (separators, tabs, overstrikes, CRLF,
                       invalid UTF-8, a .dat index, a .u8 link, an off/ folder)
  data_corpus/*        small files for the corpus loader
Then the independent readback of duet's writers: builds build/tests/test_data, runs
it with --write-golden DIR, and raises unless every PNG parses here with zlib +
struct (signature, chunk CRCs, IHDR, tEXt, unfiltered IDAT pixels) and decodes with
PIL to the input pixels, and every GIF decodes with PIL to the expected frames with
the right delays and loop count. The verified files become data_golden_*; the C test
re-encodes the same inputs and compares with them.
"""
import gzip
import io
import os
import shutil
import struct
import subprocess
import tempfile
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import fixture

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FIX = fixture.FIXTURES
FASHION = "/usr/share/datasets/fashion-mnist"


def fresh_dir(name):
    d = os.path.join(FIX, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def write_bytes(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def gz(data):
    # mtime=0: the same bytes every run
    return gzip.compress(data, compresslevel=9, mtime=0)


# ---------------------------------------------------------------- IDX ----

def idx_bytes(arr, type_code=0x08):
    arr = np.asarray(arr, dtype=np.uint8)
    head = bytes([0, 0, type_code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + arr.tobytes()


def gen_idx():
    d = fresh_dir("data_idx")
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    labels = np.array([3, 0, 9, 3, 1], dtype=np.uint8)
    img, lab = idx_bytes(images), idx_bytes(labels)
    files = {
        "images.gz": gz(img),
        "labels.gz": gz(lab),
        "images.idx": img,                       # plain (zlib reads it through)
        "labels.idx": lab,
        # malformed: one rule each
        "bad_magic.gz": gz(b"\x01\x02" + img[2:]),
        "bad_type.gz": gz(bytes([0, 0, 0x0D]) + img[3:]),
        "bad_ndim0.gz": gz(bytes([0, 0, 8, 0]) + img[4:]),
        "bad_ndim5.gz": gz(bytes([0, 0, 8, 5]) + struct.pack(">5I", 1, 1, 1, 1, 1) + b"\0"),
        "zero_dim.gz": gz(bytes([0, 0, 8, 3]) + struct.pack(">3I", 5, 0, 3)),
        "overflow.gz": gz(bytes([0, 0, 8, 4]) + struct.pack(">4I", *[0xFFFFFFFF] * 4) + b"\0" * 8),
        "short_magic.gz": gz(img[:3]),
        "short_dims.gz": gz(img[:9]),
        "truncated.gz": gz(img[:-7]),
        "extra.gz": gz(img + b"\x00\x01\x02"),
        "labels_short.gz": gz(idx_bytes(labels[:4])),
        "empty.gz": gz(b""),
        "truncated.idx": img[:-1],
    }
    # a gzip stream cut in the middle, and one with deflate data damaged
    full = gz(img * 1)
    files["cut_stream.gz"] = full[: len(full) // 2]
    dmg = bytearray(full)
    for k in range(12, 20):
        dmg[k] ^= 0x5A
    files["corrupt_stream.gz"] = bytes(dmg)
    for name, data in files.items():
        write_bytes(os.path.join(d, name), data)
    # the damaged stream really is rejected by zlib (else the test would be vacuous)
    for name in ("cut_stream.gz", "corrupt_stream.gz"):
        try:
            gzip.decompress(files[name])
        except Exception:
            pass
        else:
            raise SystemExit(f"{name}: gzip accepted the damaged stream")
    fixture.write("data_idx.bin", {"images": images.astype(np.int32),
                                   "labels": labels.astype(np.int32)})


def read_idx_gz(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    nd = magic & 0xFF
    dims = struct.unpack(">" + "I" * nd, data[4:4 + 4 * nd])
    return np.frombuffer(data[4 + 4 * nd:], dtype=np.uint8).reshape(dims)


def gen_fashion():
    if not os.path.isdir(FASHION):
        raise SystemExit(f"{FASHION} missing: run sh tools/deps.sh (dataset-fashion-mnist)")
    out = {}
    for split, pre in (("train", "train"), ("test", "t10k")):
        im = read_idx_gz(f"{FASHION}/{pre}-images-idx3-ubyte.gz")
        lb = read_idx_gz(f"{FASHION}/{pre}-labels-idx1-ubyte.gz")
        out[f"{split}.shape"] = np.array(im.shape, dtype=np.int32)
        out[f"{split}.hist"] = np.bincount(lb, minlength=10).astype(np.int32)
        out[f"{split}.pixel_sum"] = np.array([im.astype(np.int64).sum()], dtype=np.float64)
        out[f"{split}.label_sum"] = np.array([lb.astype(np.int64).sum()], dtype=np.float64)
        out[f"{split}.first"] = im[:3].astype(np.int32)
        out[f"{split}.first_labels"] = lb[:3].astype(np.int32)
        out[f"{split}.last"] = im[-1].astype(np.int32)
    fixture.write("data_fashion.bin", out)


# ------------------------------------------------------------- resize ----

def axis_weights(n_in, n_out):
    """The documented per-axis weights: area average when shrinking, bilinear with
    half-pixel centres and clamped edges when growing, identity when equal."""
    w = np.zeros((n_out, n_in))
    scale = n_in / n_out
    for i in range(n_out):
        if n_out == n_in:
            w[i, i] = 1.0
        elif n_out < n_in:
            lo, hi = i * scale, (n_in if i == n_out - 1 else (i + 1) * scale)
            for j in range(n_in):
                ov = min(hi, j + 1) - max(lo, j)
                if ov > 0:
                    w[i, j] = ov / (hi - lo)
        else:
            x = max((i + 0.5) * scale - 0.5, 0.0)
            j0 = min(int(np.floor(x)), n_in - 1)
            l = x - j0
            if j0 + 1 < n_in:
                w[i, j0], w[i, j0 + 1] = 1 - l, l
            else:
                w[i, j0] = 1.0
    return w


def resize_ref(src, oh, ow):
    """src [C, H, W] float64 -> [C, oh, ow]"""
    wy, wx = axis_weights(src.shape[1], oh), axis_weights(src.shape[2], ow)
    return np.einsum("ih,chw,jw->cij", wy, src, wx)


def gen_resize():
    rng = np.random.default_rng(11)
    cases = [  # C, H, W, OH, OW
        (2, 12, 8, 4, 4),    # integer ratios down: torch "area"
        (3, 5, 4, 11, 9),    # up: torch "bilinear"
        (1, 13, 17, 5, 7),   # fractional down (3-ish pixels per output, partial overlaps)
        (2, 9, 4, 6, 7),     # one axis down, the other up
        (1, 6, 6, 6, 6),     # equal: a copy
        (1, 7, 3, 1, 1),     # everything averages to one pixel
        (1, 1, 1, 3, 2),     # one pixel grows to a flat block
    ]
    out = {"ncases": np.array([len(cases)], dtype=np.int32)}
    for k, (c, h, w, oh, ow) in enumerate(cases):
        src = rng.uniform(-1, 255, size=(c, h, w))
        src32 = src.astype(np.float32)
        ref = resize_ref(src32.astype(np.float64), oh, ow)
        # the numpy reference agrees with PyTorch where their definitions coincide
        t = torch.from_numpy(src32.astype(np.float64))[None]
        if oh <= h and ow <= w and h % oh == 0 and w % ow == 0:
            tr = F.interpolate(t, size=(oh, ow), mode="area")[0].numpy()
            assert np.allclose(tr, ref, rtol=1e-12, atol=1e-9), "area vs torch"
        if oh >= h and ow >= w and (oh, ow) != (h, w):
            tr = F.interpolate(t, size=(oh, ow), mode="bilinear", align_corners=False)[0].numpy()
            assert np.allclose(tr, ref, rtol=1e-12, atol=1e-9), "bilinear vs torch"
        # area weights of one output sum to 1 and cover exactly H/OH input pixels
        assert np.allclose(axis_weights(h, oh).sum(1), 1.0)
        out[f"c{k}.dims"] = np.array([c, h, w, oh, ow], dtype=np.int32)
        out[f"c{k}.src"] = src32
        out[f"c{k}.out"] = ref  # f64
    fixture.write("data_resize.bin", out)


# ------------------------------------------------------- image folders ----

def smooth_rgb(h, w, seed):
    """A smooth picture (JPEG decoders agree closely on smooth content)."""
    y, x = np.mgrid[0:h, 0:w]
    r = 128 + 100 * np.sin(x / w * 3.1 + seed)
    g = 128 + 100 * np.cos(y / h * 2.3 + seed)
    b = 60 + 150 * (x + y) / (h + w)
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def png_of(arr, mode):
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, "PNG")
    return buf.getvalue()


def jpeg_of(arr):
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, "JPEG", quality=95, subsampling=0)
    return buf.getvalue()


def expected_load(data, channels, size):
    """What the folder loader must produce for one file: PIL decode, convert,
    center crop, resize (numpy reference), round half up -> u8 [C, S, S]; also
    the unrounded floats."""
    im = Image.open(io.BytesIO(data))
    im = im.convert("L" if channels == 1 else "RGB")
    a = np.asarray(im, dtype=np.float64)
    if a.ndim == 2:
        a = a[:, :, None]
    h, w = a.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    crop = a[y0:y0 + side, x0:x0 + side].transpose(2, 0, 1)
    f = resize_ref(crop, size, size)
    return np.clip(np.floor(f + 0.5), 0, 255).astype(np.int32), f


def gen_images():
    d = fresh_dir("data_images")
    rng = np.random.default_rng(5)
    noise_rgb = rng.integers(0, 256, size=(9, 13, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, size=(7, 7), dtype=np.uint8)
    rgba = rng.integers(0, 256, size=(12, 10, 4), dtype=np.uint8)
    flat = {
        "a_rgb.png": png_of(noise_rgb, "RGB"),
        "b_gray.png": png_of(gray, "L"),
        "c_rgba.png": png_of(rgba, "RGBA"),
        "d_photo.jpg": jpeg_of(smooth_rgb(10, 16, 0.3)),
        "e_tiny.png": png_of(rng.integers(0, 256, size=(3, 5, 3), dtype=np.uint8), "RGB"),
    }
    for name, data in flat.items():
        write_bytes(os.path.join(d, "flat", name), data)
    write_bytes(os.path.join(d, "flat", "notes.txt"), b"not an image\n")
    write_bytes(os.path.join(d, "flat", ".hidden.png"), b"hidden files are ignored")
    classes = {
        "bag/x.png": png_of(rng.integers(0, 256, size=(8, 11, 3), dtype=np.uint8), "RGB"),
        "bag/y.jpg": jpeg_of(smooth_rgb(12, 12, 1.1)),
        "coat/z.png": png_of(rng.integers(0, 256, size=(6, 6), dtype=np.uint8), "L"),
    }
    for name, data in classes.items():
        write_bytes(os.path.join(d, "classes", name), data)
    write_bytes(os.path.join(d, "classes", "README.txt"), b"beside the class folders\n")
    write_bytes(os.path.join(d, "classes", "bag", "Thumbs.db"), b"\x00\x01junk")
    good = png_of(noise_rgb, "RGB")
    write_bytes(os.path.join(d, "corrupt", "a_good.png"), good)
    cut = good[: len(good) - 60]  # IDAT cut short, IEND gone
    write_bytes(os.path.join(d, "corrupt", "b_broken.png"), cut)
    write_bytes(os.path.join(d, "fake", "fake.png"), b"hello, I am text in disguise\n")
    try:
        Image.open(io.BytesIO(cut)).load()
    except Exception:
        pass
    else:
        raise SystemExit("PIL decoded the cut PNG: the corrupt case would be vacuous")

    out = {}
    for ch in (3, 1):
        exp, fl = [], []
        for name in sorted(flat):
            e, f = expected_load(flat[name], ch, 8)
            exp.append(e)
            fl.append(f)
        out[f"flat{ch}"] = np.stack(exp)
        out[f"flat{ch}.f"] = np.stack(fl)
    out["flat.is_jpeg"] = np.array([n.endswith(".jpg") for n in sorted(flat)], dtype=np.int32)
    exp, fl = [], []
    for name in ["bag/x.png", "bag/y.jpg", "coat/z.png"]:
        e, f = expected_load(classes[name], 3, 6)
        exp.append(e)
        fl.append(f)
    out["classes3"] = np.stack(exp)
    out["classes3.f"] = np.stack(fl)
    out["classes.labels"] = np.array([0, 0, 1], dtype=np.int32)
    out["classes.is_jpeg"] = np.array([0, 1, 0], dtype=np.int32)
    # duet_image_load with channels 0 keeps RGBA; 1 converts like PIL
    out["rgba.raw"] = rgba.astype(np.int32)
    out["rgba.gray"] = np.asarray(Image.fromarray(rgba, "RGBA").convert("L")).astype(np.int32)
    fixture.write("data_images.bin", out)


# --------------------------------------------------- PNG / GIF writers ----

def unit_to_u8(x):
    """The documented f32 [-1, 1] -> u8 rule: floor((x + 1) * 127.5 + 0.5) clamped, NaN -> 0."""
    x = np.asarray(x, dtype=np.float32)
    v = (x.astype(np.float64) + 1.0) * 127.5 + 0.5
    v = np.where(np.isnan(v), 0.0, v)
    return np.clip(np.floor(v), 0, 255).astype(np.int32)


def quant666(rgb):
    lv = np.round(rgb.astype(np.float64) / 51.0)  # never a tie: v/51 is never k + 0.5
    return (lv * 51).astype(np.int32)


def gen_img():
    rng = np.random.default_rng(3)
    out = {}
    out["png_gray"] = rng.integers(0, 256, size=(11, 17)).astype(np.int32)
    # smooth + noisy rows so the encoder picks different filters
    rgb = smooth_rgb(9, 14, 0.7).astype(np.int32)
    rgb[4:6] = rng.integers(0, 256, size=(2, 14, 3))
    out["png_rgb"] = rgb
    # grid: 5 images [3, 4, 3] on 2 rows x 3 cols, border 2, border value 255
    N, C, H, W, rows, cols, bd = 5, 3, 4, 3, 2, 3, 2
    imgs = rng.uniform(-1.2, 1.2, size=(N, C, H, W)).astype(np.float32)
    gh, gw = rows * H + (rows + 1) * bd, cols * W + (cols + 1) * bd
    grid = np.full((gh, gw, C), 255, dtype=np.int32)
    for k in range(N):
        r, q = divmod(k, cols)
        y0, x0 = bd + r * (H + bd), bd + q * (W + bd)
        grid[y0:y0 + H, x0:x0 + W] = unit_to_u8(imgs[k]).transpose(1, 2, 0)
    out["grid.in"] = imgs
    out["grid.out"] = grid
    vals = np.array([-1.0, 1.0, 0.0, -2.0, 3.0, np.nan, np.inf, -np.inf, 0.5, -0.5,
                     (0.5 / 127.5) - 1.0, 1.0 - 0.5 / 127.5, 0.0039215, -0.9960785],
                    dtype=np.float32)
    out["u8.in"] = vals
    out["u8.out"] = unit_to_u8(vals)
    # GIF frames
    out["gif_gray"] = rng.integers(0, 256, size=(3, 10, 12)).astype(np.int32)
    grgb = np.stack([smooth_rgb(9, 11, s) for s in (0.0, 1.5)]).astype(np.int32)
    out["gif_rgb"] = grgb
    out["gif_rgb.q"] = quant666(grgb)
    # noise big enough to fill the LZW dictionary several times (clear codes)
    out["gif_noise"] = rng.integers(0, 256, size=(1, 96, 96)).astype(np.int32)
    fixture.write("data_img.bin", out)
    return out


GIF_DELAYS = {"gray": [7, 7, 50], "rgb": [10, 20], "noise": [3]}
PNG_TEXT = {"gray": [("duet", "test gray"), ("steps", "50")],
            "rgb": [("Title", "duet sample"), ("prompt", "a coat, size 28")]}


def parse_png(data):
    """Our own PNG reader (spec): returns (w, h, colour type, text dict, pixels)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "signature"
    pos, chunks = 8, []
    while pos < len(data):
        n, = struct.unpack(">I", data[pos:pos + 4])
        typ = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        crc, = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert zlib.crc32(typ + body) & 0xFFFFFFFF == crc, f"CRC of {typ}"
        chunks.append((typ, body))
        pos += 12 + n
    assert pos == len(data), "trailing bytes"
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b""), "chunk order"
    w, h, depth, ctype, comp, filt, inter = struct.unpack(">IIBBBBB", chunks[0][1])
    assert depth == 8 and comp == 0 and filt == 0 and inter == 0
    bpp = {0: 1, 2: 3}[ctype]
    text = {}
    for typ, body in chunks:
        if typ == b"tEXt":
            k, v = body.split(b"\0", 1)
            text[k.decode("latin-1")] = v.decode("latin-1")
    idat = [i for i, (t, _) in enumerate(chunks) if t == b"IDAT"]
    assert idat == list(range(idat[0], idat[-1] + 1)), "IDAT chunks consecutive"
    assert all(chunks[i][0] != b"tEXt" for i in range(idat[-1], len(chunks))), "tEXt before IDAT"
    raw = zlib.decompress(b"".join(chunks[i][1] for i in idat))
    stride = w * bpp
    assert len(raw) == h * (stride + 1)
    img = np.zeros((h, stride), dtype=np.int64)
    prev = np.zeros(stride, dtype=np.int64)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int64)
        cur = np.zeros(stride, dtype=np.int64)
        for i in range(stride):
            a = cur[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 0:
                p = 0
            elif f == 1:
                p = a
            elif f == 2:
                p = b
            elif f == 3:
                p = (a + b) // 2
            elif f == 4:
                pp = a + b - c
                pa, pb, pc = abs(pp - a), abs(pp - b), abs(pp - c)
                p = a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
            else:
                raise AssertionError(f"filter type {f}")
            cur[i] = (line[i] + p) & 0xFF
        img[y] = cur
        prev = cur
    return w, h, ctype, text, img.reshape(h, w, bpp) if bpp == 3 else img


def check_golden(gdir, ref):
    for name, key in (("gray", "png_gray"), ("rgb", "png_rgb")):
        data = open(os.path.join(gdir, f"png_{name}.png"), "rb").read()
        w, h, ctype, text, px = parse_png(data)
        want = ref[key]
        assert (h, w) == want.shape[:2] and ctype == (0 if want.ndim == 2 else 2), name
        assert np.array_equal(px, want), f"PNG {name}: pixels (own reader)"
        assert text == dict(PNG_TEXT[name]), f"PNG {name}: tEXt {text}"
        im = Image.open(io.BytesIO(data))
        assert np.array_equal(np.asarray(im).astype(np.int32), want), f"PNG {name}: PIL pixels"
        assert {k: im.info[k] for k, _ in PNG_TEXT[name]} == dict(PNG_TEXT[name]), "PIL tEXt"
    for name, key in (("gray", "gif_gray"), ("rgb", "gif_rgb.q"), ("noise", "gif_noise")):
        data = open(os.path.join(gdir, f"gif_{name}.gif"), "rb").read()
        assert data[:6] == b"GIF89a" and data[-1:] == b"\x3b", f"GIF {name}: header/trailer"
        assert b"NETSCAPE2.0\x03\x01\x00\x00\x00" in data, f"GIF {name}: loop forever"
        im = Image.open(io.BytesIO(data))
        want = ref[key]
        assert im.n_frames == len(want), f"GIF {name}: {im.n_frames} frames"
        assert im.info.get("loop") == 0, f"GIF {name}: loop {im.info.get('loop')}"
        for k in range(im.n_frames):
            im.seek(k)
            fr = np.asarray(im.convert("RGB")).astype(np.int32)
            exp = want[k] if want.ndim == 4 else np.repeat(want[k][:, :, None], 3, axis=2)
            assert np.array_equal(fr, exp), f"GIF {name}: frame {k} pixels"
            assert im.info["duration"] == 10 * GIF_DELAYS[name][k], f"GIF {name}: frame {k} delay"


def golden(ref):
    subprocess.run(["make", "-j2", "build/tests/test_data"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as gdir:
        subprocess.run(["./build/tests/test_data", "--write-golden", gdir], cwd=ROOT, check=True)
        check_golden(gdir, ref)
        for f in sorted(os.listdir(gdir)):
            shutil.copy(os.path.join(gdir, f), os.path.join(FIX, "data_golden_" + f))
    print("data: duet's PNG and GIF output verified with zlib/struct and PIL")


# ------------------------------------------------------ text corpora ----

def gen_text():
    d = fresh_dir("data_fortunes")
    write_bytes(os.path.join(d, "alpha"),
                b"First fortune,\n\ttwo lines.   \n%\n"
                b"Tab\there, _\bu_\bn_\bd_\be_\br_\bl_\bi_\bn_\be_\bd and X\bX bold.\n"
                b"\n"
                b"Blank line above is dropped.\r\n"
                b"%\n%\n"
                b"Bad \xff byte, good \xc3\xa9 e-acute, bell\x07.\n"
                b"%\n")
    write_bytes(os.path.join(d, "beta"), b"Beta only entry\n  indented -- Author\n")
    write_bytes(os.path.join(d, "alpha.dat"), b"\x00\x00\x00\x02binary index")
    os.symlink("alpha", os.path.join(d, "alpha.u8"))
    write_bytes(os.path.join(d, "off", "rude"), b"offensive\n%\n")
    write_bytes(os.path.join(d, ".hidden"), b"hidden\n%\n")
    c = fresh_dir("data_corpus")
    write_bytes(os.path.join(c, "one.txt"), b"In the beginning\nwas the byte.\n")
    write_bytes(os.path.join(c, "empty.txt"), b"")
    write_bytes(os.path.join(c, "dir", "b.txt"), b"second\n")
    write_bytes(os.path.join(c, "dir", "a.txt"), b"first ")
    write_bytes(os.path.join(c, "dir", "c_empty.txt"), b"")
    write_bytes(os.path.join(c, "dir", ".hidden"), b"never")
    write_bytes(os.path.join(c, "dir", "sub", "deep.txt"), b"never")
    os.makedirs(os.path.join(c, "nofiles", "sub"), exist_ok=True)
    write_bytes(os.path.join(c, "nofiles", "sub", "x.txt"), b"nested files are not read")


if __name__ == "__main__":
    gen_idx()
    gen_fashion()
    gen_resize()
    gen_images()
    gen_text()
    golden(gen_img())
