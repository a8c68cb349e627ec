/* tensor.h: named host tensors and lists of them. This is the currency of the
 * runtime's I/O: safetensors files, parameter stores, batches and outputs.
 *
 * Memory: a tensor either owns its data (one allocation per tensor, what rt_list_add
 * makes) or is a view. Views lie in an arena, or in memory the caller owns
 * (rt_list_add_view). An arena is one 64-byte-aligned allocation that rt_list_pack
 * carves into the views of a whole list, as llm.c keeps parameters, gradients and
 * optimizer moments: tensor i of the list at a 64-byte-aligned offset after tensor
 * i - 1, in list order. The arena counts the tensors whose data lies in it and is
 * freed with the last of them (rt_list_free frees it once), so removing, replacing or
 * moving a view to another list (rt_list_append) stays safe. */
#ifndef BERTCC_RT_TENSOR_H
#define BERTCC_RT_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "../support/err.h"

#define RT_MAX_RANK 8

typedef enum {
    RT_F32,
    RT_F64,
    RT_F16,
    RT_BF16,
    RT_I64,
    RT_I32,
    RT_I16,
    RT_I8,
    RT_U8,
    RT_BOOL,
    RT_DTYPE_COUNT
} rt_dtype;

/* One allocation that the data of several tensors lies in (see above). */
typedef struct rt_arena {
    int refs;     /* tensors whose data lies in it */
    size_t bytes; /* of data */
    void *data;   /* 64-byte aligned, right after this struct: one allocation holds both */
} rt_arena;

#define RT_ARENA_ALIGN 64

typedef struct rt_tensor {
    char *name;
    rt_dtype dtype;
    int rank;
    int64_t shape[RT_MAX_RANK];
    void *data;      /* numel * rt_dtype_size bytes (may be NULL when numel == 0) */
    int view;        /* 0: data is the tensor's own allocation; 1: it is not (see arena) */
    rt_arena *arena; /* a view's arena (released with the tensor), or NULL: a view of
                        memory the caller owns and keeps alive */
} rt_tensor;

typedef struct rt_tensor_list {
    rt_tensor *t;
    int n, cap;
} rt_tensor_list;

size_t rt_dtype_size(rt_dtype dt);
const char *rt_dtype_name(rt_dtype dt); /* safetensors spelling: "F32", "BF16", ... */
int rt_dtype_from_name(const char *s, rt_dtype *out); /* 0, or -1 if unknown */
int rt_dtype_is_int(rt_dtype dt);                     /* I64 ... BOOL */

int64_t rt_numel(const rt_tensor *t);
size_t rt_nbytes(const rt_tensor *t);

void rt_list_init(rt_tensor_list *l);
/* Frees every tensor (owned data, and an arena with its last view) and the array. */
void rt_list_free(rt_tensor_list *l);
/* Adds a tensor with a copy of name and (if data is non-NULL) of data; data NULL means
 * zero-filled. Returns the new tensor, or NULL on allocation failure. A name already in
 * the list is replaced. */
rt_tensor *rt_list_add(rt_tensor_list *l, const char *name, rt_dtype dt, int rank,
                       const int64_t *shape, const void *data);
/* Adds a view: a tensor with a copy of name whose data is `data`, which the caller
 * owns and keeps alive as long as the tensor (nothing frees it). A name already in the
 * list is replaced. Returns the new tensor, or NULL on allocation failure. */
rt_tensor *rt_list_add_view(rt_tensor_list *l, const char *name, rt_dtype dt, int rank,
                            const int64_t *shape, void *data);
/* Moves the data of every tensor of l into one new arena (see above): afterwards each
 * tensor with data is a view into it, in list order, each 64-byte aligned; empty
 * tensors keep data NULL. Owned data is freed; views keep their old memory's owner
 * (an older arena is freed with its last view). Returns 0, or -1 on allocation failure
 * with l unchanged. */
int rt_list_pack(rt_tensor_list *l);
rt_tensor *rt_list_find(const rt_tensor_list *l, const char *name);
const rt_tensor *rt_list_cfind(const rt_tensor_list *l, const char *name);
int rt_list_remove(rt_tensor_list *l, const char *name); /* 1 removed, 0 absent */
/* Moves every tensor of src (whose names are unique) to dst without copying data: a
 * name already in dst is replaced in place, others are appended in src's order. src is
 * left empty. Returns 0, or -1 on allocation failure with both lists unchanged. */
int rt_list_append(rt_tensor_list *dst, rt_tensor_list *src);

/* Conversions for loading: any float dtype (F32, F64, F16, BF16) to float, any integer
 * dtype to int64. dst has rt_numel(t) elements. Return -1 (error naming the tensor) if
 * the dtype class is wrong. */
int rt_to_f32(const rt_tensor *t, float *dst, bc_err *e);
int rt_to_i64(const rt_tensor *t, int64_t *dst, bc_err *e);
float rt_f16_to_f32(uint16_t h);
float rt_bf16_to_f32(uint16_t h);
uint16_t rt_f32_to_f16(float f);  /* round to nearest even */
uint16_t rt_f32_to_bf16(float f); /* round to nearest even */

/* "[2, 3, 4]" */
char *rt_shape_str(int rank, const int64_t *shape, char *buf, size_t len);

#endif
