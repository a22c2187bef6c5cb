/* common.c - pieces several subcommands build the same way: the server id,
 * the Temporal client from the configuration, running one call to the end. */
#include "cli/cli.h"

#include "core/buf.h"
#include "core/error.h"
#include "metrics/http.h"
#include "owner/id.h"
#include "owner/owner.h"
#include "store/store.h"
#include "temporal/temporal.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *dd_cli_server_id(dd_cli *cli)
{
    static char id[300];
    if (cli->cfg.server_id && *cli->cfg.server_id)
        return cli->cfg.server_id;
    if (!id[0]) {
        char host[256] = "localhost";
        gethostname(host, sizeof(host) - 1);
        snprintf(id, sizeof(id), "%s-%d", host, (int)getpid());
    }
    return id;
}

const char *dd_cli_temporal_url(const dd_cli *cli)
{
    static char url[300];
    if (cli->cfg.temporal_url && *cli->cfg.temporal_url)
        return cli->cfg.temporal_url;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", cli->cfg.temporal_http_port);
    return url;
}

int dd_cli_temporal_new(dd_cli *cli, const dd_ctx *ctx, struct dd_temporal **out)
{
    const char *url = dd_cli_temporal_url(cli);
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return dd_cli_usage_error(cli,
                                  "--temporal-url '%s': expected http://HOST:PORT or "
                                  "https://HOST:PORT (the Temporal HTTP API)",
                                  url);
    /* The usual mistakes, named before they turn into a vague failure. */
    const char *auth = strstr(url, "://") + 3;
    size_t alen = strcspn(auth, "/?#");
    if (alen == 0)
        return dd_cli_usage_error(cli,
                                  "--temporal-url '%s': the host is missing: expected "
                                  "http://HOST:PORT, e.g. http://127.0.0.1:7243 (the Temporal "
                                  "HTTP API port; the dev server's default is 7243, its gRPC "
                                  "port 7233 will not do)",
                                  url);
    size_t plen = strlen(auth + alen);
    while (plen > 0 && auth[alen + plen - 1] == '/')
        plen--;
    if (plen >= 7 && strncmp(auth + alen + plen - 7, "/api/v1", 7) == 0)
        return dd_cli_usage_error(cli,
                                  "--temporal-url '%s': leave out '/api/v1' (dispatchd adds it): "
                                  "use '%.*s'",
                                  url, (int)(auth + alen + plen - 7 - url), url);
    if (!cli->cfg.namespace_ || !*cli->cfg.namespace_)
        return dd_cli_usage_error(cli, "--namespace must not be empty");
    char err[512];
    char *api_key = NULL;
    if (dd_config_secret("DISPATCHD_TEMPORAL_API_KEY", cli->cfg.temporal_api_key_file, &api_key,
                         err, sizeof(err)) < 0)
        return dd_cli_usage_error(cli, "--temporal-api-key-file: %s", err);
    dd_temporal_opts o = {
        .base_url = url,
        .namespace_ = cli->cfg.namespace_,
        .identity = dd_cli_server_id(cli),
        .timeout_ms = cli->cfg.temporal_timeout_ms,
        .max_in_flight = cli->cfg.temporal_max_in_flight,
        .ca_file = cli->cfg.temporal_ca_file,
        .cert_file = cli->cfg.temporal_cert_file,
        .key_file = cli->cfg.temporal_key_file,
        .api_key = api_key,
    };
    if (api_key)
        dd_log_add_secret(cli->log, api_key);
    int rc = dd_temporal_new(ctx, &o, out, err, sizeof(err));
    dd_secret_free(api_key);
    if (rc < 0)
        return dd_cli_usage_error(cli,
                                  "cannot set up the Temporal client for '%s': %s (expected "
                                  "http(s)://HOST:PORT of the Temporal HTTP API, and readable "
                                  "--temporal-ca-file/--temporal-cert-file/--temporal-key-file)",
                                  url, err);
    return 0;
}

const char *dd_cli_redis_url(const dd_cli *cli)
{
    static char url[300];
    if (cli->cfg.redis_url && *cli->cfg.redis_url)
        return cli->cfg.redis_url;
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", cli->cfg.redis_port);
    return url;
}

int dd_cli_metrics_serve(dd_cli *cli, const dd_ctx *ctx, const char *listen,
                         bool (*ready)(void *arg, char *reason, size_t len), void *arg,
                         dd_metrics_http **out)
{
    char err[256];
    if (dd_metrics_http_new(ctx, listen, ctx->metrics, ready, arg, out, err, sizeof(err)) < 0) {
        *out = NULL;
        /* the address the user gave cannot be used (taken, not local): exit 2 */
        return dd_cli_refuse(cli, "%s (--metrics-listen, or \"off\")", err);
    }
    dd_info(ctx->log, "metrics_listening", "address=%s port=%d", listen,
            dd_metrics_http_port(*out));
    return 0;
}

int dd_cli_store_open(dd_cli *cli, const dd_ctx *ctx, dd_store **out)
{
    char err[512];
    char *pw = NULL;
    if (dd_config_secret("DISPATCHD_REDIS_PASSWORD", cli->cfg.redis_password_file, &pw, err,
                         sizeof(err)) < 0)
        return dd_cli_usage_error(cli, "--redis-password-file: %s", err);
    dd_cli_redis_password_warn(cli);
    const char *user = cli->cfg.redis_username;
    /* Back within one heartbeat interval of Redis's return: after a Redis
     * restart a record gets one threshold of grace (store.h,
     * dd_store_hb_fresh_since), and an owner still waiting out a 5 s
     * reconnect backoff would miss it (seen at 500ms/2s) */
    int64_t cap = cli->cfg.heartbeat_interval_ms > 0 && cli->cfg.heartbeat_interval_ms < 5000
                      ? cli->cfg.heartbeat_interval_ms
                      : 5000;
    dd_store_opts so = {.url = dd_cli_redis_url(cli), .password = pw, .username = user,
                        .reconnect_cap_ms = cap,
                        .tls_ca_file = cli->cfg.redis_ca_file,
                        .tls_cert_file = cli->cfg.redis_cert_file,
                        .tls_key_file = cli->cfg.redis_key_file};
    char *spw = NULL;
    bool sentinel = dd_cli_redis_sentinel(cli);
    if (sentinel) {
        if (dd_config_secret("DISPATCHD_REDIS_SENTINEL_PASSWORD",
                             cli->cfg.redis_sentinel_password_file, &spw, err, sizeof(err)) < 0) {
            dd_secret_free(pw);
            return dd_cli_usage_error(cli, "--redis-sentinel-password-file: %s", err);
        }
        so.url = NULL;
        so.sentinels = cli->cfg.redis_sentinel;
        so.master_name = cli->cfg.redis_master_name;
        so.sentinel_password = spw;
        so.db = cli->cfg.redis_db;
    }
    so.wait_replicas = cli->cfg.redis_wait_replicas;
    int rc = dd_store_open(ctx, &so, out, err, sizeof(err));
    dd_secret_free(pw);
    dd_secret_free(spw);
    if (rc < 0)
        return dd_cli_usage_error(cli, "%s: %s",
                                  user && *user && !strncmp(err, "redis user", 10)
                                      ? "--redis-username"
                                  : sentinel                 ? "--redis-sentinel"
                                  : strstr(err, "TLS files") ? "--redis-url"
                                  : strstr(err, "file '")    ? "--redis-ca-file/--redis-cert-file/"
                                                               "--redis-key-file"
                                                             : "--redis-url",
                                  err);
    return 0;
}

bool dd_cli_redis_sentinel(const dd_cli *cli)
{
    return cli->cfg.redis_sentinel && *cli->cfg.redis_sentinel;
}

const char *dd_cli_redis_url_safe(const dd_cli *cli)
{
    /* For messages: the URL without its user:password part. Whole, on the
     * heap (once per process): a cut unix socket path is another socket. */
    static char *safe;
    if (safe)
        return safe;
    dd_buf b = DD_BUF_INIT;
    if (dd_cli_redis_sentinel(cli)) {
        dd_buf_printf(&b, "the primary of '%s' (sentinels %s)", cli->cfg.redis_master_name,
                      cli->cfg.redis_sentinel);
        safe = dd_buf_detach(&b);
        return safe;
    }
    const char *url = dd_cli_redis_url(cli);
    const char *scheme = strstr(url, "://");
    const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
    const char *slash = scheme ? strchr(scheme + 3, '/') : NULL;
    if (!at || (slash && slash < at))
        dd_buf_puts(&b, url);
    else
        dd_buf_printf(&b, "%.*s***@%s", (int)(scheme + 3 - url), url, at + 1);
    safe = dd_buf_detach(&b);
    return safe;
}

void dd_cli_redis_password_warn(dd_cli *cli)
{
    static bool warned;
    const char *url = dd_cli_redis_url(cli);
    const char *scheme = strstr(url, "://");
    const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
    const char *slash = scheme ? strchr(scheme + 3, '/') : NULL;
    if (warned || !at || (slash && slash < at))
        return;
    const char *colon = memchr(scheme + 3, ':', (size_t)(at - scheme - 3));
    if (!colon || colon + 1 == at) /* a user name alone is no secret */
        return;
    /* From the environment it is not on the command line (only the same
     * user and root can read /proc/PID/environ). */
    const char *env = getenv("DISPATCHD_REDIS_URL");
    if (env && !strcmp(env, url))
        return;
    warned = true;
    dd_warn(cli->log, "redis_password_in_url", "url=%s note=%s", dd_cli_redis_url_safe(cli),
            "a password inside --redis-url is visible to every local user (ps, "
            "/proc/PID/cmdline): put it in DISPATCHD_REDIS_PASSWORD or a file named by "
            "--redis-password-file and leave it out of the URL");
}

/* --redis-username, or a user in the URL (redis://user:pw@...). */
static bool dd_cli_redis_has_user(const dd_cli *cli)
{
    if (cli->cfg.redis_username && *cli->cfg.redis_username)
        return true;
    const char *url = dd_cli_redis_url(cli);
    size_t skip = !strncmp(url, "redis://", 8) ? 8 : !strncmp(url, "rediss://", 9) ? 9 : 0;
    if (!skip)
        return false;
    const char *a = url + skip;
    size_t alen = strcspn(a, "/");
    const char *at = memchr(a, '@', alen);
    return at && at > a && a[0] != ':';
}

int dd_cli_redis_fail(dd_cli *cli, dd_store *s, int st, const char *what)
{
    const char *detail = s ? dd_store_last_error(s) : "";
    if (!detail)
        detail = "";
    bool has = *detail != '\0';
    if (st == -ENOENT && dd_cli_redis_sentinel(cli))
        /* a master name no sentinel knows: the configuration to change */
        return dd_cli_refuse(cli, "cannot read %s from %s: %s", what, dd_cli_redis_url_safe(cli),
                             has ? detail : "unknown master name (--redis-master-name)");
    if (st == -ENOTSUP)
        /* the wrong kind of server is bad input, like a malformed URL */
        return dd_cli_refuse(cli, "cannot read %s from %s: %s", what, dd_cli_redis_url_safe(cli),
                             has ? detail : "Redis Cluster is not supported (docs/redis.md)");
    const char *hint;
    if (st == -EPERM)
        hint = "an ACL rule is missing (the login itself worked)";
    else if (strstr(detail, "TLS") && !dd_cli_redis_sentinel(cli))
        hint = "check --redis-ca-file (the CA that signed the server's certificate), the host "
               "in --redis-url (the certificate must name it) and, if the server wants one, "
               "--redis-cert-file/--redis-key-file";
    else if (dd_cli_redis_sentinel(cli) && !strncmp(detail, "the sentinels", 13))
        hint = "set the sentinels' password: DISPATCHD_REDIS_SENTINEL_PASSWORD or "
               "--redis-sentinel-password-file";
    else if (dd_cli_redis_sentinel(cli) && !strncmp(detail, "no sentinel", 11))
        hint = "are the sentinels running there (--redis-sentinel HOST:PORT,...), and do they "
               "monitor --redis-master-name?";
    else if ((st == -EACCES || strstr(detail, "WRONGPASS")) && dd_cli_redis_has_user(cli))
        hint = "check the user and its password: --redis-username or the URL's user, "
               "DISPATCHD_REDIS_PASSWORD or --redis-password-file (and that the ACL user is on)";
    else if (st == -EACCES || strstr(detail, "NOAUTH") || strstr(detail, "WRONGPASS") ||
             strstr(detail, "without any password"))
        hint = "check the password: DISPATCHD_REDIS_PASSWORD or --redis-password-file (or none "
               "if the server has no requirepass)";
    else if (st == DD_EUNAVAIL || st == DD_ETIMEOUT || st == DD_ECANCELED)
        hint = "is redis-server running there? `dispatchd up` or `dispatchd stack start` runs "
               "one on 127.0.0.1:6379 (--redis-port); elsewhere set --redis-url or "
               "DISPATCHD_REDIS_URL";
    else
        hint = "check --redis-url and that the server is a Redis 6 or later";
    return dd_cli_fail(cli, "cannot read %s from %s: %s%s%s%s; %s", what,
                       dd_cli_redis_url_safe(cli), dd_strerror(st), has ? " (" : "",
                       has ? detail : "", has ? ")" : "", hint);
}

/* ---- what runs under a dispatcher's ID (marker or workflow mode) -------- */

static char *dd_cli_read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "--input-file '%s': %s", path, strerror(errno));
        return NULL;
    }
    dd_buf b = DD_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (b.len + n > 2 * 1024 * 1024) { /* Temporal's default payload limit */
            snprintf(err, errlen, "--input-file '%s': larger than 2 MiB", path);
            fclose(f);
            dd_buf_release(&b);
            return NULL;
        }
        dd_buf_append(&b, chunk, n);
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        snprintf(err, errlen, "--input-file '%s': read error", path);
        dd_buf_release(&b);
        return NULL;
    }
    return dd_buf_detach(&b);
}

int dd_cli_workflow(dd_cli *cli, dd_owner_workflow *wf, char **input_owned)
{
    const dd_config *c = &cli->cfg;
    char err[600];
    *input_owned = NULL;
    memset(wf, 0, sizeof(*wf));
    wf->marker_task_queue = c->marker_task_queue;
    wf->id_prefix = c->id_prefix;
    if (dd_id_prefix_check(c->id_prefix, err, sizeof(err)) < 0)
        return dd_cli_usage_error(cli, "--id-prefix: %s", err);
    bool wmode = c->workflow_type && *c->workflow_type;
    const char *only = NULL;
    if (!wmode && c->workflow_task_queue && *c->workflow_task_queue)
        only = "--workflow-task-queue";
    else if (!wmode && c->input_json && *c->input_json)
        only = "--input";
    else if (!wmode && c->input_file && *c->input_file)
        only = "--input-file";
    else if (!wmode && c->input_server_id_field && *c->input_server_id_field)
        only = "--input-server-id-field";
    if (only)
        return dd_cli_usage_error(cli, "%s only applies in workflow mode: add --workflow-type "
                                       "TYPE (your dispatcher workflow's type)",
                                  only);
    if (!c->marker_task_queue || !*c->marker_task_queue)
        return dd_cli_usage_error(cli, "--marker-task-queue must not be empty");
    if (c->on_workflow_exit && strcmp(c->on_workflow_exit, "restart") &&
        strcmp(c->on_workflow_exit, "release"))
        return dd_cli_usage_error(cli, "--on-workflow-exit '%s': use restart or release",
                                  c->on_workflow_exit);
    wf->on_exit = c->on_workflow_exit && !strcmp(c->on_workflow_exit, "release")
                      ? DD_ON_EXIT_RELEASE
                      : DD_ON_EXIT_RESTART;
    if (!wmode) {
        /* a marker on a worker's queue is what broke real users: never */
        for (int i = 0; i < c->ndispatchers; i++) {
            const char *q = strchr(c->dispatchers[i], '/');
            if (q && !strcmp(q + 1, c->marker_task_queue))
                return dd_cli_usage_error(
                    cli,
                    "--marker-task-queue '%s' is the task queue of dispatcher '%s': markers "
                    "must run on a queue no worker polls; pick another name",
                    c->marker_task_queue, c->dispatchers[i]);
        }
        return 0;
    }
    wf->type = c->workflow_type;
    wf->task_queue = c->workflow_task_queue && *c->workflow_task_queue ? c->workflow_task_queue
                                                                      : NULL;
    if (c->input_json && *c->input_json && c->input_file && *c->input_file)
        return dd_cli_usage_error(cli, "give --input or --input-file, not both");
    char *text = NULL;
    if (c->input_file && *c->input_file) {
        text = dd_cli_read_file(c->input_file, err, sizeof(err));
        if (!text)
            return dd_cli_usage_error(cli, "%s", err);
    } else if (c->input_json && *c->input_json) {
        text = dd_strdup(c->input_json);
    }
    json_t *in = NULL;
    if (text) {
        json_error_t je;
        in = json_loads(text, JSON_DECODE_ANY, &je);
        free(text);
        if (!in)
            return dd_cli_usage_error(cli, "%s is not valid JSON: %s (line %d, column %d)",
                                      c->input_file && *c->input_file ? "--input-file"
                                                                      : "--input",
                                      je.text, je.line, je.column);
    }
    const char *field = c->input_server_id_field;
    if (field && *field) {
        if (!in)
            in = json_object();
        if (!json_is_object(in)) {
            json_decref(in);
            return dd_cli_usage_error(cli,
                                      "--input-server-id-field %s needs the input to be a JSON "
                                      "object",
                                      field);
        }
        json_object_set_new(in, field, json_string(dd_cli_server_id(cli)));
    }
    if (in) {
        *input_owned = json_dumps(in, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(in);
        wf->input_json = *input_owned;
    }
    return 0;
}
