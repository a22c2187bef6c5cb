/* hb_rtt - heartbeat round trips through dispatchd's own store code
 * (src/store: conn.c, TLS through src/net), as an owner of N dispatchers
 * sends them: one fenced heartbeat script per dispatcher per interval,
 * staggered evenly across the interval.
 *
 *   hb_rtt URL N INTERVAL_MS SAMPLES      (env HB_CA_FILE: --redis-ca-file)
 *
 * Claims N records (hb-rtt-<pid>-<i>), then prints one line per heartbeat:
 * the microseconds from the call to its callback (uv_hrtime), and at the end
 * "# cpu_ms=<user+sys of this process> samples=<n> errors=<n>". Releases the
 * records. Exits 1 when the store never becomes ready within 10 s or a
 * step fails. */
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

typedef struct hb_disp {
    char wid[64];
    int64_t epoch;
    uint64_t t0;
    bool busy;
} hb_disp;

static uv_loop_t loop;
static dd_store *store;
static hb_disp *disps;
static int ndisp, nsamples, want, errors, nbusy;
static uint64_t *rtt;
static bool ready, step_done;
static int step_status;
static int64_t step_epoch;
static uv_timer_t tick, deadline;
static int next;

static void hb_state(int status, void *arg)
{
    if (status == 0)
        ready = true;
}

static void hb_step_cb(int status, const dd_store_owner *res, void *arg)
{
    step_status = status;
    step_epoch = res ? res->epoch : 0;
    step_done = true;
}

static void hb_deadline(uv_timer_t *t)
{
    uv_stop(&loop);
}

/* Runs the loop until *flag, at most ms. */
static bool hb_run_until(bool *flag, int ms)
{
    uv_timer_start(&deadline, hb_deadline, (uint64_t)ms, 0);
    while (!*flag && uv_run(&loop, UV_RUN_ONCE))
        if (!uv_is_active((uv_handle_t *)&deadline))
            break;
    uv_timer_stop(&deadline);
    return *flag;
}

static void hb_done(int status, const dd_store_owner *res, void *arg)
{
    hb_disp *d = arg;
    uint64_t dt = (uv_hrtime() - d->t0) / 1000;
    d->busy = false;
    nbusy--;
    if (status != 0)
        errors++;
    else if (nsamples < want)
        rtt[nsamples++] = dt;
    if (nsamples >= want && nbusy == 0)
        uv_timer_stop(&tick);
}

static void hb_tick(uv_timer_t *t)
{
    if (nsamples >= want)
        return;
    hb_disp *d = &disps[next++ % ndisp];
    if (d->busy) /* still waiting for the last one: an owner would too */
        return;
    d->busy = true;
    nbusy++;
    d->t0 = uv_hrtime();
    char run[80];
    snprintf(run, sizeof(run), "run-%s", d->wid);
    if (dd_store_heartbeat(store, d->wid, run, d->epoch, 0, 30000, hb_done, d) < 0) {
        d->busy = false;
        nbusy--;
        errors++;
    }
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: hb_rtt URL N INTERVAL_MS SAMPLES (env HB_CA_FILE)\n");
        return 2;
    }
    ndisp = atoi(argv[2]);
    int interval = atoi(argv[3]);
    want = atoi(argv[4]);
    if (ndisp < 1 || interval < 1 || want < 1)
        return 2;
    uv_loop_init(&loop);
    uv_timer_init(&loop, &tick);
    uv_timer_init(&loop, &deadline);
    FILE *devnull = fopen("/dev/null", "w");
    dd_log *log = dd_log_new(devnull, DD_LOG_ERROR);
    dd_ctx ctx = {.loop = &loop, .log = log};
    dd_store_opts o = {.url = argv[1], .tls_ca_file = getenv("HB_CA_FILE"), .on_state = hb_state};
    char err[512];
    if (dd_store_open(&ctx, &o, &store, err, sizeof(err)) < 0) {
        fprintf(stderr, "hb_rtt: %s\n", err);
        return 1;
    }
    if (!hb_run_until(&ready, 10000)) {
        fprintf(stderr, "hb_rtt: not ready within 10 s: %s\n", dd_store_last_error(store));
        return 1;
    }
    disps = calloc((size_t)ndisp, sizeof(*disps));
    rtt = calloc((size_t)want, sizeof(*rtt));
    for (int i = 0; i < ndisp; i++) {
        hb_disp *d = &disps[i];
        char run[80];
        snprintf(d->wid, sizeof(d->wid), "hb-rtt-%d-%d", (int)getpid(), i);
        snprintf(run, sizeof(run), "run-%s", d->wid);
        dd_store_claim_args a = {d->wid, run, "hb-rtt", "bench", "q", 0, 30000, NULL, NULL, NULL};
        step_done = false;
        if (dd_store_claim(store, &a, hb_step_cb, NULL) < 0 || !hb_run_until(&step_done, 10000) ||
            step_status != 0) {
            fprintf(stderr, "hb_rtt: claim failed\n");
            return 1;
        }
        d->epoch = step_epoch;
    }
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    uint64_t every = (uint64_t)interval / (uint64_t)ndisp;
    uv_timer_start(&tick, hb_tick, every ? every : 1, every ? every : 1);
    while (uv_is_active((uv_handle_t *)&tick) || nbusy > 0)
        uv_run(&loop, UV_RUN_ONCE);
    getrusage(RUSAGE_SELF, &r1);
    for (int i = 0; i < ndisp; i++) {
        char run[80];
        snprintf(run, sizeof(run), "run-%s", disps[i].wid);
        step_done = false;
        if (dd_store_release(store, disps[i].wid, run, disps[i].epoch, hb_step_cb, NULL) == 0)
            hb_run_until(&step_done, 10000);
    }
    for (int i = 0; i < nsamples; i++)
        printf("%llu\n", (unsigned long long)rtt[i]);
    double cpu_ms = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec -
                             r0.ru_stime.tv_sec) *
                        1000.0 +
                    (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec -
                             r0.ru_stime.tv_usec) /
                        1000.0;
    printf("# cpu_ms=%.1f samples=%d errors=%d\n", cpu_ms, nsamples, errors);
    dd_store_close(store, NULL, NULL);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    dd_log_free(log);
    fclose(devnull);
    free(disps);
    free(rtt);
    return errors ? 1 : 0;
}
