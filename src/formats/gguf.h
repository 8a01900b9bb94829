/*
 * gguf.h — private to src/formats/gguf.c and its tests: the status of the
 * last failed duet_gguf_open / duet_gguf_open_memory on this thread (the
 * public constructors return NULL and keep only the message).
 */
#ifndef DUET_FORMATS_GGUF_H
#define DUET_FORMATS_GGUF_H

#include "duet.h"

/* DUET_OK after a successful open; else why the last open on this thread failed. */
duet_status duet_gguf_last_open_status(void);

#endif
