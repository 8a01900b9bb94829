/*
 * fileio.c — how duet touches files: read-only maps (zero-copy checkpoint
 * loading), whole-file reads, and atomic writes (a crash or a full disk never
 * leaves a half-written checkpoint where a good one was).
 *
 * Atomic write recipe (POSIX): create "<path>.tmp.<pid>" in the same folder
 * (rename is only atomic within one filesystem), write everything, fsync the
 * file, close, rename over the target, then fsync the folder so the rename
 * itself survives a power cut. Any failure before the rename removes the
 * temporary; the old file is never opened for writing.
 *
 * What it is not: portable to Windows, or a locking scheme between processes.
 */
#include "formats/formats.h"

#include "core/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ======================================================================== */
/* Reading                                                                   */
/* ======================================================================== */

/* Reads fd to EOF into a duet_alloc buffer with one spare byte (for a NUL).
 * size_hint: expected size (0 when unknown). */
static duet_status read_all(int fd, const char *path, size_t size_hint, unsigned char **out,
                            size_t *out_size) {
    size_t cap = size_hint + 1 > 4096 ? size_hint + 1 : 4096, n = 0;
    unsigned char *buf = duet_alloc(cap);
    if (!buf) return duet_set_error(DUET_ERR_NOMEM, "%s: out of memory reading the file", path);
    for (;;) {
        if (n + 1 >= cap) {
            if (cap > SIZE_MAX / 2) {
                duet_free(buf);
                return duet_set_error(DUET_ERR_NOMEM, "%s: file too large to read", path);
            }
            unsigned char *nb = duet_alloc(cap * 2);
            if (!nb) {
                duet_free(buf);
                return duet_set_error(DUET_ERR_NOMEM, "%s: out of memory reading the file",
                                      path);
            }
            memcpy(nb, buf, n);
            duet_free(buf);
            buf = nb;
            cap *= 2;
        }
        size_t want = cap - 1 - n;
        if (want > ((size_t)1 << 30)) want = (size_t)1 << 30;
        ssize_t r = read(fd, buf + n, want);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            duet_free(buf);
            return duet_set_error(DUET_ERR_IO, "%s: read failed: %s", path, strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    buf[n] = 0;
    *out = buf;
    *out_size = n;
    return DUET_OK;
}

static duet_status open_for_reading(const char *path, int *fd, struct stat *st) {
    if (!path || !*path) return duet_set_error(DUET_ERR_ARG, "no file name given");
    do *fd = open(path, O_RDONLY | O_CLOEXEC);
    while (*fd < 0 && errno == EINTR);
    if (*fd < 0)
        return duet_set_error(DUET_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(*fd, st) != 0) {
        int e = errno;
        close(*fd);
        return duet_set_error(DUET_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st->st_mode)) {
        close(*fd);
        return duet_set_error(DUET_ERR_IO, "%s: is a directory, not a file", path);
    }
    return DUET_OK;
}

static const unsigned char empty_file[1] = {0};

static _Thread_local int map_read;

int duet_map_set_read(int read) {
    const int prev = map_read;
    map_read = read != 0;
    return prev;
}

/* The file into huge-page memory (duet_huge_alloc; map_base / map_len name
 * the mapping, so duet_unmap_file takes it back). */
static duet_status read_anon(int fd, const char *path, size_t len, duet_mapped *m) {
    duet_huge h;
    unsigned char *p = duet_huge_alloc(len, &h);
    if (!p)
        return duet_set_error(DUET_ERR_NOMEM, "%s: no memory to read %zu bytes into (%s)", path, len,
                              strerror(errno));
    size_t got = 0;
    while (got < len) {
        const size_t want = len - got > ((size_t)1 << 30) ? (size_t)1 << 30 : len - got;
        const ssize_t r = pread(fd, p + got, want, (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            const int e = r < 0 ? errno : 0;
            duet_huge_free(&h);
            return duet_set_error(DUET_ERR_IO, "%s: read failed at byte %zu of %zu: %s", path, got, len,
                                  e ? strerror(e) : "the file got shorter");
        }
        got += (size_t)r;
    }
    m->map_base = h.base;
    m->map_len = h.len;
    m->data = p;
    m->size = len;
    return DUET_OK;
}

duet_status duet_map_file(const char *path, duet_mapped *m) {
    memset(m, 0, sizeof *m);
    int fd;
    struct stat st;
    duet_status s = open_for_reading(path, &fd, &st);
    if (s != DUET_OK) return s;
    if (S_ISREG(st.st_mode)) {
        if (st.st_size == 0) {
            close(fd);
            m->data = empty_file;
            return DUET_OK;
        }
        if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
            close(fd);
            return duet_set_error(DUET_ERR_IO, "%s: too large to map on this machine", path);
        }
        size_t len = (size_t)st.st_size;
        if (map_read) {
            s = read_anon(fd, path, len, m);
            close(fd);
            return s;
        }
        void *p = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p != MAP_FAILED) {
            close(fd);
            m->map_base = p;
            m->map_len = len;
            m->data = p;
            m->size = len;
            return DUET_OK;
        }
        /* some filesystems cannot map: fall through to reading */
    }
    unsigned char *buf;
    size_t n;
    s = read_all(fd, path, S_ISREG(st.st_mode) ? (size_t)st.st_size : 0, &buf, &n);
    close(fd);
    if (s != DUET_OK) return s;
    m->heap = buf;
    m->data = buf;
    m->size = n;
    return DUET_OK;
}

void duet_unmap_file(duet_mapped *m) {
    if (!m) return;
    if (m->map_base) munmap(m->map_base, m->map_len);
    duet_free(m->heap);
    memset(m, 0, sizeof *m);
}

duet_status duet_read_file(const char *path, char **data, size_t *size) {
    *data = NULL;
    *size = 0;
    int fd;
    struct stat st;
    duet_status s = open_for_reading(path, &fd, &st);
    if (s != DUET_OK) return s;
    unsigned char *buf;
    s = read_all(fd, path, S_ISREG(st.st_mode) ? (size_t)st.st_size : 0, &buf, size);
    close(fd);
    if (s == DUET_OK) *data = (char *)buf;
    return s;
}

/* ======================================================================== */
/* Atomic writing                                                            */
/* ======================================================================== */

static int write_full(int fd, const unsigned char *p, size_t n) {
    while (n) {
        size_t want = n > ((size_t)1 << 30) ? (size_t)1 << 30 : n;
        ssize_t w = write(fd, p, want);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* fsync of the folder holding `path` (so the rename is durable). Filesystems
 * that cannot sync a folder answer EINVAL/ENOTSUP: nothing more to do there. */
static int sync_parent_dir(const char *path, char *scratch) {
    const char *slash = strrchr(path, '/');
    if (!slash) strcpy(scratch, ".");
    else if (slash == path) strcpy(scratch, "/");
    else {
        memcpy(scratch, path, (size_t)(slash - path));
        scratch[slash - path] = 0;
    }
    int dfd = open(scratch, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return -1;
    int r = fsync(dfd);
    int e = errno;
    close(dfd);
    if (r != 0 && (e == EINVAL || e == ENOTSUP || e == EROFS)) r = 0;
    errno = e;
    return r;
}

duet_status duet_write_chunks_atomic(const char *path, const duet_chunk *chunks, int64_t n) {
    if (!path || !*path) return duet_set_error(DUET_ERR_ARG, "write: no file name given");
    if (n < 0 || (n > 0 && !chunks))
        return duet_set_error(DUET_ERR_ARG, "%s: write: bad chunk list", path);
    for (int64_t i = 0; i < n; i++)
        if (chunks[i].size && !chunks[i].data)
            return duet_set_error(DUET_ERR_ARG, "%s: write: chunk %lld has no data", path,
                                  (long long)i);

    char suffix[40];
    snprintf(suffix, sizeof suffix, ".tmp.%ld", (long)getpid());
    size_t pl = strlen(path), sl = strlen(suffix);
    /* one buffer: the temporary's name, then scratch for the folder's name */
    char *tmp = duet_alloc(2 * (pl + sl + 2));
    if (!tmp) return duet_set_error(DUET_ERR_NOMEM, "%s: out of memory preparing the write", path);
    char *scratch = tmp + pl + sl + 2;
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, suffix, sl + 1);

    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno == EEXIST) {
        /* left behind by a crashed process that had our pid: it is stale */
        unlink(tmp);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    }
    if (fd < 0) {
        int e = errno;
        duet_status s = duet_set_error(
            DUET_ERR_IO, "%s: cannot create the temporary file %s: %s%s", path, tmp, strerror(e),
            e == ENOENT ? " (does the folder exist?)"
                        : e == EACCES ? " (is the folder writable?)" : "");
        duet_free(tmp);
        return s;
    }
    struct stat old;
    if (stat(path, &old) == 0 && S_ISREG(old.st_mode)) (void)fchmod(fd, old.st_mode & 07777);

    const char *what = NULL;
    for (int64_t i = 0; i < n && !what; i++)
        if (write_full(fd, chunks[i].data, chunks[i].size) != 0) what = "write";
    if (!what && fsync(fd) != 0) what = "fsync";
    int e = errno;
    if (close(fd) != 0 && !what) {
        what = "close";
        e = errno;
    }
    if (!what && rename(tmp, path) != 0) {
        what = "rename";
        e = errno;
    }
    if (what) {
        unlink(tmp);
        duet_status s = duet_set_error(DUET_ERR_IO,
                                       "%s: %s of the temporary file failed: %s (the old file, "
                                       "if any, is untouched)",
                                       path, what, strerror(e));
        duet_free(tmp);
        return s;
    }
    if (sync_parent_dir(path, scratch) != 0) {
        e = errno;
        duet_status s = duet_set_error(DUET_ERR_IO,
                                       "%s: written, but syncing its folder failed: %s (the new "
                                       "file may not survive a power cut)",
                                       path, strerror(e));
        duet_free(tmp);
        return s;
    }
    duet_free(tmp);
    return DUET_OK;
}

duet_status duet_write_file_atomic(const char *path, const void *data, size_t size) {
    duet_chunk c = {data, size};
    return duet_write_chunks_atomic(path, &c, 1);
}
