/*
 * gif.c — animated GIF89a writer with its own LZW encoder, for diffusion
 * trajectories (noise -> picture, one frame per sampling step).
 *
 * Written from the GIF89a specification (W3C, 1990): header, logical screen
 * with a 256-entry global colour table, the NETSCAPE2.0 application
 * extension (loop forever), then per frame a graphic control extension
 * (delay) and an image with variable-length-code LZW data in 255-byte
 * sub-blocks. Gray frames use a 256-level gray palette (exact); RGB frames
 * map each channel to the nearest of 6 levels (a fixed 6x6x6 cube, no
 * dithering, so the same input always gives the same bytes).
 *
 * What it is not: a GIF reader, an optimiser (every frame is a full frame,
 * no transparency tricks), or an adaptive-palette quantiser.
 */
#include "formats/data.h"

#include <string.h>

#define LZW_MAX_CODES 4096
#define LZW_HASH_SIZE 8192 /* power of two, >= 2 * LZW_MAX_CODES */

struct duet_gif {
    int64_t w, h;
    int channels;
    int64_t frames;
    int has_trailer;      /* the 0x3B is at the end of buf */
    duet_data_buf buf;
    uint8_t *index;       /* (h * w) palette indices of the frame being encoded */
    uint32_t *hkey;       /* LZW dictionary: (prefix << 8 | byte) + 1, 0 = empty */
    uint16_t *hcode;
    /* bit writer state */
    uint32_t bitbuf;
    int nbits;
    uint8_t block[255];
    int nblock;
};

static void put_le16(uint8_t *p, unsigned v) {
    p[0] = (uint8_t)(v & 0xFF);
    p[1] = (uint8_t)(v >> 8);
}

void duet_gif_free(duet_gif *g) {
    if (!g) return;
    duet_data_buf_free(&g->buf);
    duet_free(g->index);
    duet_free(g->hkey);
    duet_free(g->hcode);
    duet_free(g);
}

duet_gif *duet_gif_new(int64_t w, int64_t h, int channels) {
    if (w < 1 || h < 1 || w > 65535 || h > 65535) {
        duet_set_error(DUET_ERR_ARG, "GIF writer: size %lldx%lld out of range 1..65535",
                       (long long)w, (long long)h);
        return NULL;
    }
    if (channels != 1 && channels != 3) {
        duet_set_error(DUET_ERR_ARG, "GIF writer: channels must be 1 or 3, got %d", channels);
        return NULL;
    }
    duet_gif *g = duet_calloc(1, sizeof *g);
    if (!g) return NULL;
    g->w = w;
    g->h = h;
    g->channels = channels;
    g->index = duet_alloc((size_t)(w * h));
    g->hkey = duet_alloc(LZW_HASH_SIZE * sizeof(uint32_t));
    g->hcode = duet_alloc(LZW_HASH_SIZE * sizeof(uint16_t));
    if (!g->index || !g->hkey || !g->hcode) {
        duet_gif_free(g);
        return NULL;
    }
    /* header, logical screen descriptor, global colour table, loop forever */
    uint8_t head[13 + 768 + 19];
    memcpy(head, "GIF89a", 6);
    put_le16(head + 6, (unsigned)w);
    put_le16(head + 8, (unsigned)h);
    head[10] = 0xF7; /* global table present, 8-bit colour resolution, 2^(7+1) entries */
    head[11] = 0;    /* background colour index */
    head[12] = 0;    /* no aspect ratio */
    uint8_t *pal = head + 13;
    memset(pal, 0, 768);
    for (int i = 0; i < 256; i++) {
        if (channels == 1) {
            pal[3 * i] = pal[3 * i + 1] = pal[3 * i + 2] = (uint8_t)i;
        } else if (i < 216) {
            pal[3 * i] = (uint8_t)(i / 36 * 51);
            pal[3 * i + 1] = (uint8_t)(i / 6 % 6 * 51);
            pal[3 * i + 2] = (uint8_t)(i % 6 * 51);
        }
    }
    static const uint8_t loop[19] = {0x21, 0xFF, 0x0B, 'N', 'E', 'T', 'S', 'C', 'A', 'P',
                                     'E',  '2',  '.',  '0', 0x03, 0x01, 0x00, 0x00, 0x00};
    memcpy(head + 13 + 768, loop, sizeof loop);
    if (duet_data_buf_append(&g->buf, head, sizeof head)) {
        duet_gif_free(g);
        return NULL;
    }
    return g;
}

int64_t duet_gif_frames(const duet_gif *g) { return g->frames; }

/* ---- LZW bit output: codes LSB-first into 255-byte sub-blocks ---- */

static duet_status flush_block(duet_gif *g) {
    if (g->nblock == 0) return DUET_OK;
    duet_status s = duet_data_buf_reserve(&g->buf, (size_t)g->nblock + 1);
    if (s) return s;
    duet_data_buf_put(&g->buf, (uint8_t)g->nblock);
    memcpy(g->buf.data + g->buf.size, g->block, (size_t)g->nblock);
    g->buf.size += (size_t)g->nblock;
    g->nblock = 0;
    return DUET_OK;
}

static duet_status put_code(duet_gif *g, unsigned code, int size) {
    g->bitbuf |= (uint32_t)code << g->nbits;
    g->nbits += size;
    while (g->nbits >= 8) {
        g->block[g->nblock++] = (uint8_t)(g->bitbuf & 0xFF);
        g->bitbuf >>= 8;
        g->nbits -= 8;
        if (g->nblock == 255) {
            duet_status s = flush_block(g);
            if (s) return s;
        }
    }
    return DUET_OK;
}

/* LZW-encodes g->index[0..n) with 8-bit roots (min code size 8): clear =
 * 256, end = 257, codes of 9..12 bits. The code width grows once the next
 * free code no longer fits (the decoder, one entry behind, then switches
 * exactly when it reads the code we write with the new width); when the
 * dictionary is full a clear code starts over. */
static duet_status lzw_encode(duet_gif *g, int64_t n) {
    const unsigned clear = 256, eoi = 257;
    unsigned next = 258;
    int size = 9;
    duet_status s;
    memset(g->hkey, 0, LZW_HASH_SIZE * sizeof(uint32_t));
    if ((s = put_code(g, clear, size))) return s;
    unsigned prefix = g->index[0];
    for (int64_t i = 1; i < n; i++) {
        uint8_t k = g->index[i];
        uint32_t key = ((uint32_t)prefix << 8 | k) + 1;
        uint32_t hsh = (key * 2654435761u) >> 19 & (LZW_HASH_SIZE - 1);
        while (g->hkey[hsh] && g->hkey[hsh] != key) hsh = (hsh + 1) & (LZW_HASH_SIZE - 1);
        if (g->hkey[hsh] == key) { /* prefix + k is known: extend */
            prefix = g->hcode[hsh];
            continue;
        }
        if ((s = put_code(g, prefix, size))) return s;
        g->hkey[hsh] = key;
        g->hcode[hsh] = (uint16_t)next;
        next++;
        if (next == LZW_MAX_CODES) { /* full: clear (at 12 bits) and start over */
            if ((s = put_code(g, clear, size))) return s;
            memset(g->hkey, 0, LZW_HASH_SIZE * sizeof(uint32_t));
            next = 258;
            size = 9;
        } else if (next > (1u << size)) {
            size++;
        }
        prefix = k;
    }
    if ((s = put_code(g, prefix, size))) return s;
    /* the decoder adds an entry for that last code too; if that fills the
     * current width it reads the end code one bit wider */
    next++;
    if (next > (1u << size) && size < 12) size++;
    if ((s = put_code(g, eoi, size))) return s;
    if (g->nbits > 0) {
        g->block[g->nblock++] = (uint8_t)(g->bitbuf & 0xFF);
        g->bitbuf = 0;
        g->nbits = 0;
    }
    return flush_block(g);
}

duet_status duet_gif_add_frame(duet_gif *g, const uint8_t *pixels, int delay_cs) {
    if (delay_cs < 0 || delay_cs > 65535)
        return duet_set_error(DUET_ERR_ARG, "GIF writer: delay %d out of range 0..65535", delay_cs);
    if (g->has_trailer) {
        g->buf.size--;
        g->has_trailer = 0;
    }
    int64_t n = g->w * g->h;
    if (g->channels == 1) {
        memcpy(g->index, pixels, (size_t)n);
    } else {
        for (int64_t i = 0; i < n; i++) {
            const uint8_t *p = pixels + 3 * i;
            /* nearest of the levels 0, 51, ..., 255 (never a tie) */
            unsigned r = (p[0] * 5u + 127u) / 255u, gg = (p[1] * 5u + 127u) / 255u,
                     b = (p[2] * 5u + 127u) / 255u;
            g->index[i] = (uint8_t)(r * 36 + gg * 6 + b);
        }
    }
    size_t mark = g->buf.size;
    uint8_t head[8 + 10 + 1];
    /* graphic control extension: no disposal, delay, no transparency */
    head[0] = 0x21;
    head[1] = 0xF9;
    head[2] = 4;
    head[3] = 0x04; /* disposal 1: leave the frame in place */
    put_le16(head + 4, (unsigned)delay_cs);
    head[6] = 0;
    head[7] = 0;
    /* image descriptor: the whole screen, global palette, not interlaced */
    head[8] = 0x2C;
    put_le16(head + 9, 0);
    put_le16(head + 11, 0);
    put_le16(head + 13, (unsigned)g->w);
    put_le16(head + 15, (unsigned)g->h);
    head[17] = 0;
    head[18] = 8; /* LZW minimum code size */
    duet_status s = duet_data_buf_append(&g->buf, head, sizeof head);
    g->bitbuf = 0;
    g->nbits = 0;
    g->nblock = 0;
    if (!s) s = lzw_encode(g, n);
    if (!s) s = duet_data_buf_append(&g->buf, "\0", 1); /* block terminator */
    if (s) {
        g->buf.size = mark; /* leave the file as it was */
        return s;
    }
    g->frames++;
    return DUET_OK;
}

duet_status duet_gif_bytes(duet_gif *g, const uint8_t **data, size_t *size) {
    *data = NULL;
    *size = 0;
    if (g->frames == 0) return duet_set_error(DUET_ERR_ARG, "GIF writer: no frames were added");
    if (!g->has_trailer) {
        duet_status s = duet_data_buf_append(&g->buf, "\x3B", 1);
        if (s) return s;
        g->has_trailer = 1;
    }
    *data = g->buf.data;
    *size = g->buf.size;
    return DUET_OK;
}

duet_status duet_gif_write(duet_gif *g, const char *path) {
    const uint8_t *data;
    size_t size;
    duet_status s = duet_gif_bytes(g, &data, &size);
    if (s) return s;
    return duet_write_file_atomic(path, data, size);
}
