/* curves.c: see curves.h. */
#include "curves.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../support/file.h"
#include "../train/train.h"
#include "rundir.h"

/* ---- metrics.csv ------------------------------------------------------------------- */

int rundir_metrics_append(const char *dir, int64_t step, double epoch, double train_loss,
                          const tk_metrics *m, int best, bc_err *e)
{
    char path[4200];
    rundir_path(dir, RUNDIR_METRICS, path, sizeof path);
    struct stat st;
    int fresh = stat(path, &st) != 0 || st.st_size == 0;
    FILE *f = fopen(path, "a");
    if (!f)
        return bc_errf(e, "%s: cannot write: %s", path, strerror(errno));
    if (fresh) {
        fputs("step,epoch,train_loss", f);
        for (int i = 0; i < m->n; i++)
            fprintf(f, ",%s", m->name[i]);
        fputs(",examples,best\n", f);
    }
    fprintf(f, "%lld,%.6g,%.9g", (long long)step, epoch, train_loss);
    /* %.17g: a resumed run reads the scores back exactly to compare with them. */
    for (int i = 0; i < m->n; i++)
        fprintf(f, ",%.17g", m->value[i]);
    fprintf(f, ",%lld,%d\n", (long long)m->examples, best ? 1 : 0);
    if (fclose(f))
        return bc_errf(e, "%s: cannot write", path);
    return 0;
}

/* A CSV file of numbers with a header line: columns and rows. */
typedef struct csv {
    char **col; /* [ncol] */
    int ncol;
    double *v; /* [nrow, ncol] */
    int nrow;
} csv;

static void csv_free(csv *c)
{
    for (int i = 0; i < c->ncol; i++)
        free(c->col[i]);
    free(c->col);
    free(c->v);
    memset(c, 0, sizeof *c);
}

static int csv_find(const csv *c, const char *name)
{
    for (int i = 0; i < c->ncol; i++)
        if (!strcmp(c->col[i], name))
            return i;
    return -1;
}

/* Reads path; 1 when it does not exist, -1 on a malformed file. */
static int csv_read(const char *path, csv *c)
{
    memset(c, 0, sizeof *c);
    FILE *f = fopen(path, "r");
    if (!f)
        return 1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0, cap_rows = 0;
    if ((n = getline(&line, &cap, f)) < 0)
        goto done;
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = 0;
    for (char *s = line, *tok; (tok = strsep(&s, ","));) {
        char **nc = realloc(c->col, ((size_t)c->ncol + 1) * sizeof *nc);
        if (!nc || !(nc[c->ncol] = strdup(tok))) {
            if (nc)
                c->col = nc;
            rc = -1;
            goto done;
        }
        c->col = nc;
        c->ncol++;
    }
    while ((n = getline(&line, &cap, f)) >= 0) {
        /* an empty line, or a torn last one (a kill during its append: no newline) */
        if (n <= 1 || line[n - 1] != '\n')
            continue;
        if (c->nrow == cap_rows) {
            cap_rows = cap_rows ? 2 * cap_rows : 256;
            double *nv = realloc(c->v, (size_t)cap_rows * (size_t)c->ncol * sizeof *nv);
            if (!nv) {
                rc = -1;
                goto done;
            }
            c->v = nv;
        }
        double *row = c->v + (size_t)c->nrow * (size_t)c->ncol;
        char *s = line;
        for (int k = 0; k < c->ncol; k++) {
            char *end;
            row[k] = strtod(s, &end);
            if (end == s)
                row[k] = NAN;
            s = strchr(end, ',');
            if (!s && k + 1 < c->ncol) {
                for (int j = k + 1; j < c->ncol; j++)
                    row[j] = NAN;
                break;
            }
            if (s)
                s++;
        }
        c->nrow++;
    }
done:
    free(line);
    fclose(f);
    if (rc)
        csv_free(c);
    return rc;
}

static int is_bookkeeping(const char *col)
{
    return !strcmp(col, "step") || !strcmp(col, "epoch") || !strcmp(col, "train_loss") ||
           !strcmp(col, "examples") || !strcmp(col, "best");
}

/* A dev metric that is a loss (pretrain's mlm_loss, nsp_loss): drawn with the training
 * loss rather than with the fractions. */
static int is_dev_loss(const char *col)
{
    size_t n = strlen(col);
    return n > 5 && !strcmp(col + n - 5, "_loss") && strcmp(col, "train_loss");
}

int rundir_metrics_resume(const char *dir, int64_t step, const char *const *best_by,
                          tk_metrics *best, int *have_best, int64_t *best_step,
                          json_t **keep, bc_err *e)
{
    if (best_step)
        *best_step = -1;
    char path[4200], tmp[4300];
    rundir_path(dir, RUNDIR_METRICS, path, sizeof path);
    *have_best = 0;
    *keep = NULL;
    memset(best, 0, sizeof *best);
    FILE *in = fopen(path, "r");
    if (!in)
        return 0;
    FILE *out = bc_atomic_open(path, tmp, sizeof tmp, e);
    if (!out) {
        fclose(in);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int first = 1, ok = 1;
    while ((n = getline(&line, &cap, in)) >= 0) {
        char *end;
        long long s = strtoll(line, &end, 10);
        /* a torn last line (no newline) is dropped */
        if (line[n - 1] == '\n' && (first || (end != line && *end == ',' && s <= step)))
            ok &= fputs(line, out) >= 0;
        first = 0;
    }
    free(line);
    fclose(in);
    if (!ok) {
        bc_atomic_abort(out, tmp);
        return bc_errf(e, "%s: cannot rewrite", path);
    }
    if (bc_atomic_commit(out, tmp, path, e))
        return -1;
    csv c;
    if (csv_read(path, &c) < 0)
        return bc_errf(e, "%s: cannot read", path);
    json_t *names = json_array();
    int ks = csv_find(&c, "step");
    tk_metrics cur;
    for (int r = 0; r < c.nrow; r++) {
        memset(&cur, 0, sizeof cur);
        for (int k = 0; k < c.ncol; k++)
            if (!is_bookkeeping(c.col[k])) {
                json_array_append_new(names, json_string(c.col[k]));
                tk_metrics_add(
                    &cur,
                    json_string_value(json_array_get(names, json_array_size(names) - 1)),
                    c.v[(size_t)r * (size_t)c.ncol + (size_t)k]);
            }
        if (!*have_best || tk_task_compare(best_by, &cur, best) > 0) {
            *best = cur;
            *have_best = 1;
            if (best_step && ks >= 0)
                *best_step = (int64_t)c.v[(size_t)r * (size_t)c.ncol + (size_t)ks];
        }
    }
    csv_free(&c);
    *keep = names;
    return 0;
}

double rundir_mean_loss(const char *dir, int64_t from, int64_t to)
{
    char path[4200];
    csv c;
    if (csv_read(rundir_path(dir, TR_TRAIN_LOG, path, sizeof path), &c))
        return NAN;
    int ks = csv_find(&c, "step"), kl = csv_find(&c, "loss");
    double sum = 0;
    int64_t n = 0;
    for (int r = 0; ks >= 0 && kl >= 0 && r < c.nrow; r++) {
        double s = c.v[(size_t)r * (size_t)c.ncol + (size_t)ks];
        if (s > (double)from && s <= (double)to) {
            sum += c.v[(size_t)r * (size_t)c.ncol + (size_t)kl];
            n++;
        }
    }
    csv_free(&c);
    return n ? sum / (double)n : NAN;
}

/* ---- the plot ---------------------------------------------------------------------- */

/* A "nice" tick spacing for a range split into about n parts: 1, 2 or 5 times 10^k. */
static double nice_step(double range, int n)
{
    if (!(range > 0))
        return 1;
    double raw = range / n, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

typedef struct panel {
    double x, y, w, h;     /* in pixels */
    double x0, x1, y0, y1; /* data ranges */
} panel;

static double px(const panel *p, double x)
{
    return p->x + (x - p->x0) / (p->x1 - p->x0) * p->w;
}

static double py(const panel *p, double y)
{
    return p->y + p->h - (y - p->y0) / (p->y1 - p->y0) * p->h;
}

static void axes(FILE *f, const panel *p, const char *title, const char *xlabel)
{
    fprintf(f,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#fff\" "
            "stroke=\"#444\"/>\n",
            p->x, p->y, p->w, p->h);
    fprintf(
        f,
        "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"14\">%s</text>\n",
        p->x + p->w / 2, p->y - 10, title);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
            p->x + p->w / 2, p->y + p->h + 34, xlabel);
    double sx = nice_step(p->x1 - p->x0, 5), sy = nice_step(p->y1 - p->y0, 5);
    for (double t = ceil(p->x0 / sx) * sx; t <= p->x1 + 1e-9 * sx; t += sx)
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
                px(p, t), p->y, px(p, t), p->y + p->h, px(p, t), p->y + p->h + 16, t);
    for (double t = ceil(p->y0 / sy) * sy; t <= p->y1 + 1e-9 * sy; t += sy)
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                p->x, py(p, t), p->x + p->w, py(p, t), p->x - 6, py(p, t) + 4,
                fabs(t) < 1e-12 * sy ? 0.0 : t);
}

/* One series: a polyline, and dots when there are few points. */
static void series(FILE *f, const panel *p, const double *x, const double *y, int n,
                   const char *color, int dots)
{
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"",
            color);
    for (int i = 0; i < n; i++)
        if (isfinite(x[i]) && isfinite(y[i]))
            fprintf(f, "%.1f,%.1f ", px(p, x[i]), py(p, y[i]));
    fputs("\"/>\n", f);
    for (int i = 0; dots && i < n; i++)
        if (isfinite(x[i]) && isfinite(y[i]))
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
                    px(p, x[i]), py(p, y[i]), color);
}

static void put_escaped(FILE *f, const char *s)
{
    for (; *s; s++)
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '"')
            fputs("&quot;", f);
        else
            fputc(*s, f);
}

int rundir_plot(const char *dir, const char *title, bc_err *e)
{
    static const char *const colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                         "#9467bd", "#8c564b", "#e377c2", "#17becf"};
    char path[4200], tmp[4300];
    csv lg, mt;
    int has_log = csv_read(rundir_path(dir, TR_TRAIN_LOG, path, sizeof path), &lg) == 0;
    int has_mt = csv_read(rundir_path(dir, RUNDIR_METRICS, path, sizeof path), &mt) == 0;
    rundir_path(dir, RUNDIR_PLOT, path, sizeof path);
    FILE *f = bc_atomic_open(path, tmp, sizeof tmp, e);
    if (!f) {
        if (has_log)
            csv_free(&lg);
        if (has_mt)
            csv_free(&mt);
        return -1;
    }
    fputs("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1000\" height=\"420\" "
          "font-family=\"sans-serif\" font-size=\"11\">\n"
          "<rect width=\"1000\" height=\"420\" fill=\"#fafafa\"/>\n"
          "<text x=\"500\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">",
          f);
    put_escaped(f, title);
    fputs("</text>\n", f);

    /* Training loss against the update, with each epoch's mean as dots. */
    int nl = has_log ? lg.nrow : 0, ks = has_log ? csv_find(&lg, "step") : -1,
        kl = has_log ? csv_find(&lg, "loss") : -1;
    double xmax = 1, ymax = 0;
    double *xs = malloc(((size_t)nl + 1) * sizeof *xs),
           *ys = malloc(((size_t)nl + 1) * sizeof *ys);
    int n = 0;
    for (int r = 0; xs && ys && ks >= 0 && kl >= 0 && r < nl; r++) {
        xs[n] = lg.v[(size_t)r * (size_t)lg.ncol + (size_t)ks];
        ys[n] = lg.v[(size_t)r * (size_t)lg.ncol + (size_t)kl];
        if (isfinite(xs[n]) && isfinite(ys[n])) {
            xmax = xs[n] > xmax ? xs[n] : xmax;
            ymax = ys[n] > ymax ? ys[n] : ymax;
            n++;
        }
    }
    int nm = has_mt ? mt.nrow : 0, ms = has_mt ? csv_find(&mt, "step") : -1;
    for (int r = 0; ms >= 0 && r < nm; r++) {
        double s = mt.v[(size_t)r * (size_t)mt.ncol + (size_t)ms];
        xmax = isfinite(s) && s > xmax ? s : xmax;
        for (int k = 0; k < mt.ncol; k++) { /* dev losses share the loss panel */
            double v = mt.v[(size_t)r * (size_t)mt.ncol + (size_t)k];
            if (is_dev_loss(mt.col[k]) && isfinite(v) && v > ymax)
                ymax = v;
        }
    }
    panel pl = {70, 50, 390, 280, 0, xmax, 0, ymax > 0 ? ymax * 1.05 : 1};
    axes(f, &pl, "training loss", "update");
    if (xs && ys)
        series(f, &pl, xs, ys, n, "#999", 0);
    int mtl = has_mt ? csv_find(&mt, "train_loss") : -1;
    if (mtl >= 0 && ms >= 0) {
        double *ex = malloc(((size_t)nm + 1) * sizeof *ex),
               *ey = malloc(((size_t)nm + 1) * sizeof *ey);
        for (int r = 0; ex && ey && r < nm; r++) {
            ex[r] = mt.v[(size_t)r * (size_t)mt.ncol + (size_t)ms];
            ey[r] = mt.v[(size_t)r * (size_t)mt.ncol + (size_t)mtl];
        }
        if (ex && ey) {
            series(f, &pl, ex, ey, nm, colors[0], 1);
            fprintf(f,
                    "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" fill=\"%s\">epoch "
                    "mean</text><text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" "
                    "fill=\"#999\">each update</text>\n",
                    pl.x + pl.w - 8, pl.y + 16, colors[0], pl.x + pl.w - 8, pl.y + 30);
        }
        free(ex);
        free(ey);
    }
    free(xs);
    free(ys);
    xs = malloc(((size_t)nm + 1) * sizeof *xs);
    ys = malloc(((size_t)nm + 1) * sizeof *ys);
    for (int k = 0, shown = 0; xs && ys && ms >= 0 && k < mt.ncol; k++) {
        if (!is_dev_loss(mt.col[k]))
            continue;
        for (int r = 0; r < nm; r++) {
            xs[r] = mt.v[(size_t)r * (size_t)mt.ncol + (size_t)ms];
            ys[r] = mt.v[(size_t)r * (size_t)mt.ncol + (size_t)k];
        }
        const char *c = colors[(shown + 1) % 8];
        series(f, &pl, xs, ys, nm, c, 1);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" fill=\"%s\">dev ",
                pl.x + pl.w - 8, pl.y + 44 + 14.0 * shown, c);
        put_escaped(f, mt.col[k]);
        fputs("</text>\n", f);
        shown++;
    }
    free(xs);
    free(ys);

    /* Dev metrics against the update. */
    panel pm = {560, 50, 390, 280, 0, xmax, 0, 1};
    axes(f, &pm, "dev metrics", "update");
    double *ex = malloc(((size_t)nm + 1) * sizeof *ex),
           *ey = malloc(((size_t)nm + 1) * sizeof *ey);
    int shown = 0;
    for (int k = 0; ex && ey && ms >= 0 && k < mt.ncol; k++) {
        if (is_bookkeeping(mt.col[k]) || is_dev_loss(mt.col[k]))
            continue;
        for (int r = 0; r < nm; r++) {
            ex[r] = mt.v[(size_t)r * (size_t)mt.ncol + (size_t)ms];
            ey[r] = mt.v[(size_t)r * (size_t)mt.ncol + (size_t)k];
        }
        const char *c = colors[shown % 8];
        series(f, &pm, ex, ey, nm, c, 1);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"%s\">", 560.0 + 130.0 * (shown % 3),
                pm.y + pm.h + 50 + 14.0 * (shown / 3), c);
        put_escaped(f, mt.col[k]);
        fputs("</text>\n", f);
        shown++;
    }
    free(ex);
    free(ey);
    fputs("</svg>\n", f);
    if (has_log)
        csv_free(&lg);
    if (has_mt)
        csv_free(&mt);
    return bc_atomic_commit(f, tmp, path, e);
}
