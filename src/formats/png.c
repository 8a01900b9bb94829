/*
 * png.c — pictures out: a PNG encoder (8-bit gray or RGB, tEXt chunks for the
 * generation parameters) written from the spec (PNG 1.2 / ISO 15948) with
 * zlib for deflate and CRC-32, plus the helpers that turn model outputs into
 * pixels: f32 [-1, 1] -> u8, and grids of samples or trajectory strips.
 *
 * What it is not: a general PNG library. No palettes, alpha, 16-bit,
 * interlacing or decoding (reading PNGs is image.c's, through stb_image).
 */
#include "formats/data.h"

#include <string.h>
#include <zlib.h>

/* ======================================================================== */
/* f32 -> u8, grids                                                          */
/* ======================================================================== */

/* In double, (x + 1) * 127.5 + 0.5 is exact for every float x (24 + 8 bits),
 * so the rounding is the documented one, with no float rounding before it. */
static uint8_t unit_to_u8(float x) {
    if (!(x == x)) return 0; /* NaN */
    double v = ((double)x + 1.0) * 127.5 + 0.5;
    if (v <= 0.0) return 0;
    if (v >= 255.0) return 255;
    return (uint8_t)v;
}

void duet_image_to_u8(uint8_t *dst, const float *src, int64_t C, int64_t H, int64_t W) {
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < H * W; i++) dst[i * C + c] = unit_to_u8(src[c * H * W + i]);
}

void duet_image_grid_size(int64_t rows, int64_t cols, int64_t H, int64_t W, int64_t border,
                          int64_t *gh, int64_t *gw) {
    *gh = rows * H + (rows + 1) * border;
    *gw = cols * W + (cols + 1) * border;
}

void duet_image_grid(uint8_t *dst, const float *images, int64_t N, int64_t C, int64_t H,
                     int64_t W, int64_t rows, int64_t cols, int64_t border,
                     uint8_t border_value) {
    int64_t gh, gw;
    duet_image_grid_size(rows, cols, H, W, border, &gh, &gw);
    memset(dst, border_value, (size_t)(gh * gw * C));
    if (N > rows * cols) N = rows * cols;
    for (int64_t k = 0; k < N; k++) {
        int64_t r = k / cols, q = k % cols;
        int64_t y0 = border + r * (H + border), x0 = border + q * (W + border);
        const float *img = images + k * C * H * W;
        for (int64_t c = 0; c < C; c++)
            for (int64_t y = 0; y < H; y++)
                for (int64_t x = 0; x < W; x++)
                    dst[((y0 + y) * gw + x0 + x) * C + c] = unit_to_u8(img[(c * H + y) * W + x]);
    }
}

/* ======================================================================== */
/* PNG encoder                                                               */
/* ======================================================================== */

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* length, type, data, CRC-32 of type + data */
static duet_status put_chunk(duet_data_buf *b, const char type[4], const uint8_t *data,
                             size_t n) {
    duet_status s = duet_data_buf_reserve(b, n + 12);
    if (s) return s;
    uint8_t *p = b->data + b->size;
    put_be32(p, (uint32_t)n);
    memcpy(p + 4, type, 4);
    if (n) memcpy(p + 8, data, n);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, p + 4, 4);
    if (n) crc = crc32(crc, data, (uInt)n);
    put_be32(p + 8 + n, (uint32_t)crc);
    b->size += n + 12;
    return DUET_OK;
}

/* The Paeth predictor (PNG spec 9.4). */
static int paeth(int a, int b, int c) {
    int p = a + b - c;
    int pa = p > a ? p - a : a - p, pb = p > b ? p - b : b - p, pc = p > c ? p - c : c - p;
    if (pa <= pb && pa <= pc) return a;
    return pb <= pc ? b : c;
}

/* Filters one row (bpp bytes per pixel, len bytes) with filter type f into
 * out; prev is the previous row or NULL. Returns the sum of |signed bytes|,
 * the usual "minimum sum of absolute differences" heuristic's score. */
static uint64_t filter_row(uint8_t *out, int f, const uint8_t *row, const uint8_t *prev,
                           int64_t len, int bpp) {
    uint64_t score = 0;
    for (int64_t i = 0; i < len; i++) {
        int a = i >= bpp ? row[i - bpp] : 0;
        int b = prev ? prev[i] : 0;
        int c = (prev && i >= bpp) ? prev[i - bpp] : 0;
        int pred = f == 0 ? 0 : f == 1 ? a : f == 2 ? b : f == 3 ? (a + b) / 2 : paeth(a, b, c);
        uint8_t v = (uint8_t)(row[i] - pred);
        out[i] = v;
        score += v < 128 ? v : 256 - v;
    }
    return score;
}

/* tEXt keyword rules (PNG spec 11.3.4.3). */
static int valid_keyword(const char *k) {
    size_t n = strlen(k);
    if (n < 1 || n > 79 || k[0] == ' ' || k[n - 1] == ' ') return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)k[i];
        if (!((c >= 32 && c <= 126) || c >= 161)) return 0;
        if (c == ' ' && k[i + 1] == ' ') return 0;
    }
    return 1;
}

duet_status duet_png_encode(const uint8_t *pixels, int64_t w, int64_t h, int channels,
                            const char *const *text, int ntext, uint8_t **out, size_t *out_size) {
    *out = NULL;
    *out_size = 0;
    if (channels != 1 && channels != 3)
        return duet_set_error(DUET_ERR_ARG, "PNG writer: channels must be 1 or 3, got %d", channels);
    if (w < 1 || h < 1 || w > INT32_MAX || h > INT32_MAX || w * channels > INT32_MAX / 2)
        return duet_set_error(DUET_ERR_ARG, "PNG writer: bad size %lldx%lld", (long long)w,
                              (long long)h);
    if (ntext < 0 || (ntext > 0 && !text))
        return duet_set_error(DUET_ERR_ARG, "PNG writer: bad text list (%d pairs)", ntext);
    for (int i = 0; i < ntext; i++) {
        if (!text[2 * i] || !valid_keyword(text[2 * i]))
            return duet_set_error(DUET_ERR_ARG,
                                  "PNG writer: tEXt key '%s' is invalid (1..79 printable Latin-1 "
                                  "characters, no leading, trailing or double spaces)",
                                  text[2 * i] ? text[2 * i] : "(null)");
        if (!text[2 * i + 1])
            return duet_set_error(DUET_ERR_ARG, "PNG writer: tEXt value of '%s' is NULL",
                                  text[2 * i]);
    }
    int64_t stride = w * channels;
    if ((uint64_t)h > (uint64_t)(UINT32_MAX / 2) / (uint64_t)(stride + 1))
        return duet_set_error(DUET_ERR_ARG, "PNG writer: image too big (%lldx%lld)", (long long)w,
                              (long long)h);
    size_t raw_size = (size_t)(h * (stride + 1));
    uLong zcap = compressBound((uLong)raw_size);
    uint8_t *raw = duet_alloc(raw_size);
    uint8_t *cand = duet_alloc((size_t)stride * 5);
    uint8_t *z = duet_alloc(zcap);
    duet_data_buf b = {0};
    duet_status s = (!raw || !cand || !z) ? DUET_ERR_NOMEM : DUET_OK;
    if (!s) {
        /* filter each row with the type that scores lowest */
        for (int64_t y = 0; y < h; y++) {
            const uint8_t *row = pixels + y * stride, *prev = y ? row - stride : NULL;
            uint64_t best = UINT64_MAX;
            int bf = 0;
            for (int f = 0; f < 5; f++) {
                uint64_t sc = filter_row(cand + f * stride, f, row, prev, stride, channels);
                if (sc < best) best = sc, bf = f;
            }
            uint8_t *dst = raw + y * (stride + 1);
            dst[0] = (uint8_t)bf;
            memcpy(dst + 1, cand + bf * stride, (size_t)stride);
        }
        uLongf zn = zcap;
        int zr = compress2(z, &zn, raw, (uLong)raw_size, 6);
        if (zr != Z_OK) s = duet_set_error(DUET_ERR_INTERNAL, "PNG writer: zlib compress2 failed (%d)", zr);
        static const uint8_t sig[8] = {137, 'P', 'N', 'G', '\r', '\n', 26, '\n'};
        if (!s) s = duet_data_buf_append(&b, sig, 8);
        uint8_t ihdr[13];
        put_be32(ihdr, (uint32_t)w);
        put_be32(ihdr + 4, (uint32_t)h);
        ihdr[8] = 8;                          /* bit depth */
        ihdr[9] = channels == 1 ? 0 : 2;      /* colour type: gray, truecolour */
        ihdr[10] = ihdr[11] = ihdr[12] = 0;   /* deflate, adaptive filters, no interlace */
        if (!s) s = put_chunk(&b, "IHDR", ihdr, 13);
        for (int i = 0; i < ntext && !s; i++) {
            size_t kl = strlen(text[2 * i]), vl = strlen(text[2 * i + 1]);
            duet_data_buf t = {0};
            s = duet_data_buf_reserve(&t, kl + 1 + vl);
            if (!s) {
                memcpy(t.data, text[2 * i], kl + 1); /* keyword, NUL separator */
                memcpy(t.data + kl + 1, text[2 * i + 1], vl);
                s = put_chunk(&b, "tEXt", t.data, kl + 1 + vl);
            }
            duet_data_buf_free(&t);
        }
        /* IDAT in pieces of at most 256 KiB, as most writers do */
        for (size_t off = 0; off < zn && !s; off += 1u << 18) {
            size_t n = zn - off < (1u << 18) ? zn - off : (1u << 18);
            s = put_chunk(&b, "IDAT", z + off, n);
        }
        if (!s) s = put_chunk(&b, "IEND", NULL, 0);
    }
    duet_free(raw);
    duet_free(cand);
    duet_free(z);
    if (s) {
        duet_data_buf_free(&b);
        return s;
    }
    *out = b.data;
    *out_size = b.size;
    return DUET_OK;
}

duet_status duet_png_write(const char *path, const uint8_t *pixels, int64_t w, int64_t h,
                           int channels, const char *const *text, int ntext) {
    uint8_t *png;
    size_t n;
    duet_status s = duet_png_encode(pixels, w, h, channels, text, ntext, &png, &n);
    if (s) return s;
    s = duet_write_file_atomic(path, png, n);
    duet_free(png);
    return s;
}
