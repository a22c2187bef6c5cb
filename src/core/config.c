#include "core/config.h"

#include "core/buf.h"
#include "core/error.h"
#include "core/time.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define O(f) offsetof(dd_config, f)

const dd_opt dd_opts_common[] = {
    {"log-level", "DISPATCHD_LOG_LEVEL", DD_OPT_STR, O(log_level), "LEVEL",
     "debug, info, warn or error (default info)"},
    {"log-format", "DISPATCHD_LOG_FORMAT", DD_OPT_STR, O(log_format), "FORMAT",
     "logfmt or json: one record per line either way (default logfmt)"},
    {"help", NULL, DD_OPT_FLAG, O(help), NULL, "show this help"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

const dd_opt dd_opts_state[] = {
    {"state-dir", "DISPATCHD_STATE_DIR", DD_OPT_STR, O(state_dir), "DIR",
     "where lock, status, log and data files live (default $XDG_STATE_HOME/dispatchd)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

const dd_opt dd_opts_json[] = {
    {"json", NULL, DD_OPT_FLAG, O(json), NULL, "print machine-readable JSON"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

const dd_opt dd_opts_stack[] = {
    {"redis-port", "DISPATCHD_REDIS_PORT", DD_OPT_PORT, O(redis_port), "PORT",
     "local redis-server port on 127.0.0.1 (default 6379)"},
    {"temporal-port", "DISPATCHD_TEMPORAL_PORT", DD_OPT_PORT, O(temporal_port), "PORT",
     "local Temporal frontend gRPC port on 127.0.0.1 (default 7233)"},
    {"temporal-http-port", "DISPATCHD_TEMPORAL_HTTP_PORT", DD_OPT_PORT, O(temporal_http_port),
     "PORT", "local Temporal HTTP API port on 127.0.0.1 (default 7243)"},
    {"temporal-bin", "DISPATCHD_TEMPORAL_BIN", DD_OPT_STR, O(temporal_bin), "PATH",
     "the temporal CLI (default: .tools/bin/temporal next to the build, then $PATH)"},
    {"redis-bin", "DISPATCHD_REDIS_BIN", DD_OPT_STR, O(redis_bin), "PATH",
     "the redis-server binary (default: redis-server from $PATH)"},
    {"stop-timeout", "DISPATCHD_STOP_TIMEOUT", DD_OPT_DURATION, O(stop_timeout_ms), "DUR",
     "how long stop waits after SIGTERM before SIGKILL (default 10s)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

const dd_opt dd_opts_temporal[] = {
    {"temporal-url", "DISPATCHD_TEMPORAL_URL", DD_OPT_STR, O(temporal_url), "URL",
     "Temporal HTTP API base URL (default http://127.0.0.1:7243)"},
    {"namespace", "DISPATCHD_NAMESPACE", DD_OPT_STR, O(namespace_), "NS",
     "Temporal namespace (default \"default\")"},
    {"temporal-ca-file", "DISPATCHD_TEMPORAL_CA_FILE", DD_OPT_STR, O(temporal_ca_file), "FILE",
     "CA bundle to verify the Temporal server (https URLs)"},
    {"temporal-cert-file", "DISPATCHD_TEMPORAL_CERT_FILE", DD_OPT_STR, O(temporal_cert_file),
     "FILE", "client certificate for mTLS"},
    {"temporal-key-file", "DISPATCHD_TEMPORAL_KEY_FILE", DD_OPT_STR, O(temporal_key_file), "FILE",
     "client private key for mTLS"},
    {"temporal-api-key-file", "DISPATCHD_TEMPORAL_API_KEY_FILE", DD_OPT_STR,
     O(temporal_api_key_file), "FILE",
     "file holding an API key sent as a bearer token (or env DISPATCHD_TEMPORAL_API_KEY)"},
    {"temporal-timeout", "DISPATCHD_TEMPORAL_TIMEOUT", DD_OPT_DURATION, O(temporal_timeout_ms),
     "DUR", "timeout of one Temporal request (default 10s)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

const dd_opt dd_opts_redis[] = {
    {"redis-url", "DISPATCHD_REDIS_URL", DD_OPT_STR, O(redis_url), "URL",
     "redis://[:password@]host:port/db or unix:///path (default redis://127.0.0.1:6379/0)"},
    {"redis-password-file", "DISPATCHD_REDIS_PASSWORD_FILE", DD_OPT_STR, O(redis_password_file),
     "FILE", "file holding the Redis password (or env DISPATCHD_REDIS_PASSWORD)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

/* Small groups, each option in exactly one, composed per command in main.c. */
const dd_opt dd_opts_dispatcher[] = {
    {"dispatcher", "DISPATCHD_DISPATCHER", DD_OPT_DISPATCHER, O(dispatchers), "PROJECT/QUEUE",
     "a dispatcher (repeatable where a command serves several)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

const dd_opt dd_opts_server_id[] = {
    {"server-id", "DISPATCHD_SERVER_ID", DD_OPT_STR, O(server_id), "ID",
     "this host's (or worker's) identity (default: hostname-pid)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

const dd_opt dd_opts_heartbeat[] = {
    {"heartbeat-interval", "DISPATCHD_HEARTBEAT_INTERVAL", DD_OPT_DURATION,
     O(heartbeat_interval_ms), "DUR", "how often a heartbeat is written (default 5s)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

const dd_opt dd_opts_stale[] = {
    {"stale-threshold", "DISPATCHD_STALE_THRESHOLD", DD_OPT_DURATION, O(stale_threshold_ms),
     "DUR", "heartbeat age after which a record is stale (default 15s)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

const dd_opt dd_opts_reconcile[] = {
    {"reconcile-interval", "DISPATCHD_RECONCILE_INTERVAL", DD_OPT_DURATION,
     O(reconcile_interval_ms), "DUR", "period of the full reconcile cycle (default 60s)"},
    {"terminate-rate", "DISPATCHD_TERMINATE_RATE", DD_OPT_DOUBLE, O(terminate_rate), "N",
     "max stale terminations per second (default 10)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

const dd_opt dd_opts_takeover[] = {
    {"legacy-takeover", "DISPATCHD_LEGACY_TAKEOVER", DD_OPT_FLAG, O(legacy_takeover), NULL,
     "take over by terminate-then-start instead of the conflict policy (servers < 1.24)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

const dd_opt dd_opts_workflow[] = {
    {"marker-task-queue", "DISPATCHD_MARKER_TASK_QUEUE", DD_OPT_STR, O(marker_task_queue), "Q",
     "marker mode: the task queue markers run on, owned by dispatchd, never a worker's "
     "(default dispatchd)"},
    {"workflow-type", "DISPATCHD_WORKFLOW_TYPE", DD_OPT_STR, O(workflow_type), "TYPE",
     "workflow mode: start your own workflow type under the dispatcher's ID instead of a marker"},
    {"workflow-task-queue", "DISPATCHD_WORKFLOW_TASK_QUEUE", DD_OPT_STR, O(workflow_task_queue),
     "Q", "workflow mode: its task queue (default: the dispatcher's queue)"},
    {"input", "DISPATCHD_INPUT", DD_OPT_STR, O(input_json), "JSON",
     "workflow mode: its input, one JSON value (the same for every dispatcher)"},
    {"input-file", "DISPATCHD_INPUT_FILE", DD_OPT_STR, O(input_file), "FILE",
     "workflow mode: read the input from FILE"},
    {"input-server-id-field", "DISPATCHD_INPUT_SERVER_ID_FIELD", DD_OPT_STR,
     O(input_server_id_field), "NAME",
     "workflow mode: set this field of the input object to the server id"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

const dd_opt dd_opts_id_prefix[] = {
    {"id-prefix", "DISPATCHD_ID_PREFIX", DD_OPT_STR, O(id_prefix), "PREFIX",
     "workflow IDs are PREFIX<project>-<queue>: 1-63 of [A-Za-z0-9_.] and a '-'; the same on "
     "every host of a fleet (default dispatcher-)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

const dd_opt dd_opts_workflow_run[] = {
    {"on-workflow-exit", "DISPATCHD_ON_WORKFLOW_EXIT", DD_OPT_STR, O(on_workflow_exit),
     "restart|release",
     "workflow mode: when the chain ends on its own (completed, failed, timed out, terminated "
     "by a person): start it again with backoff, or let go of it (default restart)"},
    {"workers-signal", "DISPATCHD_WORKERS_SIGNAL", DD_OPT_STR, O(workers_signal), "NAME|off",
     "signal sent to the dispatcher workflow when workers register or are evicted (default: "
     "\"workers\" in marker mode, off in workflow mode)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

/* For commands that talk to Temporal but do not run the stack. */
const dd_opt dd_opts_stack_http[] = {
    {"temporal-http-port", "DISPATCHD_TEMPORAL_HTTP_PORT", DD_OPT_PORT, O(temporal_http_port),
     "PORT", "local Temporal HTTP port used when --temporal-url is not set (default 7243)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

const dd_opt dd_opts_stop[] = {
    {"stop-timeout", "DISPATCHD_STOP_TIMEOUT", DD_OPT_DURATION, O(stop_timeout_ms), "DUR",
     "how long a stop waits after SIGTERM before SIGKILL (default 10s)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

const dd_opt dd_opts_loop[] = {
    {"loop", NULL, DD_OPT_FLAG, O(loop), NULL, "keep going instead of one cycle"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

const dd_opt dd_opts_metrics[] = {
    {"metrics-listen", "DISPATCHD_METRICS_LISTEN", DD_OPT_STR, O(metrics_listen), "HOST:PORT",
     "serve /metrics, /healthz, /readyz here (default 127.0.0.1:9464; \"off\" disables)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

/* Opt-in for a standalone reconciler: it often runs next to a `run` host,
 * whose default port it must not take; no environment variable for the same
 * reason (DISPATCHD_METRICS_LISTEN is the host's). */
const dd_opt dd_opts_reconcile_metrics[] = {
    {"metrics-listen", NULL, DD_OPT_STR, O(reconcile_metrics_listen), "HOST:PORT",
     "with --loop: serve /metrics, /healthz, /readyz here (default: not served)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

#undef O

static char *dd_default_state_dir(void)
{
    dd_buf b = DD_BUF_INIT;
    const char *xdg = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    if (xdg && *xdg == '/')
        dd_buf_printf(&b, "%s/dispatchd", xdg);
    else if (home && *home)
        dd_buf_printf(&b, "%s/.local/state/dispatchd", home);
    else
        dd_buf_puts(&b, "/tmp/dispatchd-state");
    return dd_buf_detach(&b);
}

void dd_config_defaults(dd_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->log_level = "info";
    cfg->log_format = "logfmt";
    cfg->state_dir_default = dd_default_state_dir();
    cfg->state_dir = cfg->state_dir_default;
    cfg->redis_port = 6379;
    cfg->temporal_port = 7233;
    cfg->temporal_http_port = 7243;
    cfg->temporal_bin = "";
    cfg->redis_bin = "redis-server";
    cfg->stop_timeout_ms = 10000;
    cfg->temporal_url = "";
    cfg->namespace_ = "default";
    cfg->temporal_timeout_ms = 10000;
    cfg->redis_url = "";
    cfg->server_id = "";
    cfg->heartbeat_interval_ms = 5000;
    cfg->stale_threshold_ms = 15000;
    cfg->reconcile_interval_ms = 60000;
    cfg->terminate_rate = 10;
    cfg->metrics_listen = "127.0.0.1:9464";
    cfg->marker_task_queue = "dispatchd";
    cfg->id_prefix = "dispatcher-";
    cfg->workflow_type = "";
    cfg->workflow_task_queue = "";
    cfg->input_json = "";
    cfg->input_file = "";
    cfg->input_server_id_field = "";
    cfg->on_workflow_exit = "restart";
    cfg->workers_signal = "";
}

void dd_config_release(dd_config *cfg)
{
    free(cfg->state_dir_default);
    cfg->state_dir_default = NULL;
    cfg->state_dir = NULL;
}

static const dd_opt *dd_opt_find(const dd_opt *const *groups, const char *name, size_t len)
{
    for (int g = 0; groups[g]; g++)
        for (const dd_opt *o = groups[g]; o->name; o++)
            if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
                return o;
    return NULL;
}

static int dd_opt_set(dd_config *cfg, const dd_opt *o, const char *val, const char *src, char *err,
                      size_t errlen)
{
    char *field = (char *)cfg + o->offset;
    switch (o->type) {
    case DD_OPT_STR:
        *(const char **)field = val;
        return 0;
    case DD_OPT_FLAG:
        *(bool *)field = true;
        return 0;
    case DD_OPT_PORT: {
        char *end;
        errno = 0;
        long v = strtol(val, &end, 10);
        if (errno || *end || end == val || v < 1 || v > 65535) {
            dd_msgf(err, errlen, "%s '%s': not a port number (1-65535)", src, val);
            return DD_EINVAL;
        }
        *(int *)field = (int)v;
        return 0;
    }
    case DD_OPT_DURATION: {
        int64_t ms;
        if (dd_duration_parse(val, &ms) < 0) {
            dd_msgf(err, errlen,
                    "%s '%s': not a duration (use e.g. 500ms, 5s, 2m, 1h; no negatives)", src,
                    val);
            return DD_EINVAL;
        }
        *(int64_t *)field = ms;
        return 0;
    }
    case DD_OPT_DOUBLE: {
        char *end;
        errno = 0;
        double v = strtod(val, &end);
        /* strtod also reads "nan" and "inf", and a NaN passes "v < 0". */
        if (errno || *end || end == val || !isfinite(v) || v < 0) {
            dd_msgf(err, errlen, "%s '%s': not a finite non-negative number", src, val);
            return DD_EINVAL;
        }
        *(double *)field = v;
        return 0;
    }
    case DD_OPT_DISPATCHER: {
        const char *slash = strchr(val, '/');
        if (!slash || slash == val || slash[1] == '\0') {
            dd_msgf(err, errlen, "%s '%s': expected PROJECT/QUEUE (both non-empty)", src, val);
            return DD_EINVAL;
        }
        if (cfg->ndispatchers == DD_MAX_DISPATCHERS) {
            dd_msgf(err, errlen, "%s: at most %d dispatchers per process", src,
                    DD_MAX_DISPATCHERS);
            return DD_EINVAL;
        }
        for (int i = 0; i < cfg->ndispatchers; i++)
            if (strcmp(cfg->dispatchers[i], val) == 0)
                return 0; /* the same dispatcher twice is one dispatcher */
        cfg->dispatchers[cfg->ndispatchers++] = val;
        return 0;
    }
    }
    return DD_EINVAL;
}

int dd_config_parse(dd_config *cfg, const dd_opt *const *groups, int argc, char **argv,
                    int *npos, int *dashdash, char *err, size_t errlen)
{
    char src[128];
    /* Environment first, so flags override it. */
    for (int g = 0; groups[g]; g++) {
        for (const dd_opt *o = groups[g]; o->name; o++) {
            const char *v = o->env ? getenv(o->env) : NULL;
            if (!v || !*v)
                continue;
            if (o->type == DD_OPT_FLAG) {
                /* Flags from the environment: 1/true/yes set them. */
                if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes"))
                    *(bool *)((char *)cfg + o->offset) = true;
                continue;
            }
            dd_msgf(src, sizeof(src), "environment %s", o->env);
            int rc = dd_opt_set(cfg, o, v, src, err, errlen);
            if (rc < 0)
                return rc;
        }
    }
    int np = 0;
    if (dashdash)
        *dashdash = -1;
    for (int i = 0; i < argc; i++) {
        char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            if (dashdash)
                *dashdash = np;
            for (i++; i < argc; i++)
                argv[np++] = argv[i];
            break;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (a[0] == '-' && a[1] != '\0' && strcmp(a, "-h") != 0) {
                dd_msgf(err, errlen, "unknown option '%s' (options are --long-form; see --help)",
                        a);
                return DD_EINVAL;
            }
            if (strcmp(a, "-h") == 0) {
                cfg->help = true;
                continue;
            }
            argv[np++] = a;
            continue;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const dd_opt *o = dd_opt_find(groups, name, nlen);
        if (!o) {
            dd_msgf(err, errlen, "unknown option '--%.*s' (see --help)", (int)nlen, name);
            return DD_EINVAL;
        }
        const char *val = NULL;
        if (o->type == DD_OPT_FLAG) {
            if (eq) {
                dd_msgf(err, errlen, "option '--%s' takes no value", o->name);
                return DD_EINVAL;
            }
        } else if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            dd_msgf(err, errlen, "option '--%s' needs a value (%s)", o->name, o->metavar);
            return DD_EINVAL;
        }
        dd_msgf(src, sizeof(src), "--%s", o->name);
        int rc = dd_opt_set(cfg, o, val, src, err, errlen);
        if (rc < 0)
            return rc;
    }
    *npos = np;
    return 0;
}

int dd_config_validate(const dd_config *cfg, char *err, size_t errlen)
{
    if (strcmp(cfg->log_level, "debug") && strcmp(cfg->log_level, "info") &&
        strcmp(cfg->log_level, "warn") && strcmp(cfg->log_level, "error")) {
        dd_msgf(err, errlen, "--log-level '%s': use debug, info, warn or error", cfg->log_level);
        return DD_EINVAL;
    }
    if (strcmp(cfg->log_format, "logfmt") && strcmp(cfg->log_format, "json")) {
        dd_msgf(err, errlen, "--log-format '%s': use logfmt or json", cfg->log_format);
        return DD_EINVAL;
    }
    if (!cfg->state_dir || !*cfg->state_dir) {
        dd_msgf(err, errlen, "--state-dir: must not be empty");
        return DD_EINVAL;
    }
    if (!cfg->id_prefix || !*cfg->id_prefix) {
        dd_msgf(err, errlen, "--id-prefix: the id prefix must not be empty (default dispatcher-)");
        return DD_EINVAL;
    }
    if (cfg->heartbeat_interval_ms <= 0) {
        dd_msgf(err, errlen, "--heartbeat-interval must be above zero");
        return DD_EINVAL;
    }
    if (cfg->stale_threshold_ms <= 0) {
        dd_msgf(err, errlen, "--stale-threshold must be above zero");
        return DD_EINVAL;
    }
    if (cfg->heartbeats && cfg->stale_threshold_ms <= cfg->heartbeat_interval_ms) {
        char a[32], b[32];
        dd_duration_format(cfg->stale_threshold_ms, a, sizeof(a));
        dd_duration_format(cfg->heartbeat_interval_ms, b, sizeof(b));
        dd_msgf(err, errlen,
                "--stale-threshold (%s) must be longer than --heartbeat-interval (%s), "
                "or every healthy owner would look stale; 3x the interval is a good choice",
                a, b);
        return DD_EINVAL;
    }
    if (cfg->reconcile_interval_ms <= 0) {
        dd_msgf(err, errlen, "--reconcile-interval must be above zero");
        return DD_EINVAL;
    }
    if (cfg->temporal_timeout_ms <= 0 || cfg->stop_timeout_ms <= 0) {
        dd_msgf(err, errlen, "--temporal-timeout and --stop-timeout must be above zero");
        return DD_EINVAL;
    }
    return 0;
}

void dd_config_help(FILE *out, const dd_opt *const *groups)
{
    for (int g = 0; groups[g]; g++) {
        for (const dd_opt *o = groups[g]; o->name; o++) {
            char left[64];
            if (o->metavar)
                dd_msgf(left, sizeof(left), "--%s %s", o->name, o->metavar);
            else
                dd_msgf(left, sizeof(left), "--%s", o->name);
            fprintf(out, "  %-34s %s", left, o->help);
            if (o->env)
                fprintf(out, " [env %s]", o->env);
            fputc('\n', out);
        }
    }
}

int dd_config_dispatcher_split(const char *spec, char **project, char **queue)
{
    const char *slash = spec ? strchr(spec, '/') : NULL;
    *project = *queue = NULL;
    if (!slash || slash == spec || slash[1] == '\0')
        return DD_EINVAL;
    size_t pl = (size_t)(slash - spec);
    *project = dd_xmalloc(pl + 1);
    memcpy(*project, spec, pl);
    (*project)[pl] = '\0';
    *queue = dd_strdup(slash + 1);
    return 0;
}

int dd_config_secret(const char *env, const char *file, char **out, char *err, size_t errlen)
{
    *out = NULL;
    const char *v = env ? getenv(env) : NULL;
    if (v && *v) {
        *out = dd_strdup(v);
        return 0;
    }
    if (!file || !*file)
        return 0;
    FILE *f = fopen(file, "re");
    if (!f) {
        int e = errno;
        dd_msgf(err, errlen, "cannot open secret file '%s': %s", file, strerror(e));
        return -e;
    }
    /* getline, not a fixed buffer: a long secret cut short would fail
     * authentication with no hint why */
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    fclose(f);
    if (n > 0)
        line[strcspn(line, "\r\n")] = '\0';
    if (n <= 0 || !*line) {
        if (line) {
            explicit_bzero(line, cap);
            free(line);
        }
        dd_msgf(err, errlen, "secret file '%s' is empty", file);
        return DD_EINVAL;
    }
    *out = line;
    return 0;
}
