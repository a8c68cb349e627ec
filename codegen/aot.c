/* aot.c: shared-library output. The kernels of both graphs go into object files, with
 * hidden visibility; a generated C wrapper holds the kernel tables, the graphs' IR text
 * and the prefixed C API, the only symbols exported; cc links them with the runtime
 * archives of this build (their symbols hidden too) into NAME.so. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cg.h"
#include "../support/file.h"
#include "codegen.h"

#ifndef BERTCC_LIB_DIR
#define BERTCC_LIB_DIR "."
#endif
#ifndef BERTCC_INCLUDE_DIR
#define BERTCC_INCLUDE_DIR "."
#endif
#ifndef BERTCC_AOT_FLAGS
#define BERTCC_AOT_FLAGS ""
#endif

static void write_c_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '\n') {
            fputs("\\n\"\n    \"", f);
            continue;
        }
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 32 || ch >= 127)
            fprintf(f, "\\%03o", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void write_kernel_table(FILE *f, const ir_graph *g, const rt_plan *p,
                               const char *prefix, const char *table)
{
    char body[160], units[160];
    for (int k = 0; k < p->nkernels; k++) {
        cg_kernel_names(prefix, k, &g->nodes[p->kernel_node[k]], body, units, sizeof body);
        fprintf(f, "int64_t %s(const int64_t *, int64_t *);\n", units);
        fprintf(f, "void %s(void *const *, const int64_t *, int64_t, int64_t, void *);\n",
                body);
    }
    fprintf(f, "static const rt_kernel %s[] = {\n", table);
    for (int k = 0; k < p->nkernels; k++) {
        cg_kernel_names(prefix, k, &g->nodes[p->kernel_node[k]], body, units, sizeof body);
        fprintf(f, "    {%s, %s},\n", units, body);
    }
    fprintf(f, "    {0, 0}};\n\n");
}

static const char api_decl[] =
    "typedef struct P_model P_model;\n"
    "typedef struct P_labels {\n"
    "    const int64_t *mlm_labels;      /* [B, S], -100 = ignored */\n"
    "    const int64_t *nsp_labels;      /* [B] */\n"
    "    const int64_t *intent_labels;   /* [B] */\n"
    "    const int64_t *slot_labels;     /* [B, S] */\n"
    "    const int64_t *start_positions; /* [B] */\n"
    "    const int64_t *end_positions;   /* [B] */\n"
    "} P_labels;\n\n"
    "/* Pointers: a NULL model, input_ids or path is an error (-1 with a message; the\n"
    " * queries return NULL or 0, P_set_threads and P_destroy do nothing); err may be\n"
    " * NULL (no message is kept); token_type_ids, attention_mask, labels and each label\n"
    " * array, and P_output's shape and rank, may be NULL.\n"
    " * Creates a model; fails (NULL, message in err) when this CPU lacks a feature the\n"
    " * library was compiled for. */\n"
    "P_model *P_create(char *err, size_t errlen);\n"
    "void P_destroy(P_model *m);\n"
    "/* Parameters from a safetensors checkpoint with Hugging Face names. */\n"
    "int P_load(P_model *m, const char *path, char *err, size_t errlen);\n"
    "/* BERT's initialization (normal std 0.02, LayerNorm 1/0, biases 0) from seed. */\n"
    "int P_init(P_model *m, uint64_t seed, char *err, size_t errlen);\n"
    "/* Threads for later runs (0: all cores). */\n"
    "void P_set_threads(P_model *m, int threads);\n"
    "/* Eval-mode forward on a [B, S] batch; token_type_ids and attention_mask may be "
    "NULL\n"
    " * (all 0 / all 1). Outputs: sequence_output, pooled_output and each head's logits. "
    "*/\n"
    "int P_forward(P_model *m, int64_t B, int64_t S, const int64_t *input_ids,\n"
    "              const int64_t *token_type_ids, const int64_t *attention_mask, char "
    "*err,\n"
    "              size_t errlen);\n"
    "/* Forward and backward: adds every loss, \"loss\" and grad.<parameter name>. Absent\n"
    " * labels (NULL) are ignored (-100). */\n"
    "int P_forward_backward(P_model *m, int64_t B, int64_t S, const int64_t *input_ids,\n"
    "                       const int64_t *token_type_ids, const int64_t *attention_mask,\n"
    "                       const P_labels *labels, char *err, size_t errlen);\n"
    "/* An output of the last run (F32, row-major), or NULL; shape gets up to 8 dims. */\n"
    "const float *P_output(const P_model *m, const char *name, int64_t *shape, int "
    "*rank);\n"
    "int P_output_count(const P_model *m);\n"
    "const char *P_output_name(const P_model *m, int i);\n";

/* Writes text with every "P_" that starts an identifier replaced by "PREFIX_". */
static void write_prefixed(FILE *f, const char *text, const char *prefix)
{
    for (const char *s = text; *s; s++) {
        int starts = s == text ||
                     !(s[-1] == '_' || (s[-1] >= 'a' && s[-1] <= 'z') ||
                       (s[-1] >= 'A' && s[-1] <= 'Z') || (s[-1] >= '0' && s[-1] <= '9'));
        if (*s == 'P' && s[1] == '_' && starts)
            fputs(prefix, f);
        else
            fputc(*s, f);
    }
}

/* The header, named `name` in its comment, written to path. */
static int write_header(const char *path, const char *name, const char *prefix,
                        const char *model, const char *features, bc_err *e)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return bc_errf(e, "cannot write %s: %s", path, strerror(errno));
    fprintf(f,
            "/* %s: C API of the compiled BERT model \"%s\", written by bertcc.\n"
            " * Compiled for CPU features: %s\n"
            " * Every function returns 0 on success or -1 with a message in err. */\n"
            "#ifndef %s_BERT_H\n#define %s_BERT_H\n\n#include <stddef.h>\n#include "
            "<stdint.h>\n\n"
            "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n",
            name, model, features[0] ? features : "(none)", prefix, prefix);
    write_prefixed(f, api_decl, prefix);
    fprintf(f, "\n#ifdef __cplusplus\n}\n#endif\n#endif\n");
    int bad = ferror(f);
    return fclose(f) || bad ? bc_errf(e, "cannot write %s", path) : 0;
}

static const char api_impl[] =
    "struct P_model { rt_model *m; int threads; };\n"
    "#define API __attribute__((visibility(\"default\")))\n"
    "static void put(char *err, size_t len, const bc_err *e) {\n"
    "    if (err && len) snprintf(err, len, \"%s\", e->msg);\n}\n"
    "API P_model *P_create(char *err, size_t errlen) {\n"
    "    bc_err e;\n"
    "    P_model *p = calloc(1, sizeof *p);\n"
    "    if (!p) { bc_errf(&e, \"out of memory\"); put(err, errlen, &e); return NULL; }\n"
    "    p->m = rt_model_open(fwd_ir, fwd_kernels, NFWD, train_ir, train_kernels, NTRAIN,\n"
    "                         features, &e);\n"
    "    if (!p->m) { put(err, errlen, &e); free(p); return NULL; }\n"
    "    return p;\n}\n"
    "API void P_destroy(P_model *p) { if (p) { rt_model_close(p->m); free(p); } }\n"
    "/* a NULL model or required pointer is an error like any bad argument */\n"
    "static int null_arg(const void *p, const char *what, char *err, size_t errlen) {\n"
    "    if (p) return 0;\n"
    "    bc_err e; bc_errf(&e, \"%s is NULL\", what); put(err, errlen, &e); return 1;\n}\n"
    "API int P_load(P_model *p, const char *path, char *err, size_t errlen) {\n"
    "    if (null_arg(p, \"the model\", err, errlen) || null_arg(path, \"path\", err, errlen))\n"
    "        return -1;\n"
    "    bc_err e; if (rt_model_load(p->m, path, &e)) { put(err, errlen, &e); return -1; "
    "}\n"
    "    return 0;\n}\n"
    "API int P_init(P_model *p, uint64_t seed, char *err, size_t errlen) {\n"
    "    if (null_arg(p, \"the model\", err, errlen)) return -1;\n"
    "    bc_err e; if (rt_model_init(p->m, seed, &e)) { put(err, errlen, &e); return -1; "
    "}\n"
    "    return 0;\n}\n"
    "API void P_set_threads(P_model *p, int threads) { if (p) p->threads = threads; }\n"
    "API int P_forward(P_model *p, int64_t B, int64_t S, const int64_t *ids,\n"
    "                  const int64_t *tt, const int64_t *mask, char *err, size_t errlen) "
    "{\n"
    "    if (null_arg(p, \"the model\", err, errlen) ||\n"
    "        null_arg(ids, \"input_ids\", err, errlen)) return -1;\n"
    "    bc_err e;\n"
    "    if (rt_model_run(p->m, 0, B, S, ids, tt, mask, NULL, NULL, 0, p->threads, &e)) {\n"
    "        put(err, errlen, &e); return -1; }\n"
    "    return 0;\n}\n"
    "API int P_forward_backward(P_model *p, int64_t B, int64_t S, const int64_t *ids,\n"
    "                  const int64_t *tt, const int64_t *mask, const P_labels *l, char "
    "*err,\n"
    "                  size_t errlen) {\n"
    "    static const char *const names[6] = {\"mlm_labels\", \"nsp_labels\",\n"
    "        \"intent_labels\", \"slot_labels\", \"start_positions\", \"end_positions\"};\n"
    "    if (null_arg(p, \"the model\", err, errlen) ||\n"
    "        null_arg(ids, \"input_ids\", err, errlen)) return -1;\n"
    "    const int64_t *v[6] = {0};\n"
    "    if (l) { v[0] = l->mlm_labels; v[1] = l->nsp_labels; v[2] = l->intent_labels;\n"
    "             v[3] = l->slot_labels; v[4] = l->start_positions; v[5] = "
    "l->end_positions; }\n"
    "    bc_err e;\n"
    "    if (rt_model_run(p->m, 1, B, S, ids, tt, mask, v, names, 6, p->threads, &e)) {\n"
    "        put(err, errlen, &e); return -1; }\n"
    "    return 0;\n}\n"
    "API const float *P_output(const P_model *p, const char *name, int64_t *shape, int "
    "*rank) {\n"
    "    if (!p || !name) return NULL;\n"
    "    const rt_tensor *t = rt_model_output(p->m, name);\n"
    "    if (!t) return NULL;\n"
    "    if (rank) *rank = t->rank;\n"
    "    for (int i = 0; shape && i < t->rank; i++) shape[i] = t->shape[i];\n"
    "    return t->data;\n}\n"
    "API int P_output_count(const P_model *p) { return p ? rt_model_output_count(p->m) : 0; "
    "}\n"
    "API const char *P_output_name(const P_model *p, int i) {\n"
    "    if (!p) return NULL;\n"
    "    const rt_tensor *t = rt_model_output_at(p->m, i);\n"
    "    return t ? t->name : NULL;\n}\n";

static int write_wrapper(const char *path, const char *header, const char *prefix,
                         const ir_graph *fwd, const rt_plan *pf, const ir_graph *train,
                         const rt_plan *pt, const char *features, bc_err *e)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return bc_errf(e, "cannot write %s: %s", path, strerror(errno));
    char pre_f[96], pre_t[96];
    snprintf(pre_f, sizeof pre_f, "%s_fwd", prefix);
    snprintf(pre_t, sizeof pre_t, "%s_train", prefix);
    fprintf(f,
            "/* generated by bertcc */\n#include <stdint.h>\n#include <stdio.h>\n"
            "#include <stdlib.h>\n#include \"runtime/model.h\"\n#include \"%s\"\n\n",
            header);
    write_kernel_table(f, fwd, pf, pre_f, "fwd_kernels");
    write_kernel_table(f, train, pt, pre_t, "train_kernels");
    fprintf(f, "#define NFWD %d\n#define NTRAIN %d\n", pf->nkernels, pt->nkernels);
    fprintf(f, "static const char features[] = ");
    write_c_string(f, features);
    char *txt = ir_print_str(fwd);
    fprintf(f, ";\nstatic const char fwd_ir[] =\n    ");
    write_c_string(f, txt ? txt : "");
    free(txt);
    txt = ir_print_str(train);
    fprintf(f, ";\nstatic const char train_ir[] =\n    ");
    write_c_string(f, txt ? txt : "");
    free(txt);
    fprintf(f, ";\n\n");
    write_prefixed(f, api_impl, prefix);
    return fclose(f) ? bc_errf(e, "cannot write %s", path) : 0;
}

/* Runs cmd with its output into log; on failure one message with the log's first line
 * (the compiler's and linker's own lines are not printed). */
static int run_cc(const char *cmd, const char *log, bc_err *e)
{
    char full[8192];
    snprintf(full, sizeof full, "%s >'%s' 2>&1", cmd, log);
    int st = system(full);
    if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    char line[512] = "";
    FILE *f = fopen(log, "r");
    if (f) {
        if (!fgets(line, sizeof line, f))
            line[0] = 0;
        fclose(f);
    }
    line[strcspn(line, "\n")] = 0;
    return bc_errf(e, "the C compiler failed%s%s (command: %s)", line[0] ? ": " : "", line,
                   cmd);
}

/* The i-th of the library's objects: the forward's nf (fo.0.o ..), then the training
 * graph's (to.0.o ..). */
static void object_path(char *buf, size_t len, const char *fo, int nf, const char *to,
                        int i)
{
    snprintf(buf, len, "%s.%d.o", i < nf ? fo : to, i < nf ? i : i - nf);
}

int cg_write_library(const ir_graph *fwd, const ir_graph *train, const cg_options *o,
                     const char *so_path, const char *header_path, bc_err *e)
{
    const char *prefix = o && o->prefix ? o->prefix : "bertcc";
    /* renaming over a device would replace it with a regular file (support/file.h) */
    for (int k = 0; k < 2; k++)
        if (bc_is_special_file(k ? header_path : so_path))
            return bc_errf(e,
                           "%s: not a regular file; a library and its header are "
                           "written to files (--emit=asm or obj writes anywhere)",
                           k ? header_path : so_path);
    char dir[] = "/tmp/bertcc-aot-XXXXXX";
    if (!mkdtemp(dir))
        return bc_errf(e, "cannot make a temporary directory: %s", strerror(errno));
    char fo[600], to[600], wc[600], cmd[8192], pre[96], features[4096] = "", log[600];
    char objs[2400] = "";
    int nf = 0, nt = 0;
    /* the library and its header are written under temporary names and renamed, the
     * library first, when both are complete: a failure (a full disk) leaves neither */
    char so_tmp[4200], h_tmp[4200];
    snprintf(so_tmp, sizeof so_tmp, "%s.tmp.%ld", so_path, (long)getpid());
    snprintf(h_tmp, sizeof h_tmp, "%s.tmp.%ld", header_path, (long)getpid());
    snprintf(log, sizeof log, "%s/cc.log", dir);
    snprintf(fo, sizeof fo, "%s/fwd", dir); /* objects fwd.0.o .. and train.0.o .. */
    snprintf(to, sizeof to, "%s/train", dir);
    snprintf(wc, sizeof wc, "%s/api.c", dir);
    rt_plan pf, pt;
    memset(&pf, 0, sizeof pf);
    memset(&pt, 0, sizeof pt);
    cg_options of = o ? *o : (cg_options){0};
    int rc = rt_plan_build(fwd, &pf, e) || rt_plan_build(train, &pt, e);
    if (!rc) {
        snprintf(pre, sizeof pre, "%s_fwd", prefix);
        of.prefix = pre;
        rc = cg_emit_library_objects(fwd, &pf, &of, fo, &nf, e);
    }
    if (!rc) {
        snprintf(pre, sizeof pre, "%s_train", prefix);
        of.prefix = pre;
        rc = cg_emit_library_objects(train, &pt, &of, to, &nt, e);
    }
    for (int i = 0; i < nf + nt; i++) {
        char path[700];
        object_path(path, sizeof path, fo, nf, to, i);
        size_t len = strlen(objs);
        snprintf(objs + len, sizeof objs - len, " '%s'", path);
    }
    if (!rc) {
        cg_target_features(o, features, sizeof features);
        char abs_header[4400];
        if (h_tmp[0] == '/' || !getcwd(abs_header, sizeof abs_header))
            snprintf(abs_header, sizeof abs_header, "%s", h_tmp);
        else
            snprintf(abs_header + strlen(abs_header),
                     sizeof abs_header - strlen(abs_header), "/%s", h_tmp);
        rc = write_header(h_tmp, header_path, prefix, fwd->name, features, e) ||
             write_wrapper(wc, abs_header, prefix, fwd, &pf, train, &pt, features, e);
    }
    if (!rc) {
        const char *libdir =
            getenv("BERTCC_LIB_DIR") ? getenv("BERTCC_LIB_DIR") : BERTCC_LIB_DIR;
        const char *inc = getenv("BERTCC_INCLUDE_DIR") ? getenv("BERTCC_INCLUDE_DIR")
                                                       : BERTCC_INCLUDE_DIR;
        snprintf(
            cmd, sizeof cmd,
            "cc -std=gnu11 -O2 -fPIC -shared -fvisibility=hidden %s -I'%s' -o '%s' '%s'%s "
            "'%s/libbc_runtime.a' '%s/libbc_ir.a' '%s/libbc_support.a' "
            "-Wl,--exclude-libs,ALL -ljansson -fopenmp -lm",
            BERTCC_AOT_FLAGS, inc, so_tmp, wc, objs, libdir, libdir, libdir);
        rc = run_cc(cmd, log, e);
    }
    if (!rc && (bc_fsync_path(so_tmp) || bc_fsync_path(h_tmp)))
        rc = bc_errf(e, "%s: cannot sync: %s", so_path, strerror(errno));
    if (!rc && (rename(so_tmp, so_path) || rename(h_tmp, header_path)))
        rc = bc_errf(e, "cannot write %s and %s: %s", so_path, header_path, strerror(errno));
    if (!rc && bc_fsync_parent(so_path))
        rc = bc_errf(e, "%s: cannot sync its directory: %s", so_path, strerror(errno));
    if (rc) {
        unlink(so_tmp);
        unlink(h_tmp);
    }
    unlink(log);
    rt_plan_free(&pf);
    rt_plan_free(&pt);
    for (int i = 0; i < nf + nt; i++) {
        char path[700];
        object_path(path, sizeof path, fo, nf, to, i);
        unlink(path);
    }
    unlink(wc);
    rmdir(dir);
    return rc;
}
