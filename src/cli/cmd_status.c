/* cmd_status.c - `dispatchd status`: every dispatcher in Redis with its
 * owner, run, heartbeat age and health, and its registered workers. */
#include "cli/cli.h"

#include "core/buf.h"
#include "core/error.h"
#include "core/time.h"
#include "store/store.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct {
    dd_cli *cli;
    dd_store *s;
    int err;
    bool done;
    json_t *rows; /* array of objects, filled as replies come */
    size_t pending;
    int64_t now;
} dd_status_run;

typedef struct {
    dd_status_run *r;
    json_t *row; /* borrowed from r->rows */
} dd_status_req;

static void dd_status_workers_done(int st, const dd_store_workers *w, void *arg)
{
    dd_status_req *q = arg;
    json_t *arr = json_array();
    if (st == 0)
        for (size_t i = 0; i < w->n; i++)
            json_array_append_new(arr, json_pack("{s:s, s:I}", "server_id", w->items[i].server_id,
                                                 "heartbeat_ms", (json_int_t)w->items[i].hb_ms));
    json_object_set_new(q->row, "workers", arr);
    if (--q->r->pending == 0)
        q->r->done = true;
    free(q);
}

static void dd_status_list_done(int st, const dd_store_hb_list *l, void *arg)
{
    dd_status_run *r = arg;
    if (st < 0) {
        r->err = st;
        r->done = true;
        return;
    }
    r->now = l->now_ms; /* Redis's clock: the one heartbeats are written by */
    for (size_t i = 0; i < l->n; i++) {
        const dd_store_hb *h = &l->items[i];
        json_t *row = json_object();
        json_object_set_new(row, "workflow_id", json_string(h->workflow_id));
        json_object_set_new(row, "project", h->project ? json_string(h->project) : json_null());
        json_object_set_new(row, "queue", h->queue ? json_string(h->queue) : json_null());
        json_object_set_new(row, "owner", h->server_id ? json_string(h->server_id) : json_null());
        json_object_set_new(row, "run_id", h->run_id ? json_string(h->run_id) : json_null());
        json_object_set_new(row, "epoch", json_integer(h->epoch));
        if (h->malformed) {
            json_object_set_new(row, "state", json_string("malformed"));
            json_object_set_new(row, "problem", json_string(h->problem ? h->problem : ""));
        } else {
            int64_t age = r->now - h->hb_ms;
            /* Stale past the longer of the owner's own threshold (ttl_ms)
             * and the one this command was given, like the reconciler. */
            int64_t thr = r->cli->cfg.stale_threshold_ms;
            if (h->ttl_ms > thr)
                thr = h->ttl_ms;
            /* hb_ms 0 on a well-formed record: a dead owner's last will made
             * it stale at once (docs/ownership.md); an age since 1970 would
             * only mislead */
            if (h->hb_ms == DD_STORE_HB_RELEASED)
                json_object_set_new(row, "released_by_will", json_true());
            else
                json_object_set_new(row, "heartbeat_age_ms", json_integer(age));
            /* ... and from Redis's restart if that is later, like everyone */
            json_object_set_new(row, "state",
                                json_string(h->hb_ms == DD_STORE_HB_RELEASED ? "released"
                                            : r->now - dd_store_hb_fresh_since(h) > thr
                                                ? "stale"
                                                : "healthy"));
        }
        json_array_append_new(r->rows, row);
        dd_status_req *q = dd_xcalloc(1, sizeof(*q));
        q->r = r;
        q->row = row;
        if (dd_store_worker_list(r->s, h->workflow_id, dd_status_workers_done, q) == 0) {
            r->pending++;
        } else {
            free(q);
            json_object_set_new(row, "workers", json_array());
        }
    }
    if (r->pending == 0)
        r->done = true;
}

static void dd_status_print(dd_status_run *r)
{
    size_t i;
    json_t *row;
    if (json_array_size(r->rows) == 0) {
        printf("no dispatchers in %s\n", dd_cli_redis_url_safe(r->cli));
        return;
    }
    printf("%-40s %-9s %-24s %-10s %s\n", "DISPATCHER", "STATE", "OWNER", "HEARTBEAT",
           "RUN / WORKERS");
    json_array_foreach(r->rows, i, row)
    {
        char age[32] = "-";
        dd_buf name = DD_BUF_INIT; /* whole: two long names must not print alike */
        json_t *a = json_object_get(row, "heartbeat_age_ms");
        if (json_is_true(json_object_get(row, "released_by_will")))
            snprintf(age, sizeof(age), "last will");
        else if (a) {
            int64_t ms = json_integer_value(a);
            if (ms < 0)
                snprintf(age, sizeof(age), "in %lldms", (long long)-ms);
            else {
                dd_duration_format(ms, age, sizeof(age));
                strncat(age, " ago", sizeof(age) - strlen(age) - 1);
            }
        }
        const char *p = json_string_value(json_object_get(row, "project"));
        const char *q = json_string_value(json_object_get(row, "queue"));
        if (p && q)
            dd_buf_printf(&name, "%s/%s", p, q);
        else
            dd_buf_puts(&name, json_string_value(json_object_get(row, "workflow_id"))
                                   ? json_string_value(json_object_get(row, "workflow_id"))
                                   : "-");
        const char *owner = json_string_value(json_object_get(row, "owner"));
        const char *run = json_string_value(json_object_get(row, "run_id"));
        printf("%-40s %-9s %-24s %-10s %s\n", dd_buf_str(&name),
               json_string_value(json_object_get(row, "state")), owner ? owner : "-", age,
               run ? run : "-");
        dd_buf_release(&name);
        json_t *ws = json_object_get(row, "workers"), *w;
        size_t j;
        json_array_foreach(ws, j, w)
        {
            int64_t wage = r->now - json_integer_value(json_object_get(w, "heartbeat_ms"));
            char wa[32];
            dd_duration_format(wage < 0 ? 0 : wage, wa, sizeof(wa));
            printf("%-40s %-9s %-24s %-10s\n", "", "worker",
                   json_string_value(json_object_get(w, "server_id")), wa);
        }
        if (json_object_get(row, "problem"))
            printf("%-40s problem: %s\n", "", json_string_value(json_object_get(row, "problem")));
    }
}

int dd_cmd_status(dd_cli *cli)
{
    if (cli->npos > 0)
        return dd_cli_usage_error(cli, "status takes no arguments (got '%s')", cli->pos[0]);
    uv_loop_t loop;
    uv_loop_init(&loop);
    dd_ctx ctx = {.loop = &loop, .log = cli->log, .metrics = cli->metrics, .cfg = &cli->cfg};
    dd_status_run r = {.cli = cli, .rows = json_array(), .now = dd_wall_ms()};
    int code = dd_cli_store_open(cli, &ctx, &r.s);
    if (code == 0) {
        int rc = dd_store_list(r.s, 0, dd_status_list_done, &r);
        if (rc < 0) {
            r.err = rc;
            r.done = true;
        }
        while (!r.done && uv_run(&loop, UV_RUN_ONCE))
            ;
        if (r.err) {
            code = dd_cli_redis_fail(cli, r.s, r.err, "dispatchers");
        } else if (cli->cfg.json) {
            json_t *o = json_pack("{s:O, s:I}", "dispatchers", r.rows, "stale_threshold_ms",
                                  (json_int_t)cli->cfg.stale_threshold_ms);
            char *text = json_dumps(o, JSON_INDENT(2));
            printf("%s\n", text);
            free(text);
            json_decref(o);
        } else {
            dd_status_print(&r);
        }
        dd_store_close(r.s, NULL, NULL);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    json_decref(r.rows);
    return code;
}
