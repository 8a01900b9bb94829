/*
 * formats.h — private helpers of src/formats shared with the rest of duet:
 * whole-file reading, read-only memory maps, atomic writes from several
 * buffers, and an in-memory safetensors opener (for tests and embedded
 * checkpoints). The public entry points (duet_st_*, duet_write_file_atomic)
 * are in include/duet.h; JSON is in formats/json.h.
 */
#ifndef DUET_FORMATS_FORMATS_H
#define DUET_FORMATS_FORMATS_H

#include "duet.h"

#include <stddef.h>
#include <stdint.h>

/* ---- reading (fileio.c) ---- */

/* A file's bytes, read-only. Regular files are memory-mapped; anything else
 * (a pipe, /dev/stdin) is read into memory from duet_alloc. An empty file
 * gives size 0 and a valid non-NULL data pointer. */
typedef struct duet_mapped {
    const unsigned char *data;
    size_t size;
    void *map_base;   /* non-NULL when mmap'ed (length map_len) */
    size_t map_len;
    void *heap;       /* non-NULL when read into duet_alloc memory */
} duet_mapped;

/* Maps path. On failure returns DUET_ERR_IO (or NOMEM) with a message naming
 * the path and the OS error, and leaves *m empty. */
duet_status duet_map_file(const char *path, duet_mapped *m);
/* Unmaps/frees; the struct becomes empty. Safe on an empty struct. */
void duet_unmap_file(duet_mapped *m);
/* This thread's duet_map_file mode: 0 maps regular files (the default); 1
 * reads them into anonymous memory aligned to 2 MiB and advised for
 * transparent huge pages (map_base / map_len then name that memory, and
 * duet_unmap_file unmaps it as well). Returns the previous mode. The model
 * loaders set it for the length of one duet_model_open. */
int duet_map_set_read(int read);

/* Reads a whole file into memory from duet_alloc, NUL-terminated (the NUL is
 * not counted in *size). The caller frees *data with duet_free. */
duet_status duet_read_file(const char *path, char **data, size_t *size);

/* ---- atomic writing (fileio.c) ---- */

typedef struct duet_chunk {
    const void *data;
    size_t size;
} duet_chunk;

/* Writes the concatenation of chunks[0..n) to path atomically: a temporary
 * "<path>.tmp.<pid>" in the same folder, write, fsync, rename over path, fsync
 * of the folder. On any failure the temporary is removed and an existing file
 * at path is left untouched. An existing file's permission bits are kept.
 * (Writing the same path from two threads of one process at once is not
 * supported: they would share the temporary name.) */
duet_status duet_write_chunks_atomic(const char *path, const duet_chunk *chunks, int64_t n);

/* ---- safetensors (safetensors.c) ---- */

/* duet_st_open that also returns the status of a failure (FORMAT, UNSUPPORTED,
 * IO, NOMEM); *out is NULL unless DUET_OK. */
duet_status duet_st_open_ex(const char *path, duet_st **out);
/* Opens a safetensors image already in memory: same checks and messages as
 * duet_st_open, with `name` standing in for the file name. data is NOT
 * copied and must outlive the handle. */
duet_status duet_st_open_memory(const char *name, const void *data, size_t size, duet_st **out);

#endif
