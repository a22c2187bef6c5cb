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
    {"temporal-max-in-flight", "DISPATCHD_TEMPORAL_MAX_IN_FLIGHT", DD_OPT_COUNT,
     O(temporal_max_in_flight), "N",
     "Temporal requests on the wire at once, long polls aside; the rest wait in order "
     "(default 32, 1 to 1024; docs/scale.md)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

const dd_opt dd_opts_redis[] = {
    {"redis-url", "DISPATCHD_REDIS_URL", DD_OPT_STR, O(redis_url), "URL",
     "redis://[[user]:password@]host:port/db, rediss://... (TLS) or unix:///path (default "
     "redis://127.0.0.1:6379/0); a Redis Cluster node is refused"},
    {"redis-ca-file", "DISPATCHD_REDIS_CA_FILE", DD_OPT_STR, O(redis_ca_file), "FILE",
     "CA bundle to verify the Redis server (rediss:// URLs; default: the system store)"},
    {"redis-cert-file", "DISPATCHD_REDIS_CERT_FILE", DD_OPT_STR, O(redis_cert_file), "FILE",
     "client certificate for Redis mTLS (rediss://)"},
    {"redis-key-file", "DISPATCHD_REDIS_KEY_FILE", DD_OPT_STR, O(redis_key_file), "FILE",
     "client private key for Redis mTLS (default: in --redis-cert-file)"},
    {"redis-username", "DISPATCHD_REDIS_USERNAME", DD_OPT_STR, O(redis_username), "NAME",
     "Redis 6 ACL user to log in as (AUTH NAME PASSWORD; needs the password; rules in "
     "docs/redis.md)"},
    {"redis-password-file", "DISPATCHD_REDIS_PASSWORD_FILE", DD_OPT_STR, O(redis_password_file),
     "FILE", "file holding the Redis password (or env DISPATCHD_REDIS_PASSWORD)"},
    {"redis-sentinel", "DISPATCHD_REDIS_SENTINEL", DD_OPT_STR, O(redis_sentinel),
     "HOST:PORT[,...]", "find the Redis primary through these sentinels (instead of "
     "--redis-url; port default 26379; needs --redis-master-name; docs/redis.md)"},
    {"redis-master-name", "DISPATCHD_REDIS_MASTER_NAME", DD_OPT_STR, O(redis_master_name),
     "NAME", "the master name the sentinels monitor (with --redis-sentinel)"},
    {"redis-db", "DISPATCHD_REDIS_DB", DD_OPT_COUNT, O(redis_db), "N",
     "the database number with --redis-sentinel (default 0; a --redis-url carries its own)"},
    {"redis-sentinel-password-file", "DISPATCHD_REDIS_SENTINEL_PASSWORD_FILE", DD_OPT_STR,
     O(redis_sentinel_password_file), "FILE",
     "file holding the sentinels' password (or env DISPATCHD_REDIS_SENTINEL_PASSWORD; "
     "none by default)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

/* run only: the commands that claim and heartbeat */
const dd_opt dd_opts_redis_wait[] = {
    {"redis-wait-replicas", "DISPATCHD_REDIS_WAIT_REPLICAS", DD_OPT_COUNT,
     O(redis_wait_replicas), "N",
     "a claim or heartbeat counts only once WAIT confirms N replicas have it (default 0: "
     "off; what is safe without it: docs/redis.md)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

/* For commands that read Redis but do not run the stack (status, workers):
 * the same meaning as `up --redis-port`, so its Redis is found without
 * building a URL by hand. dd_config_resolve_redis settles it against
 * --redis-url. */
const dd_opt dd_opts_redis_port[] = {
    {"redis-port", "DISPATCHD_REDIS_PORT", DD_OPT_PORT, O(redis_port), "PORT",
     "the local Redis on 127.0.0.1:PORT, as `up --redis-port` runs it (instead of --redis-url)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

/* Small groups, each option in exactly one, composed per command in main.c. */
const dd_opt dd_opts_dispatcher[] = {
    {"dispatcher", "DISPATCHD_DISPATCHER", DD_OPT_DISPATCHER, O(dispatchers), "PROJECT/QUEUE",
     "a dispatcher (repeatable where a command serves several); the environment variable "
     "holds a comma-separated list, and any --dispatcher flag replaces that whole list"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

const dd_opt dd_opts_server_id[] = {
    {"server-id", "DISPATCHD_SERVER_ID", DD_OPT_STR, O(server_id), "ID",
     "this host's (or worker's) identity (default: hostname-pid)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

/* last-will: the same setting, read differently (no pid of its own to use) */
const dd_opt dd_opts_last_will_server_id[] = {
    {"server-id", "DISPATCHD_SERVER_ID", DD_OPT_STR, O(server_id), "ID",
     "the dead dispatchd's server id (default: the one `run` wrote to "
     "$RUNTIME_DIRECTORY/server_id)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

const dd_opt dd_opts_heartbeat[] = {
    {"heartbeat-interval", "DISPATCHD_HEARTBEAT_INTERVAL", DD_OPT_DURATION,
     O(heartbeat_interval_ms), "DUR", "how often a heartbeat is written (default 5s)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

const dd_opt dd_opts_stale[] = {
    {"stale-threshold", "DISPATCHD_STALE_THRESHOLD", DD_OPT_DURATION, O(stale_threshold_ms),
     "DUR", "heartbeat age after which a record is stale (default 15s, at least 1s; the "
     "owner's own threshold, in its record, wins when longer)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

const dd_opt dd_opts_reconcile[] = {
    {"reconcile-interval", "DISPATCHD_RECONCILE_INTERVAL", DD_OPT_DURATION,
     O(reconcile_interval_ms), "DUR", "period of the full reconcile cycle (default 60s)"},
    {"terminate-rate", "DISPATCHD_TERMINATE_RATE", DD_OPT_DOUBLE, O(terminate_rate), "N",
     "max stale terminations per second (default 10)"},
    {"reconcile-lanes", "DISPATCHD_RECONCILE_LANES", DD_OPT_COUNT, O(reconcile_lanes), "N",
     "stale records a reconcile cycle works on at once (default 16, 1 to 256)"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

const dd_opt dd_opts_loss_watch[] = {
    {"long-poll-budget", "DISPATCHD_LONG_POLL_BUDGET", DD_OPT_COUNT, O(long_poll_budget), "N",
     "while the fleet has fewer than N dispatcher records, each owner holds a long poll on its "
     "run's close event; at N or more the host's owners drop them and learn of losses from "
     "takeover notices and one batched visibility check per heartbeat interval, taking them "
     "again below 90% of N (default 500; 0 never long-polls; Temporal allows ~1,200 long polls "
     "per namespace: docs/scale.md)"},
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

const dd_opt dd_opts_child[] = {
    {"child-max-restarts", "DISPATCHD_CHILD_MAX_RESTARTS", DD_OPT_COUNT, O(child_max_restarts),
     "N",
     "after N restarts of the child command in a row that each exited within 10s of its "
     "start, the next such exit releases the dispatcher so another host can run it, and "
     "this host stands by for 30s (doubling to 10m) before competing again; 0 never "
     "releases (default 5)"},
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
    cfg->child_max_restarts = 5;
    cfg->long_poll_budget = 500;
    cfg->temporal_url = "";
    cfg->namespace_ = "default";
    cfg->temporal_timeout_ms = 10000;
    cfg->temporal_max_in_flight = 32;
    cfg->redis_url = "";
    cfg->server_id = "";
    cfg->heartbeat_interval_ms = 5000;
    cfg->stale_threshold_ms = 15000;
    cfg->reconcile_interval_ms = 60000;
    cfg->terminate_rate = 10;
    cfg->reconcile_lanes = 16;
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
    free(cfg->dispatcher_env);
    cfg->dispatcher_env = NULL;
    cfg->ndispatchers = 0;
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
    case DD_OPT_COUNT: {
        char *end;
        errno = 0;
        long v = strtol(val, &end, 10);
        if (errno || *end || end == val || v < 0 || v > 1000000) {
            dd_msgf(err, errlen, "%s '%s': not a count (a whole number of 0 or more; --help gives this option's range)",
                    src, val);
            return DD_EINVAL;
        }
        *(int *)field = (int)v;
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

/* Remembers that option o was set from src (the last setting wins). */
static void dd_config_note(dd_config *cfg, const dd_opt *o, dd_opt_src src, const char *value)
{
    for (int i = 0; i < cfg->ngiven; i++)
        if (!strcmp(cfg->given[i].name, o->name)) {
            cfg->given[i].src = src;
            cfg->given[i].value = value;
            cfg->given[i].env = o->env;
            return;
        }
    if (cfg->ngiven < DD_MAX_GIVEN) {
        cfg->given[cfg->ngiven].name = o->name;
        cfg->given[cfg->ngiven].src = src;
        cfg->given[cfg->ngiven].value = value;
        cfg->given[cfg->ngiven].env = o->env;
        cfg->ngiven++;
    }
}

dd_opt_src dd_config_source(const dd_config *cfg, const char *name)
{
    for (int i = 0; i < cfg->ngiven; i++)
        if (!strcmp(cfg->given[i].name, name))
            return cfg->given[i].src;
    return DD_SRC_DEFAULT;
}

static int dd_is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* DISPATCHD_DISPATCHER: a comma-separated list of PROJECT/QUEUE entries.
 * A comma always separates (there is no escape): a dispatcher whose name
 * holds a comma, or starts or ends with a blank (blanks around entries are
 * trimmed), can only be given with --dispatcher. An empty entry is refused:
 * "a/b,,c/d" or a trailing comma is more likely a mistake than a wish. */
static int dd_config_env_dispatchers(dd_config *cfg, const dd_opt *o, const char *v, char *err,
                                     size_t errlen)
{
    free(cfg->dispatcher_env);
    cfg->dispatcher_env = dd_strdup(v);
    char src[160];
    int idx = 0;
    for (char *p = cfg->dispatcher_env;; idx++) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        while (dd_is_blank(*p))
            p++;
        size_t n = strlen(p);
        while (n > 0 && dd_is_blank(p[n - 1]))
            p[--n] = '\0';
        if (n == 0) {
            dd_msgf(err, errlen,
                    "environment %s='%s': entry %d is empty (a comma-separated list of "
                    "PROJECT/QUEUE; no empty entries, no trailing comma)",
                    o->env, v, idx + 1);
            return DD_EINVAL;
        }
        dd_msgf(src, sizeof(src), "environment %s entry %d", o->env, idx + 1);
        int rc = dd_opt_set(cfg, o, p, src, err, errlen);
        if (rc < 0)
            return rc;
        if (!comma)
            break;
        p = comma + 1;
    }
    return 0;
}

int dd_config_parse(dd_config *cfg, const dd_opt *const *groups, int argc, char **argv,
                    int *npos, int *dashdash, char *err, size_t errlen)
{
    char src[128];
    const dd_opt *env_disp = NULL;
    const char *env_disp_val = NULL;
    /* Environment first, so flags override it. */
    for (int g = 0; groups[g]; g++) {
        for (const dd_opt *o = groups[g]; o->name; o++) {
            const char *v = o->env ? getenv(o->env) : NULL;
            if (!v || !*v)
                continue;
            if (o->type == DD_OPT_FLAG) {
                /* Flags from the environment: 1/true/yes set them. */
                if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes")) {
                    *(bool *)((char *)cfg + o->offset) = true;
                    dd_config_note(cfg, o, DD_SRC_ENV, v);
                }
                continue;
            }
            if (o->type == DD_OPT_DISPATCHER) {
                /* read after the flags, and only if none is a --dispatcher */
                env_disp = o;
                env_disp_val = v;
                continue;
            }
            dd_msgf(src, sizeof(src), "environment %s", o->env);
            int rc = dd_opt_set(cfg, o, v, src, err, errlen);
            if (rc < 0)
                return rc;
            dd_config_note(cfg, o, DD_SRC_ENV, v);
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
        dd_config_note(cfg, o, DD_SRC_FLAG, val);
    }
    /* Flags override the environment: with any --dispatcher flag the list
     * in DISPATCHD_DISPATCHER is ignored, whole (not even checked). */
    if (env_disp && dd_config_source(cfg, env_disp->name) != DD_SRC_FLAG) {
        int rc = dd_config_env_dispatchers(cfg, env_disp, env_disp_val, err, errlen);
        if (rc < 0)
            return rc;
        dd_config_note(cfg, env_disp, DD_SRC_ENV, env_disp_val);
    }
    *npos = np;
    return 0;
}

/* "--NAME", or "environment VAR" when the value came from there: a message
 * must name what the user actually set. */
static const char *dd_config_what(const dd_config *cfg, const char *name, char *buf, size_t len)
{
    for (int i = 0; i < cfg->ngiven; i++)
        if (!strcmp(cfg->given[i].name, name) && cfg->given[i].src == DD_SRC_ENV &&
            cfg->given[i].env) {
            dd_msgf(buf, len, "environment %s", cfg->given[i].env);
            return buf;
        }
    dd_msgf(buf, len, "--%s", name);
    return buf;
}

int dd_config_validate(const dd_config *cfg, char *err, size_t errlen)
{
    char w[96];
    if (strcmp(cfg->log_level, "debug") && strcmp(cfg->log_level, "info") &&
        strcmp(cfg->log_level, "warn") && strcmp(cfg->log_level, "error")) {
        dd_msgf(err, errlen, "%s '%s': use debug, info, warn or error",
                dd_config_what(cfg, "log-level", w, sizeof(w)), cfg->log_level);
        return DD_EINVAL;
    }
    if (strcmp(cfg->log_format, "logfmt") && strcmp(cfg->log_format, "json")) {
        dd_msgf(err, errlen, "--log-format '%s': use logfmt or json", cfg->log_format);
        return DD_EINVAL;
    }
    if (!cfg->state_dir || !*cfg->state_dir) {
        dd_msgf(err, errlen, "%s: must not be empty",
                dd_config_what(cfg, "state-dir", w, sizeof(w)));
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
    if (cfg->stale_threshold_ms < DD_STALE_THRESHOLD_MIN_MS) {
        /* A floor for every command that judges records (run, up, reconcile,
         * status): records are judged by the longer of this and their
         * owner's own ttl_ms, so a tiny value cannot make anyone faster, and
         * an owner on one would heartbeat Redis many times a second. */
        char a[32], b[32];
        dd_duration_format(cfg->stale_threshold_ms, a, sizeof(a));
        dd_duration_format(DD_STALE_THRESHOLD_MIN_MS, b, sizeof(b));
        dd_msgf(err, errlen,
                "--stale-threshold %s is below the floor of %s: use the fleet's threshold "
                "(default 15s); a record is judged stale only past the longer of this and its "
                "owner's own threshold anyway",
                a, b);
        return DD_EINVAL;
    }
    if (cfg->reconcile_interval_ms <= 0) {
        dd_msgf(err, errlen, "--reconcile-interval must be above zero");
        return DD_EINVAL;
    }
    if (cfg->reconcile_lanes < 1 || cfg->reconcile_lanes > 256) {
        /* each lane may hold a Temporal call: past the client's own cap
         * (32 in flight) they only queue there (docs/reconcile.md, Lanes) */
        dd_msgf(err, errlen, "%s %d: use 1 to 256 (default 16)",
                dd_config_what(cfg, "reconcile-lanes", w, sizeof(w)), cfg->reconcile_lanes);
        return DD_EINVAL;
    }
    if (cfg->temporal_timeout_ms <= 0 || cfg->stop_timeout_ms <= 0) {
        dd_msgf(err, errlen, "--temporal-timeout and --stop-timeout must be above zero");
        return DD_EINVAL;
    }
    if (cfg->temporal_max_in_flight < 1 || cfg->temporal_max_in_flight > 1024) {
        dd_msgf(err, errlen,
                "%s %d is outside 1 to 1024 (default 32: what one "
                "host sends Temporal at once; docs/scale.md)",
                dd_config_what(cfg, "temporal-max-in-flight", w, sizeof(w)),
                cfg->temporal_max_in_flight);
        return DD_EINVAL;
    }
    return 0;
}

void dd_config_describe(const dd_config *cfg, const dd_opt *const *groups, const char *name,
                        char *out, size_t len)
{
    if (len)
        out[0] = '\0';
    for (int i = 0; i < cfg->ngiven; i++) {
        if (strcmp(cfg->given[i].name, name))
            continue;
        const dd_opt *o = dd_opt_find(groups, name, strlen(name));
        if (cfg->given[i].src == DD_SRC_ENV && o && o->env)
            dd_msgf(out, len, "%s=%s (environment)", o->env, cfg->given[i].value);
        else if (cfg->given[i].value)
            dd_msgf(out, len, "--%s %s", name, cfg->given[i].value);
        else
            dd_msgf(out, len, "--%s", name);
        return;
    }
}

static bool dd_has_group(const dd_opt *const *groups, const dd_opt *g)
{
    for (int i = 0; groups[i]; i++)
        if (groups[i] == g)
            return true;
    return false;
}

int dd_config_check_ports(const dd_config *cfg, const dd_opt *const *groups,
                          const dd_port_use *extra, int nextra, char *err, size_t errlen)
{
    dd_port_use use[8];
    int n = 0;
    if (dd_has_group(groups, dd_opts_stack)) {
        use[n++] = (dd_port_use){"redis-port", cfg->redis_port};
        use[n++] = (dd_port_use){"temporal-port", cfg->temporal_port};
        use[n++] = (dd_port_use){"temporal-http-port", cfg->temporal_http_port};
    }
    for (int i = 0; i < nextra && n < (int)(sizeof(use) / sizeof(use[0])); i++)
        use[n++] = extra[i];
    for (int i = 0; i < n; i++) {
        for (int j = i + 1; j < n; j++) {
            if (use[i].port <= 0 || use[i].port != use[j].port)
                continue;
            char a[160], b[160];
            const dd_port_use *u[2] = {&use[i], &use[j]};
            char *d[2] = {a, b};
            for (int k = 0; k < 2; k++) {
                dd_config_describe(cfg, groups, u[k]->name, d[k], sizeof(a));
                if (!d[k][0])
                    dd_msgf(d[k], sizeof(a), "--%s (default %d)", u[k]->name, u[k]->port);
            }
            dd_msgf(err, errlen,
                    "%s and %s: both use port %d on 127.0.0.1; every service needs its own "
                    "port, so change one of them",
                    a, b, use[i].port);
            return DD_EINVAL;
        }
    }
    return 0;
}

/* True when url is redis://[userinfo@]127.0.0.1:PORT or localhost:PORT,
 * optionally followed by /DB. */
static bool dd_redis_url_is_local_port(const char *url, int port)
{
    if (strncmp(url, "redis://", 8) != 0)
        return false;
    const char *h = url + 8;
    const char *slash = strchr(h, '/');
    const char *at = strchr(h, '@');
    if (at && (!slash || at < slash))
        h = at + 1;
    const char *colon = strchr(h, ':');
    if (!colon || (slash && colon > slash))
        return false;
    size_t hl = (size_t)(colon - h);
    if (!((hl == 9 && !strncmp(h, "127.0.0.1", 9)) || (hl == 9 && !strncmp(h, "localhost", 9))))
        return false;
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    return !errno && end != colon + 1 && (*end == '\0' || *end == '/') && p == port;
}

/* --redis-sentinel and --redis-master-name go together, and replace
 * --redis-url / --redis-port (the address comes from the sentinels; db,
 * user and password from --redis-db, --redis-username and the password
 * options). */
static int dd_config_check_sentinel(dd_config *cfg, const dd_opt *const *groups, char *err,
                                    size_t errlen)
{
    if (!dd_has_group(groups, dd_opts_redis))
        return 0;
    bool sen = cfg->redis_sentinel && *cfg->redis_sentinel;
    bool name = cfg->redis_master_name && *cfg->redis_master_name;
    if (sen != name) {
        dd_msgf(err, errlen, "%s needs %s (give both or neither)",
                sen ? "--redis-sentinel" : "--redis-master-name",
                sen ? "--redis-master-name" : "--redis-sentinel");
        return DD_EINVAL;
    }
    if (!sen) {
        if (dd_config_source(cfg, "redis-db") != DD_SRC_DEFAULT) {
            dd_msgf(err, errlen, "--redis-db goes with --redis-sentinel; with --redis-url put "
                                 "the db in the URL (redis://host:port/N)");
            return DD_EINVAL;
        }
        return 0;
    }
    if (cfg->redis_url && *cfg->redis_url) {
        dd_msgf(err, errlen, "--redis-sentinel and --redis-url both name the Redis to use; give "
                             "only one (with Sentinel: --redis-db, --redis-username and the "
                             "password options say the rest)");
        return DD_EINVAL;
    }
    if (dd_has_group(groups, dd_opts_redis_port) &&
        dd_config_source(cfg, "redis-port") != DD_SRC_DEFAULT) {
        dd_msgf(err, errlen, "--redis-sentinel and --redis-port both name the Redis to use; "
                             "give only one");
        return DD_EINVAL;
    }
    return 0;
}

int dd_config_resolve_redis(dd_config *cfg, const dd_opt *const *groups, char *err,
                            size_t errlen)
{
    int rc = dd_config_check_sentinel(cfg, groups, err, errlen);
    if (rc < 0)
        return rc;
    if (!dd_has_group(groups, dd_opts_redis_port))
        return 0;
    dd_opt_src ps = dd_config_source(cfg, "redis-port");
    dd_opt_src us = cfg->redis_url && *cfg->redis_url ? dd_config_source(cfg, "redis-url")
                                                       : DD_SRC_DEFAULT;
    if (ps == DD_SRC_DEFAULT || us < ps) {
        /* no port given (the URL or the default applies), or the port is a
         * flag and the URL only came from the environment */
        if (ps != DD_SRC_DEFAULT)
            cfg->redis_url = "";
        return 0;
    }
    if (us > ps || dd_redis_url_is_local_port(cfg->redis_url, cfg->redis_port))
        return 0; /* the URL is a flag over an env port, or both say the same */
    /* Name the URL without any user:password in it. */
    const char *url = cfg->redis_url;
    const char *scheme = strstr(url, "://");
    const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
    const char *slash = scheme ? strchr(scheme + 3, '/') : NULL;
    char shown[300];
    if (at && (!slash || at < slash))
        dd_msgf(shown, sizeof(shown), "%.*s***@%s", (int)(scheme + 3 - url), url, at + 1);
    else
        dd_msgf(shown, sizeof(shown), "%s", url);
    const char *pn = ps == DD_SRC_FLAG ? "--redis-port" : "DISPATCHD_REDIS_PORT";
    const char *un = ps == DD_SRC_FLAG ? "--redis-url" : "DISPATCHD_REDIS_URL";
    dd_msgf(err, errlen,
            "%s %d and %s '%s' name different Redis servers (%s P means "
            "redis://127.0.0.1:P/0); give only one of them",
            pn, cfg->redis_port, un, shown, pn);
    return DD_EINVAL;
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
