/*
 * data.h — private helpers shared by the data layer (idx.c, image.c, png.c,
 * gif.c, corpus.c): a growable byte buffer and sorted folder listings (whole
 * files are read with duet_read_file from formats/formats.h). Never
 * included by users; the public data API is the "@section data" of duet.h.
 */
#ifndef DUET_FORMATS_DATA_H
#define DUET_FORMATS_DATA_H

#include "duet.h"

#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer through duet_alloc. Zero-initialise it ({0}). */
typedef struct duet_data_buf {
    uint8_t *data;
    size_t size, cap;
} duet_data_buf;

/* Makes room for `extra` more bytes (DUET_ERR_NOMEM on failure). */
duet_status duet_data_buf_reserve(duet_data_buf *b, size_t extra);
duet_status duet_data_buf_append(duet_data_buf *b, const void *p, size_t n);
void duet_data_buf_free(duet_data_buf *b);

/* One byte; the caller reserved room (fast path for byte-at-a-time writers). */
static inline void duet_data_buf_put(duet_data_buf *b, uint8_t c) { b->data[b->size++] = c; }

/* Names of the entries of a folder, sorted byte-wise, without "." and "..".
 * *names is one duet_alloc block (array + strings): free it with duet_free. */
duet_status duet_data_list_dir(const char *dir, char ***names, int64_t *count);

#endif
