/* file.h: files for the parsers of every layer (reading a whole file) and for every
 * writer (durable, atomic replacement: README "Run directories"). */
#ifndef BERTCC_SUPPORT_FILE_H
#define BERTCC_SUPPORT_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"

/* A regular file opened for reading, or NULL with e filled ("PATH: cannot open: ...",
 * "PATH: is a directory", "PATH: not a regular file"). The check comes before anything
 * could block: the file is opened O_NONBLOCK (a FIFO or a device returns at once), then
 * fstat'ed, then set back to blocking. Every reader of a user's file goes through it or
 * bc_open_read (the same, as a descriptor). */
FILE *bc_fopen_read(const char *path, bc_err *e);
int bc_open_read(const char *path, bc_err *e);

/* Removes the NUL bytes of s[0..n) (a line as getline returned it) and terminates it:
 * the new length. Text readers call it so that a NUL inside a line neither cuts the
 * line (as strlen would) nor reaches the tokenizer, which removes U+0000 anyway
 * (Hugging Face's clean_text): every command reads such a line alike. */
size_t bc_drop_nul(char *s, size_t n);

/* The whole file at path, NUL-terminated (*len bytes before the NUL), to be freed by
 * the caller; NULL with e filled ("PATH: cannot open: ...", "cannot read", "out of
 * memory"). */
char *bc_read_file(const char *path, size_t *len, bc_err *e);

/* ---- atomic replacement: a reader sees the old file or the new one, never a part ----
 * f = bc_atomic_open(path, tmp, sizeof tmp, e) creates "PATH.tmp.PID" (its name into
 * tmp); bc_atomic_commit(f, tmp, path, e) flushes it, fsyncs it, closes it, renames it
 * over path and fsyncs path's directory, so that after it returns the new file survives
 * a power cut; on any failure it removes the temporary file and leaves path as it was.
 * bc_atomic_abort(f, tmp) gives up (closes and removes). A path that exists and is
 * neither a regular file nor a directory (/dev/null, /dev/stdout, a FIFO) is opened and
 * written in place instead (tmp set to ""): renaming over it would replace the device
 * with a regular file, which as root is possible and breaks every later reader of it. */
int bc_is_special_file(const char *path);
FILE *bc_atomic_open(const char *path, char *tmp, size_t tmplen, bc_err *e);
/* The whole file at once: data[0..n) replaces path the same way. */
int bc_atomic_write(const char *path, const void *data, size_t n, bc_err *e);
int bc_atomic_commit(FILE *f, const char *tmp, const char *path, bc_err *e);
void bc_atomic_abort(FILE *f, const char *tmp);

/* fsync of a file or a directory by path (a rename is durable once its directory is);
 * of the directory holding path. 0, or -1 with errno set. */
int bc_fsync_path(const char *path);
int bc_fsync_parent(const char *path);

/* Output sets (a directory of files written together: an export, demo data, a new run
 * directory) are written into a temporary directory, made durable with
 * bc_fsync_tree (every file and directory below dir, then dir), and published with
 * bc_publish_dir: renamed to out when out does not exist or is an empty directory (the
 * set appears whole or not at all); merged into an existing out otherwise, each file
 * renamed over its namesake (each one complete; `last`, when not NULL, is moved after
 * every other file: the file whose presence makes the set usable), then tmp removed.
 * 0, or -1 with e filled. */
int bc_fsync_tree(const char *dir, bc_err *e);
int bc_publish_dir(const char *tmp, const char *out, const char *last, bc_err *e);
/* rm -r path */
void bc_remove_tree(const char *path);
/* e's message with the temporary directory `tmp` replaced by `out`, the name the user
 * gave (a message about OUT.tmp.PID/FILE reads as one about OUT/FILE). */
void bc_err_untmp(bc_err *e, const char *tmp, const char *out);

/* Whether name is a temporary file of the writers above or of rt_st_save ("X.tmp.PID")
 * whose process is gone (a killed writer's leftover; a live process's is kept). */
int bc_is_stale_tmp(const char *name);

/* h advanced over data[0..n): 8 bytes at a time (FNV-style multiply, then a shift), the
 * tail byte by byte. Hashing a buffer in pieces whose sizes are multiples of 8 gives the
 * same value as hashing it whole. Not cryptographic: a content check. */
uint64_t bc_hash_bytes(uint64_t h, const void *data, size_t n);
/* A 64-bit hash of the file's bytes (a content check: a zeroed page changes it) and its
 * size; -1 with e filled when it cannot be read. */
int bc_file_hash(const char *path, uint64_t *hash, int64_t *size, bc_err *e);

/* The fault-injection hook of the crash tests: every durable step of a checkpoint or an
 * atomic write (a file written, an fsync, a rename) calls it; with BERTCC_FAULT_AT=N in
 * the environment the N-th call (counted from 1) kills the process with SIGKILL, as a
 * crash or a power cut at that instant would; BERTCC_FAULT_AT=-1 counts them and prints
 * "bertcc: fault points: N" on stderr at exit. Without the variable it does nothing. */
void bc_fault_point(void);

#endif
