/* test_tensor.c: runtime/tensor.c's memory — arenas (rt_list_pack: one allocation,
 * every view inside it, aligned, in list order, freed once with its last view) and
 * views of the caller's memory (rt_list_add_view). Run under AddressSanitizer, a view
 * freed twice, read after its arena is gone, or an arena that is never freed fails. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "../runtime/tensor.h"

/* Three tensors of odd sizes (none a multiple of 64 bytes), an empty one between them,
 * each holding k * 1000 + i at element i. */
static void make_list(rt_tensor_list *l)
{
    rt_list_init(l);
    static const int64_t s1[1] = {3}, s2[2] = {5, 7}, s0[2] = {4, 0}, s3[1] = {1};
    cr_assert(rt_list_add(l, "a", RT_F32, 1, s1, NULL));
    cr_assert(rt_list_add(l, "b", RT_I64, 2, s2, NULL));
    cr_assert(rt_list_add(l, "empty", RT_F32, 2, s0, NULL));
    cr_assert(rt_list_add(l, "c", RT_F32, 1, s3, NULL));
    for (int k = 0; k < l->n; k++)
        for (int64_t i = 0; i < rt_numel(&l->t[k]); i++) {
            if (l->t[k].dtype == RT_F32)
                ((float *)l->t[k].data)[i] = (float)(k * 1000 + i);
            else
                ((int64_t *)l->t[k].data)[i] = k * 1000 + i;
        }
}

static void expect_values(const rt_tensor_list *l)
{
    for (int k = 0; k < l->n; k++)
        for (int64_t i = 0; i < rt_numel(&l->t[k]); i++) {
            double v = l->t[k].dtype == RT_F32 ? ((const float *)l->t[k].data)[i]
                                               : (double)((const int64_t *)l->t[k].data)[i];
            cr_expect_eq(v, (double)(k * 1000 + i), "%s[%lld] = %g", l->t[k].name,
                         (long long)i, v);
        }
}

Test(tensor, pack_puts_every_tensor_in_one_aligned_allocation_in_list_order)
{
    rt_tensor_list l;
    make_list(&l);
    cr_assert_eq(rt_list_pack(&l), 0);
    rt_arena *a = l.t[0].arena;
    cr_assert_not_null(a);
    cr_expect_eq(a->refs, 3, "one reference per tensor with data, not %d", a->refs);
    cr_expect_eq((uintptr_t)a->data % 64, 0);
    /* 12, 280 and 4 bytes, each slot rounded up to 64: 64 + 320 + 64. */
    cr_expect_eq(a->bytes, (size_t)448);
    const char *base = a->data;
    size_t at = 0;
    for (int k = 0; k < l.n; k++) {
        const rt_tensor *t = &l.t[k];
        if (!rt_nbytes(t)) {
            cr_expect_null(t->data, "%s: an empty tensor has no data", t->name);
            cr_expect_null(t->arena);
            continue;
        }
        cr_expect(t->view, "%s is not a view", t->name);
        cr_expect_eq(t->arena, a, "%s: another arena", t->name);
        cr_expect_eq((const char *)t->data, base + at, "%s is not at offset %zu", t->name,
                     at);
        cr_expect_eq((uintptr_t)t->data % 64, 0, "%s is not 64-byte aligned", t->name);
        at += (rt_nbytes(t) + 63) / 64 * 64;
    }
    cr_expect_eq(at, a->bytes);
    expect_values(&l);
    rt_list_free(&l); /* one free of the arena: ASan reports a second, or a leak */
    cr_expect_eq(l.n, 0);
}

Test(tensor, views_outlive_their_neighbours_and_the_arena_goes_with_the_last)
{
    rt_tensor_list l, other;
    make_list(&l);
    cr_assert_eq(rt_list_pack(&l), 0);
    rt_arena *a = l.t[0].arena;
    /* Removing or replacing a view releases only its share of the arena. */
    cr_assert_eq(rt_list_remove(&l, "a"), 1);
    cr_expect_eq(a->refs, 2);
    static const int64_t s1[1] = {2};
    const rt_tensor *c = rt_list_add(&l, "c", RT_F32, 1, s1, (float[]){7, 8});
    cr_assert(c && !c->view && !c->arena);
    cr_expect_eq(a->refs, 1);
    /* Moved to another list, the last view keeps the arena alive there. */
    rt_list_init(&other);
    cr_assert_eq(rt_list_append(&other, &l), 0);
    rt_list_free(&l);
    const rt_tensor *b = rt_list_cfind(&other, "b");
    cr_assert(b && b->arena == a);
    cr_expect_eq(((const int64_t *)b->data)[34], 1034);
    rt_list_free(&other);
}

Test(tensor, packing_twice_moves_into_a_new_arena_and_frees_the_old)
{
    rt_tensor_list l;
    make_list(&l);
    cr_assert_eq(rt_list_pack(&l), 0);
    rt_arena *first = l.t[0].arena;
    cr_assert_eq(rt_list_pack(&l), 0);
    cr_expect_neq(l.t[0].arena, first);
    cr_expect_eq(l.t[0].arena->refs, 3);
    expect_values(&l); /* the old arena is gone: ASan would report a read of it */
    rt_list_free(&l);
}

Test(tensor, pack_of_nothing_makes_no_arena)
{
    rt_tensor_list l;
    rt_list_init(&l);
    cr_expect_eq(rt_list_pack(&l), 0);
    static const int64_t s0[1] = {0};
    cr_assert(rt_list_add(&l, "empty", RT_F32, 1, s0, NULL));
    cr_expect_eq(rt_list_pack(&l), 0);
    cr_expect_null(l.t[0].arena);
    cr_expect_null(l.t[0].data);
    rt_list_free(&l);
}

Test(tensor, a_view_of_the_callers_memory_is_never_freed)
{
    float mine[4] = {1, 2, 3, 4}; /* on the stack: freeing it is an ASan report */
    static const int64_t s[1] = {4};
    rt_tensor_list l;
    rt_list_init(&l);
    rt_tensor *t = rt_list_add_view(&l, "v", RT_F32, 1, s, mine);
    cr_assert_not_null(t);
    cr_expect_eq(t->data, (void *)mine);
    cr_expect(t->view);
    cr_expect_null(t->arena);
    /* Replaced by an owned tensor of the same name: the view is dropped, not freed. */
    cr_assert(rt_list_add(&l, "v", RT_F32, 1, s, NULL));
    cr_expect_eq(l.n, 1);
    cr_expect_neq(l.t[0].data, (void *)mine);
    cr_assert(rt_list_add_view(&l, "w", RT_F32, 1, s, mine));
    /* Packing copies a view of the caller's memory into the arena. */
    cr_assert_eq(rt_list_pack(&l), 0);
    cr_expect_neq(l.t[1].data, (void *)mine);
    cr_expect_eq(((float *)l.t[1].data)[3], 4.0f);
    rt_list_free(&l);
    cr_expect_eq(mine[2], 3.0f);
}
