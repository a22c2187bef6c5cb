/* cmd_takeover.c - `dispatchd takeover PROJECT QUEUE`: one termination-first
 * start, the outcome printed as JSON. */
#include "cli/cli.h"

#include "core/error.h"
#include "owner/owner.h"
#include "temporal/temporal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct {
    bool done;
    dd_takeover_result res;
} dd_takeover_wait;

static void dd_takeover_cli_done(const dd_takeover_result *r, void *arg)
{
    dd_takeover_wait *w = arg;
    w->res = *r;
    w->done = true;
}

int dd_cmd_takeover(dd_cli *cli)
{
    if (cli->npos != 2)
        return dd_cli_usage_error(cli, "takeover needs PROJECT and QUEUE (got %d argument%s)",
                                  cli->npos, cli->npos == 1 ? "" : "s");
    uv_loop_t loop;
    uv_loop_init(&loop);
    dd_ctx ctx = {.loop = &loop, .log = cli->log, .metrics = cli->metrics, .cfg = &cli->cfg};
    dd_temporal *t = NULL;
    int code = dd_cli_temporal_new(cli, &ctx, &t);
    if (code != 0) {
        uv_loop_close(&loop);
        return code;
    }
    dd_owner_workflow wf;
    char *input = NULL;
    code = dd_cli_workflow(cli, &wf, &input);
    if (code != 0) {
        dd_temporal_close(t, NULL, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        return code;
    }
    dd_takeover_wait w = {0};
    dd_takeover_req req = {.project = cli->pos[0],
                           .queue = cli->pos[1],
                           .server_id = dd_cli_server_id(cli),
                           .legacy = cli->cfg.legacy_takeover,
                           .wf = &wf};
    char err[512];
    int rc = dd_takeover_start(&ctx, t, &req, dd_takeover_cli_done, &w, NULL, err, sizeof(err));
    if (rc < 0) {
        code = rc == DD_EINVAL ? dd_cli_usage_error(cli, "%s", err) : dd_cli_fail(cli, "%s", err);
    } else {
        while (!w.done && uv_run(&loop, UV_RUN_ONCE))
            ;
        const dd_takeover_result *r = &w.res;
        json_t *o = json_pack("{s:s, s:s?, s:s?, s:s, s:f, s:i}", "workflow_id", r->workflow_id,
                              "run_id", r->err ? NULL : r->run_id, "previous_run_id",
                              r->previous_run_id[0] ? r->previous_run_id : NULL, "outcome",
                              r->outcome, "latency_ms", r->latency_ms, "attempts", r->attempts);
        if (r->previous_server_id[0])
            json_object_set_new(o, "previous_server_id", json_string(r->previous_server_id));
        if (r->err)
            json_object_set_new(o, "error", json_string(r->message));
        char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
        printf("%s\n", text);
        free(text);
        json_decref(o);
        if (r->err)
            code = dd_cli_fail(cli, "takeover of %s/%s failed: %s", req.project, req.queue,
                               r->message);
    }
    dd_temporal_close(t, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(input);
    return code;
}
