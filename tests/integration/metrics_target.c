/* metrics_target - a stand-in scrape target for the Prometheus end-to-end test.
 *
 *   metrics_target [LISTEN]     (default 127.0.0.1:0)
 *
 * Serves a few metrics of the contract (deploy/metrics.txt) through
 * dd_metrics_http on its own loop, prints "listening 127.0.0.1:PORT" on
 * stdout once it accepts connections, bumps a counter every second, and exits
 * 0 after SIGTERM/SIGINT once every handle is closed (exit 3 if the loop did
 * not close clean). Until dispatchd run serves /metrics this is what real
 * Prometheus scrapes in tests/integration/prometheus_scrape.sh. */
#include "core/ctx.h"
#include "core/log.h"
#include "metrics/http.h"
#include "metrics/metrics.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

typedef struct target {
    dd_metrics_http *http;
    dd_metric *cycles;
    uv_timer_t tick;
    uv_signal_t sigterm;
    uv_signal_t sigint;
} target;

static void target_on_tick(uv_timer_t *t)
{
    target *tg = t->data;
    dd_metric_add(tg->cycles, DD_L1("ok"), 1);
}

static void target_on_signal(uv_signal_t *s, int signum)
{
    target *tg = s->data;
    dd_metrics_http_close(tg->http, NULL, NULL);
    uv_close((uv_handle_t *)&tg->tick, NULL);
    uv_close((uv_handle_t *)&tg->sigterm, NULL);
    uv_close((uv_handle_t *)&tg->sigint, NULL);
}

static void target_register(dd_metrics *m, target *tg)
{
    const char *const build[] = {"version", "commit", NULL};
    dd_metric_set(dd_metrics_family(m, DD_GAUGE, "dispatchd_build_info",
                                    "Build information; always 1.", build, NULL, 0),
                  (const char *const[]){"0.0.0-test", "metrics_target"}, 1);
    dd_metric_set(dd_metrics_family(m, DD_GAUGE, "dispatchd_dispatchers_active",
                                    "Dispatchers with a fresh heartbeat.", NULL, NULL, 0),
                  NULL, 2);
    dd_metric_set(dd_metrics_family(m, DD_GAUGE, "dispatchd_dispatchers_stale",
                                    "Dispatchers with a stale heartbeat.", NULL, NULL, 0),
                  NULL, 0);
    const char *const outcome[] = {"outcome", NULL};
    dd_metric_add(dd_metrics_family(m, DD_COUNTER, "dispatchd_takeovers_total",
                                    "Takeovers by outcome.", outcome, NULL, 0),
                  DD_L1("started"), 1);
    dd_metric *h = dd_metrics_family(m, DD_HISTOGRAM, "dispatchd_takeover_duration_seconds",
                                     "Takeover duration.", NULL, NULL, 0);
    dd_metric_observe(h, NULL, 0.2);
    dd_metric_observe(h, NULL, 1.5);
    const char *const disp[] = {"dispatcher", NULL};
    dd_metric_set(dd_metrics_family(m, DD_GAUGE, "dispatchd_dispatcher_owner",
                                    "1 while this process owns the dispatcher.", disp, NULL, 0),
                  DD_L1("proj/queue"), 1);
    const char *const result[] = {"result", NULL};
    tg->cycles = dd_metrics_family(m, DD_COUNTER, "dispatchd_reconcile_cycles_total",
                                   "Reconcile cycles by result.", result, NULL, 0);
    dd_metric_add(tg->cycles, DD_L1("ok"), 0);
    const char *const service[] = {"service", NULL};
    dd_metric *up = dd_metrics_family(m, DD_GAUGE, "dispatchd_stack_up",
                                      "1 while the supervised server is healthy.", service,
                                      NULL, 0);
    dd_metric_set(up, DD_L1("temporal"), 1);
    dd_metric_set(up, DD_L1("redis"), 1);
}

int main(int argc, char **argv)
{
    const char *listen = argc > 1 ? argv[1] : "127.0.0.1:0";
    uv_loop_t loop;
    target tg = {0};
    char err[256];
    int code = 1;

    signal(SIGPIPE, SIG_IGN);
    if (uv_loop_init(&loop) < 0)
        return 1;
    dd_log *log = dd_log_new(stderr, DD_LOG_DEBUG);
    dd_metrics *m = dd_metrics_new();
    dd_ctx ctx = {.loop = &loop, .log = log, .metrics = m};
    target_register(m, &tg);

    int rc = dd_metrics_http_new(&ctx, listen, m, NULL, NULL, &tg.http, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "metrics_target: %s\n", err);
        uv_run(&loop, UV_RUN_DEFAULT);
        goto out;
    }
    uv_timer_init(&loop, &tg.tick);
    tg.tick.data = &tg;
    uv_timer_start(&tg.tick, target_on_tick, 1000, 1000);
    uv_signal_init(&loop, &tg.sigterm);
    uv_signal_init(&loop, &tg.sigint);
    tg.sigterm.data = tg.sigint.data = &tg;
    uv_signal_start_oneshot(&tg.sigterm, target_on_signal, SIGTERM);
    uv_signal_start_oneshot(&tg.sigint, target_on_signal, SIGINT);

    /* The host part as given (start succeeded, so there is a ':'). */
    int hostlen = (int)(strrchr(listen, ':') - listen);
    printf("listening %.*s:%d\n", hostlen, listen, dd_metrics_http_port(tg.http));
    fflush(stdout);
    uv_run(&loop, UV_RUN_DEFAULT);
    code = 0;
out:
    if (uv_loop_close(&loop) != 0) {
        fprintf(stderr, "metrics_target: loop did not close clean\n");
        code = 3;
    }
    dd_metrics_free(m);
    dd_log_free(log);
    return code;
}
