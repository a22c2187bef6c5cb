/* process.c - the process_* metrics every Prometheus client library exports
 * (names, types and HELP texts as client_golang's process collector has
 * them), read from /proc/self on each scrape. Owns nothing: the families
 * live in the registry. */
#include "metrics/metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static const struct {
    const char *name;
    dd_metric_type type;
    const char *help;
} dd_process_families[] = {
    {"process_cpu_seconds_total", DD_COUNTER, "Total user and system CPU time spent in seconds."},
    {"process_open_fds", DD_GAUGE, "Number of open file descriptors."},
    {"process_max_fds", DD_GAUGE, "Maximum number of open file descriptors."},
    {"process_virtual_memory_bytes", DD_GAUGE, "Virtual memory size in bytes."},
    {"process_resident_memory_bytes", DD_GAUGE, "Resident memory size in bytes."},
    {"process_start_time_seconds", DD_GAUGE,
     "Start time of the process since unix epoch in seconds."},
};

void dd_metrics_process_register(dd_metrics *m)
{
    for (size_t i = 0; i < sizeof(dd_process_families) / sizeof(dd_process_families[0]); i++)
        dd_metrics_family(m, dd_process_families[i].type, dd_process_families[i].name,
                          dd_process_families[i].help, NULL, NULL, 0);
    dd_metrics_process_update(m);
}

static void dd_process_set(dd_metrics *m, const char *name, double v)
{
    dd_metric *f = dd_metrics_find(m, name);
    if (f)
        dd_metric_set(f, NULL, v);
}

/* Boot time (seconds since the epoch), from /proc/stat's btime; 0 unknown. */
static double dd_process_btime(void)
{
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return 0;
    char line[256];
    double bt = 0;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "btime ", 6) == 0) {
            bt = strtod(line + 6, NULL);
            break;
        }
    fclose(f);
    return bt;
}

void dd_metrics_process_update(dd_metrics *m)
{
    if (!m || !dd_metrics_find(m, "process_cpu_seconds_total"))
        return;
    long tck = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/stat", "re");
    if (f) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        /* fields after the command name, which may hold spaces and ')' */
        char *p = strrchr(buf, ')');
        unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
        long long rss = 0;
        if (p && tck > 0 &&
            sscanf(p + 2,
                   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
                   "%*d %*d %llu %llu %lld",
                   &utime, &stime, &start, &vsize, &rss) == 5) {
            dd_process_set(m, "process_cpu_seconds_total", (double)(utime + stime) / (double)tck);
            dd_process_set(m, "process_virtual_memory_bytes", (double)vsize);
            dd_process_set(m, "process_resident_memory_bytes", (double)rss * (double)page);
            double bt = dd_process_btime();
            if (bt > 0)
                dd_process_set(m, "process_start_time_seconds", bt + (double)start / (double)tck);
        }
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        int count = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.')
                count++;
        closedir(d);
        dd_process_set(m, "process_open_fds", count - 1); /* not the one reading the dir */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        dd_process_set(m, "process_max_fds",
                       rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur);
}
