#include "metrics/metrics.h"

#include "core/buf.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct dd_series {
    char *values[DD_METRIC_MAX_LABELS];
    double value;     /* counter / gauge */
    double sum;       /* histogram */
    unsigned long long count;
    unsigned long long *bucket_counts; /* non-cumulative, nbuckets entries */
    struct dd_series *next;
} dd_series;

struct dd_metric {
    dd_metric_type type;
    char *name;
    char *help;
    char *labels[DD_METRIC_MAX_LABELS];
    int nlabels;
    double *buckets;
    size_t nbuckets;
    dd_series *series; /* in creation order */
    dd_series *tail;
    struct dd_metric *next;
};

struct dd_metrics {
    dd_metric *families;
    dd_metric *tail;
};

static const double dd_default_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                            1,     2.5,  5,     10,   30,  60};

dd_metrics *dd_metrics_new(void)
{
    return dd_xcalloc(1, sizeof(dd_metrics));
}

static void dd_series_free(dd_series *s, int nlabels)
{
    for (int i = 0; i < nlabels; i++)
        free(s->values[i]);
    free(s->bucket_counts);
    free(s);
}

void dd_metrics_free(dd_metrics *m)
{
    if (!m)
        return;
    dd_metric *f = m->families;
    while (f) {
        dd_metric *fn = f->next;
        dd_series *s = f->series;
        while (s) {
            dd_series *sn = s->next;
            dd_series_free(s, f->nlabels);
            s = sn;
        }
        for (int i = 0; i < f->nlabels; i++)
            free(f->labels[i]);
        free(f->name);
        free(f->help);
        free(f->buckets);
        free(f);
        f = fn;
    }
    free(m);
}

dd_metric *dd_metrics_find(dd_metrics *m, const char *name)
{
    for (dd_metric *f = m->families; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

dd_metric *dd_metrics_family(dd_metrics *m, dd_metric_type type, const char *name,
                             const char *help, const char *const *labels, const double *buckets,
                             size_t nbuckets)
{
    dd_metric *f = dd_metrics_find(m, name);
    if (f)
        return f;
    f = dd_xcalloc(1, sizeof(*f));
    f->type = type;
    f->name = dd_strdup(name);
    f->help = dd_strdup(help);
    for (int i = 0; labels && labels[i] && i < DD_METRIC_MAX_LABELS; i++)
        f->labels[f->nlabels++] = dd_strdup(labels[i]);
    if (type == DD_HISTOGRAM) {
        if (!buckets) {
            buckets = dd_default_buckets;
            nbuckets = sizeof(dd_default_buckets) / sizeof(dd_default_buckets[0]);
        }
        f->buckets = dd_xmalloc(nbuckets * sizeof(double));
        memcpy(f->buckets, buckets, nbuckets * sizeof(double));
        f->nbuckets = nbuckets;
    }
    if (m->tail)
        m->tail->next = f;
    else
        m->families = f;
    m->tail = f;
    return f;
}

static dd_series *dd_series_get(dd_metric *f, const char *const *values, bool create)
{
    for (dd_series *s = f->series; s; s = s->next) {
        bool same = true;
        for (int i = 0; i < f->nlabels && same; i++)
            same = strcmp(s->values[i], values[i] ? values[i] : "") == 0;
        if (same)
            return s;
    }
    if (!create)
        return NULL;
    dd_series *s = dd_xcalloc(1, sizeof(*s));
    for (int i = 0; i < f->nlabels; i++)
        s->values[i] = dd_strdup(values && values[i] ? values[i] : "");
    if (f->type == DD_HISTOGRAM)
        s->bucket_counts = dd_xcalloc(f->nbuckets, sizeof(unsigned long long));
    if (f->tail)
        f->tail->next = s;
    else
        f->series = s;
    f->tail = s;
    return s;
}

void dd_metric_add(dd_metric *f, const char *const *values, double v)
{
    if (!f)
        return;
    dd_series_get(f, values, true)->value += v;
}

void dd_metric_set(dd_metric *f, const char *const *values, double v)
{
    if (!f)
        return;
    dd_series_get(f, values, true)->value = v;
}

void dd_metric_observe(dd_metric *f, const char *const *values, double v)
{
    if (!f || f->type != DD_HISTOGRAM)
        return;
    dd_series *s = dd_series_get(f, values, true);
    s->sum += v;
    s->count++;
    for (size_t i = 0; i < f->nbuckets; i++) {
        if (v <= f->buckets[i]) {
            s->bucket_counts[i]++;
            break;
        }
    }
}

double dd_metric_get(dd_metric *f, const char *const *values)
{
    if (!f)
        return 0;
    dd_series *s = dd_series_get(f, values, false);
    if (!s)
        return 0;
    return f->type == DD_HISTOGRAM ? (double)s->count : s->value;
}

void dd_metric_remove(dd_metric *f, const char *const *values)
{
    if (!f)
        return;
    dd_series *match = dd_series_get(f, values, false);
    dd_series *prev = NULL;
    for (dd_series *s = f->series; s; prev = s, s = s->next) {
        if (s != match)
            continue;
        if (prev)
            prev->next = s->next;
        else
            f->series = s->next;
        if (f->tail == s)
            f->tail = prev;
        dd_series_free(s, f->nlabels);
        return;
    }
}

static void dd_render_escaped(dd_buf *out, const char *s, bool help)
{
    for (; *s; s++) {
        if (*s == '\\')
            dd_buf_puts(out, "\\\\");
        else if (*s == '\n')
            dd_buf_puts(out, "\\n");
        else if (*s == '"' && !help)
            dd_buf_puts(out, "\\\"");
        else
            dd_buf_putc(out, *s);
    }
}

static void dd_render_value(dd_buf *out, double v)
{
    if (isnan(v))
        dd_buf_puts(out, "NaN");
    else if (isinf(v))
        dd_buf_puts(out, v > 0 ? "+Inf" : "-Inf");
    else if (fabs(v) < 1e15 && v == (double)(long long)v) /* range first: then the cast is defined */
        dd_buf_printf(out, "%lld", (long long)v);
    else {
        /* Shortest form that reads back as the same double. */
        char tmp[40];
        snprintf(tmp, sizeof(tmp), "%.15g", v);
        if (strtod(tmp, NULL) != v)
            snprintf(tmp, sizeof(tmp), "%.17g", v);
        dd_buf_puts(out, tmp);
    }
}

/* Writes name{l1="v1",...,extra} where extra is an already formatted pair. */
static void dd_render_labels(dd_buf *out, const dd_metric *f, const dd_series *s,
                             const char *extra)
{
    if (f->nlabels == 0 && !extra)
        return;
    dd_buf_putc(out, '{');
    for (int i = 0; i < f->nlabels; i++) {
        if (i)
            dd_buf_putc(out, ',');
        dd_buf_printf(out, "%s=\"", f->labels[i]);
        dd_render_escaped(out, s->values[i], false);
        dd_buf_putc(out, '"');
    }
    if (extra) {
        if (f->nlabels)
            dd_buf_putc(out, ',');
        dd_buf_puts(out, extra);
    }
    dd_buf_putc(out, '}');
}

void dd_metrics_render(const dd_metrics *m, dd_buf *out)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    for (const dd_metric *f = m->families; f; f = f->next) {
        dd_buf_printf(out, "# HELP %s ", f->name);
        dd_render_escaped(out, f->help, true);
        dd_buf_printf(out, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
        for (const dd_series *s = f->series; s; s = s->next) {
            if (f->type != DD_HISTOGRAM) {
                dd_buf_puts(out, f->name);
                dd_render_labels(out, f, s, NULL);
                dd_buf_putc(out, ' ');
                dd_render_value(out, s->value);
                dd_buf_putc(out, '\n');
                continue;
            }
            unsigned long long cum = 0;
            char le[64];
            for (size_t i = 0; i <= f->nbuckets; i++) {
                if (i < f->nbuckets) {
                    cum += s->bucket_counts[i];
                    dd_buf tmp = DD_BUF_INIT;
                    dd_render_value(&tmp, f->buckets[i]);
                    snprintf(le, sizeof(le), "le=\"%s\"", dd_buf_str(&tmp));
                    dd_buf_release(&tmp);
                } else {
                    cum = s->count;
                    snprintf(le, sizeof(le), "le=\"+Inf\"");
                }
                dd_buf_printf(out, "%s_bucket", f->name);
                dd_render_labels(out, f, s, le);
                dd_buf_printf(out, " %llu\n", cum);
            }
            dd_buf_printf(out, "%s_sum", f->name);
            dd_render_labels(out, f, s, NULL);
            dd_buf_putc(out, ' ');
            dd_render_value(out, s->sum);
            dd_buf_printf(out, "\n%s_count", f->name);
            dd_render_labels(out, f, s, NULL);
            dd_buf_printf(out, " %llu\n", s->count);
        }
    }
}
