/* metrics.h - a small Prometheus metrics registry and text exposition.
 *
 * Families are registered once with their label names; series are created on
 * first use of a label-value tuple. Everything is single-threaded (it lives
 * on the event loop), so there are no atomics. Rendering follows the
 * Prometheus text format 0.0.4: HELP/TYPE lines, label values escaped,
 * histograms as cumulative _bucket{le=...} plus _sum and _count. */
#ifndef DD_METRICS_METRICS_H
#define DD_METRICS_METRICS_H

#include <stddef.h>

struct dd_buf;

typedef struct dd_metrics dd_metrics;
typedef struct dd_metric dd_metric;

typedef enum dd_metric_type {
    DD_COUNTER,
    DD_GAUGE,
    DD_HISTOGRAM,
} dd_metric_type;

#define DD_METRIC_MAX_LABELS 4

/* Never NULL (no handle, and out of memory aborts: CONTRIBUTING.md). */
dd_metrics *dd_metrics_new(void);
void dd_metrics_free(dd_metrics *m);

/* Registers (or returns the already registered) family. labels is a
 * NULL-terminated list of label names (NULL for none). buckets (histograms
 * only) are upper bounds in increasing order; NULL selects latency buckets
 * from 5 ms to 60 s. The family is owned by m. */
dd_metric *dd_metrics_family(dd_metrics *m, dd_metric_type type, const char *name,
                             const char *help, const char *const *labels, const double *buckets,
                             size_t nbuckets);

/* values: one label value per label name, NULL when the family has none. */
void dd_metric_add(dd_metric *f, const char *const *values, double v);
void dd_metric_set(dd_metric *f, const char *const *values, double v);
void dd_metric_observe(dd_metric *f, const char *const *values, double v);
/* Current value of a counter/gauge series (0 when absent); count of a histogram. */
double dd_metric_get(dd_metric *f, const char *const *values);
/* Removes one series (e.g. a dispatcher no longer configured). */
void dd_metric_remove(dd_metric *f, const char *const *values);

/* Shorthands for single-label families. */
#define DD_L1(v) ((const char *const[]){(v)})

void dd_metrics_render(const dd_metrics *m, struct dd_buf *out);

/* Looks a family up by name; NULL if not registered. */
dd_metric *dd_metrics_find(dd_metrics *m, const char *name);

/* ---- the process collector (process.c) --------------------------------
 * The standard process_* metrics of the Prometheus client libraries, read
 * from /proc/self: process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds,
 * process_start_time_seconds. Register once (a daemon's main does); then
 * every dd_metrics_process_update (the /metrics handler calls it before each
 * render) refreshes them. Update is a no-op when they are not registered. */
void dd_metrics_process_register(dd_metrics *m);
void dd_metrics_process_update(dd_metrics *m);

#endif
