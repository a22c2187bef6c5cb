/* temporal_mem - resident memory of a process using src/temporal against a
 * hostile stand-in server (bench/hostile/temporal_standin.py). Run by
 * bench/hostile/temporal_mem.sh, which builds it against build/.
 *
 *   temporal_mem longpoll URL SECS  wait_close for SECS while the stand-in
 *                                   answers every long poll at once, empty
 *                                   (the script samples VmRSS meanwhile)
 *   temporal_mem huge URL OP        one OP (describe, history, wait_close)
 *                                   whose reply is 16 MiB of "{}," ; or
 *                                   history_strings: a 16 MiB page of long
 *                                   strings (accepted); prints the peak RSS
 *                                   (VmHWM) the call added
 *
 * VmHWM is reset to the current RSS first (/proc/self/clear_refs, 5), so
 * the peak is this call's. */
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"
#include "temporal/temporal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "re");
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, key, kl) == 0 && line[kl] == ':')
            v = strtol(line + kl + 1, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

static void reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "we");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

typedef struct run {
    bool done;
    int status;
    char msg[256];
} run;

static void done_cb(int st, const dd_temporal_result *r, void *arg)
{
    run *x = arg;
    x->done = true;
    x->status = st;
    snprintf(x->msg, sizeof(x->msg), "%s", r->message);
}

static void on_stop(uv_timer_t *t)
{
    (void)t; /* only wakes the loop up */
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: temporal_mem longpoll URL N | huge URL OP\n");
        return 2;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    dd_log *log = dd_log_new(stderr, DD_LOG_WARN);
    dd_ctx ctx = {.loop = &loop, .log = log};
    dd_temporal_opts o = {.base_url = argv[2], .namespace_ = "bench", .max_attempts = 1};
    dd_temporal *t = NULL;
    char terr[512];
    if (dd_temporal_new(&ctx, &o, &t, terr, sizeof(terr)) < 0) {
        fprintf(stderr, "temporal_mem: %s\n", terr);
        return 2;
    }
    if (!t)
        return 1;
    run x = {0};
    dd_temporal_call *call = NULL;
    int rc = 0;
    if (strcmp(argv[1], "longpoll") == 0) {
        /* The script samples our VmRSS against the stand-in's answer count. */
        long secs = strtol(argv[3], NULL, 10);
        if (dd_temporal_wait_close(t, "wf", "run", done_cb, &x, &call) < 0)
            return 1;
        uint64_t end = dd_mono_ms() + (uint64_t)secs * 1000;
        uv_timer_t stop;
        uv_timer_init(&loop, &stop);
        uv_timer_start(&stop, on_stop, (uint64_t)secs * 1000, 0);
        while (!x.done && dd_mono_ms() < end && uv_run(&loop, UV_RUN_ONCE)) {
        }
        uv_close((uv_handle_t *)&stop, NULL);
        printf("vmhwm_kb=%ld vmrss_kb=%ld\n", status_kb("VmHWM"), status_kb("VmRSS"));
        if (x.done) {
            fprintf(stderr, "wait_close ended early: %s\n", x.msg);
            rc = 1;
        } else {
            dd_temporal_cancel(call);
        }
    } else if (strcmp(argv[1], "huge") == 0) {
        long before = status_kb("VmRSS");
        reset_peak();
        const char *op = argv[3];
        int r = strcmp(op, "describe") == 0      ? dd_temporal_describe(t, "wf", "run", done_cb, &x, NULL)
                : strcmp(op, "history") == 0     ? dd_temporal_history(t, "wf", "run", done_cb, &x, NULL)
                : strcmp(op, "history_strings") == 0 ? dd_temporal_history(t, "strings", "run", done_cb, &x, NULL)
                : strcmp(op, "wait_close") == 0  ? dd_temporal_wait_close(t, "wf", "run", done_cb, &x, NULL)
                                                 : DD_EINVAL;
        if (r < 0)
            return 2;
        while (!x.done && uv_run(&loop, UV_RUN_ONCE)) {
        }
        long peak = status_kb("VmHWM");
        printf("op=%s status=%s rss_before_kb=%ld peak_kb=%ld added_peak_kb=%ld message=\"%s\"\n",
               op, dd_strerror(x.status), before, peak, peak - before, x.msg);
    } else {
        return 2;
    }
    dd_temporal_close(t, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    dd_log_free(log);
    return rc;
}
