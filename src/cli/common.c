/* common.c - pieces several subcommands build the same way: the server id,
 * the Temporal client from the configuration, running one call to the end. */
#include "cli/cli.h"

#include "core/buf.h"
#include "core/error.h"
#include "metrics/http.h"
#include "store/store.h"
#include "temporal/temporal.h"

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
    if (!cli->cfg.namespace_ || !*cli->cfg.namespace_)
        return dd_cli_usage_error(cli, "--namespace must not be empty");
    char err[512];
    char *api_key = NULL;
    if (dd_config_secret("DISPATCHD_TEMPORAL_API_KEY", cli->cfg.temporal_api_key_file, &api_key,
                         err, sizeof(err)) < 0)
        return dd_cli_usage_error(cli, "%s", err);
    dd_temporal_opts o = {
        .base_url = url,
        .namespace_ = cli->cfg.namespace_,
        .identity = dd_cli_server_id(cli),
        .timeout_ms = cli->cfg.temporal_timeout_ms,
        .ca_file = cli->cfg.temporal_ca_file,
        .cert_file = cli->cfg.temporal_cert_file,
        .key_file = cli->cfg.temporal_key_file,
        .api_key = api_key,
    };
    if (api_key)
        dd_log_add_secret(cli->log, api_key);
    *out = dd_temporal_new(ctx, &o);
    if (api_key) {
        memset(api_key, 0, strlen(api_key));
        free(api_key);
    }
    if (!*out)
        return dd_cli_usage_error(cli, "cannot set up the Temporal client for '%s'", url);
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
    if (dd_metrics_http_start(out, ctx, listen, ctx->metrics, ready, arg, err, sizeof(err)) < 0) {
        *out = NULL;
        return dd_cli_fail(cli, "%s (--metrics-listen, or \"off\")", err);
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
        return dd_cli_usage_error(cli, "%s", err);
    dd_store_opts so = {.url = dd_cli_redis_url(cli), .password = pw};
    int rc = dd_store_open(ctx, &so, out, err, sizeof(err));
    if (pw) {
        memset(pw, 0, strlen(pw));
        free(pw);
    }
    if (rc < 0)
        return dd_cli_usage_error(cli, "--redis-url: %s", err);
    return 0;
}

const char *dd_cli_redis_url_safe(const dd_cli *cli)
{
    /* For messages: the URL without its user:password part. Whole, on the
     * heap (once per process): a cut unix socket path is another socket. */
    static char *safe;
    if (safe)
        return safe;
    dd_buf b = DD_BUF_INIT;
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
