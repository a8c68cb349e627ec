/* aot_demo.c: uses a library written by `bertcc MODEL.xml -o DIR/bert.so --prefix bert`
 * through DIR/bert.h alone (no bertcc headers, no LLVM).
 *
 *   cc -I DIR examples/aot_demo.c DIR/bert.so -Wl,-rpath,DIR -o aot_demo
 *   ./aot_demo WEIGHTS.safetensors [--grad] ID ID ...
 *
 * Runs the ids as one sequence (B = 1): the forward pass, or with --grad the forward
 * and backward pass with every label set to 0 (MLM labels: the ids themselves, so the
 * model is asked to reconstruct its input). Prints every output as
 * "name [shape] v0 v1 ...", one per line, with 9 significant digits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bert.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s WEIGHTS.safetensors [--grad] ID ID ...\n", argv[0]);
        return 1;
    }
    int grad = !strcmp(argv[2], "--grad"), first = grad ? 3 : 2;
    int64_t S = argc - first, ids[512], zeros[512] = {0};
    if (S < 1 || S > 512) {
        fprintf(stderr, "give 1 to 512 ids\n");
        return 1;
    }
    for (int64_t i = 0; i < S; i++)
        ids[i] = strtoll(argv[first + i], NULL, 10);
    char err[1024];
    bert_model *m = bert_create(err, sizeof err);
    if (!m || bert_load(m, argv[1], err, sizeof err)) {
        fprintf(stderr, "aot_demo: %s\n", err);
        bert_destroy(m);
        return 1;
    }
    bert_set_threads(m, 2);
    bert_labels labels = {ids, zeros, zeros, zeros, zeros, zeros};
    int rc = grad
                 ? bert_forward_backward(m, 1, S, ids, NULL, NULL, &labels, err, sizeof err)
                 : bert_forward(m, 1, S, ids, NULL, NULL, err, sizeof err);
    if (rc) {
        fprintf(stderr, "aot_demo: %s\n", err);
        bert_destroy(m);
        return 1;
    }
    for (int i = 0; i < bert_output_count(m); i++) {
        const char *name = bert_output_name(m, i);
        int64_t shape[8];
        int rank;
        const float *v = bert_output(m, name, shape, &rank);
        int64_t n = 1;
        printf("%s [", name);
        for (int d = 0; d < rank; d++) {
            printf("%s%lld", d ? "," : "", (long long)shape[d]);
            n *= shape[d];
        }
        printf("]");
        for (int64_t k = 0; k < n; k++)
            printf(" %.9g", v[k]);
        printf("\n");
    }
    bert_destroy(m);
    return 0;
}
