/* safetensors.h: reading and writing the safetensors format
 * (8-byte little-endian header length N, N bytes of JSON header, then the data).
 * Everything a file claims is checked against the file before it is trusted. */
#ifndef BERTCC_RT_SAFETENSORS_H
#define BERTCC_RT_SAFETENSORS_H

#include "tensor.h"

/* Loads every tensor of PATH into out (appended). The "__metadata__" entry, if any,
 * is skipped. Errors (message starts with PATH, names the tensor where there is one):
 * unreadable file, file shorter than 8 bytes, header length past the end of the file,
 * header not a JSON object or with duplicate keys, an entry without dtype/shape/
 * data_offsets, unknown dtype, negative or non-integer shape, offsets out of range,
 * reversed, overlapping, not covering the data section exactly (no holes), or whose
 * length differs from numel * dtype size. On error out is left as it was. */
int rt_st_load(const char *path, rt_tensor_list *out, bc_err *e);

/* Parses an in-memory file image (same checks); name is used in messages. */
int rt_st_parse(const void *buf, size_t len, const char *name, rt_tensor_list *out,
                bc_err *e);

/* Writes l to PATH atomically (PATH.tmp.<pid>, then rename), tensors in list order,
 * header padded with spaces to a multiple of 8 bytes as the reference implementation
 * does. Tensor names must be unique. */
int rt_st_save(const char *path, const rt_tensor_list *l, bc_err *e);

#endif
