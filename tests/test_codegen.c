/* test_codegen.c: every generated kernel against the reference interpreter, on odd
 * shapes (1, primes, sizes that are not multiples of the vector width or tile), with 1
 * and 2 threads. Each case builds a tiny graph around one op. */
#include <criterion/criterion.h>
#include <string.h>

#include "../codegen/engine.h"
#include "tests/util.h"

/* B and S bound through an i64 input "ids" of shape [B, S]. */
static int ids_input(ir_graph *g)
{
    ir_dim d[2] = {IR_DIM_B, IR_DIM_S};
    return ir_input(g, "ids", ir_type_make(IR_I64, 2, d));
}

static void check(ir_graph *g, rt_tensor_list *params, rt_tensor_list *inputs, double rtol)
{
    char msg[512];
    cr_assert(!g->failed, "building the graph: %s", g->err.msg);
    for (int threads = 1; threads <= 2; threads++)
        cr_expect(tu_jit_vs_ref(g, params, inputs, threads, rtol, 1e-6, msg, sizeof msg) == 0,
                  "threads %d: %s", threads, msg);
    ir_graph_free(g);
    rt_list_free(params);
    rt_list_free(inputs);
}

Test(codegen, add_with_suffix_broadcast_on_odd_shapes)
{
    static const int64_t sizes[][3] = {{1, 1, 1}, {3, 5, 7}, {2, 13, 17}, {1, 37, 33}};
    for (size_t c = 0; c < sizeof sizes / sizeof *sizes; c++) {
        int64_t B = sizes[c][0], S = sizes[c][1], H = sizes[c][2];
        ir_graph *g = ir_graph_new("t");
        int ids = ids_input(g);
        ir_dim d3[3] = {IR_DIM_B, IR_DIM_S, ir_dconst(H)};
        int x = ir_input(g, "x", ir_type_make(IR_F32, 3, d3));
        int bias = ir_param(g, "bias", ir_type_make(IR_F32, 1, &d3[2]));
        ir_set_output(g, "y", ir_addv(g, x, bias));
        ir_set_output(g, "z", ir_addv(g, x, x));
        (void)ids;
        rt_tensor_list p, in;
        rt_list_init(&p);
        rt_list_init(&in);
        int64_t bs[2] = {B, S}, bsh[3] = {B, S, H};
        tu_add_rand_i64(&in, "ids", 2, bs, 0, 1, 1);
        tu_add_rand_f32(&in, "x", 3, bsh, -2, 2, 2);
        tu_add_rand_f32(&p, "bias", 1, &H, -2, 2, 3);
        check(g, &p, &in, 1e-6);
    }
}
