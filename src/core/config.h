/* config.h - every knob of dispatchd, and the table-driven option parser.
 *
 * Each knob is a flag (--name VALUE or --name=VALUE) with an optional
 * environment variable; the flag wins over the environment, which wins over
 * the default. Commands pick the option groups they accept, so `--help` of a
 * command lists exactly what it understands and anything else is refused.
 * Secrets are never accepted on the command line: only a file or env. */
#ifndef DD_CORE_CONFIG_H
#define DD_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Per process: one host was measured owning 1,000 (bench/scale, bench/RESULTS.md). */
#define DD_MAX_DISPATCHERS 5000
/* The smallest --stale-threshold any command accepts (config.c says why). */
#define DD_STALE_THRESHOLD_MIN_MS 1000

#define DD_MAX_GIVEN 64 /* distinct options one command can be given */

/* Where an option's value came from (flags override the environment). */
typedef enum dd_opt_src {
    DD_SRC_DEFAULT = 0,
    DD_SRC_ENV = 1,
    DD_SRC_FLAG = 2,
} dd_opt_src;

struct dd_opt;

typedef struct dd_config {
    /* common */
    const char *log_level;
    const char *log_format; /* "logfmt" or "json" */
    const char *state_dir;
    char *state_dir_default; /* owned: the computed default state_dir points to */
    bool json;
    bool help;

    /* local stack */
    int redis_port;
    int temporal_port;
    int temporal_http_port;
    const char *temporal_bin; /* path to the temporal CLI, "" = search */
    const char *redis_bin;
    int64_t stop_timeout_ms;

    /* Temporal client */
    const char *temporal_url; /* http://127.0.0.1:7243 */
    const char *namespace_;
    const char *temporal_ca_file;
    const char *temporal_cert_file;
    const char *temporal_key_file;
    const char *temporal_api_key_file; /* or env DISPATCHD_TEMPORAL_API_KEY */
    int64_t temporal_timeout_ms;
    int temporal_max_in_flight; /* Temporal requests on the wire at once, long polls aside */

    /* Redis */
    const char *redis_url;
    const char *redis_password_file; /* or env DISPATCHD_REDIS_PASSWORD */
    const char *redis_username;      /* Redis 6 ACL user; NULL: the URL's, if any */
    const char *redis_ca_file;       /* rediss://: CA bundle; NULL: the system store */
    const char *redis_cert_file;     /* rediss:// mTLS: client certificate */
    const char *redis_key_file;      /* its key; NULL: in redis_cert_file */
    const char *redis_sentinel;      /* "host:port,..." (docs/redis.md); "": none */
    const char *redis_master_name;   /* with redis_sentinel */
    const char *redis_sentinel_password_file; /* or env DISPATCHD_REDIS_SENTINEL_PASSWORD */
    int redis_db;                    /* with redis_sentinel (a URL carries its own) */
    int redis_wait_replicas;         /* run: WAIT N after claim/heartbeat; 0 off */

    /* ownership / reconciliation */
    const char *server_id;
    /* "project/queue": from --dispatcher (argv) or the comma-separated list in
     * DISPATCHD_DISPATCHER (pointing into dispatcher_env); any --dispatcher
     * flag replaces the whole environment list. */
    const char *dispatchers[DD_MAX_DISPATCHERS];
    int ndispatchers;
    char *dispatcher_env; /* owned: the environment list, split in place */
    int64_t heartbeat_interval_ms;
    int64_t stale_threshold_ms; /* at least DD_STALE_THRESHOLD_MIN_MS */
    int64_t reconcile_interval_ms;
    double terminate_rate;
    int reconcile_lanes; /* reconciler max_inflight, 1..256 */
    bool loop;
    bool legacy_takeover;
    bool heartbeats; /* the command heartbeats: validate threshold vs interval */

    /* what runs under the dispatcher's workflow ID (docs/workflows.md) */
    const char *marker_task_queue;     /* marker mode: the queue markers run on */
    const char *id_prefix;             /* workflow ID prefix (owner/id.h), fleet-wide */
    const char *workflow_type;         /* "": marker mode; else the user's type */
    const char *workflow_task_queue;   /* "": the dispatcher's own queue */
    const char *input_json;            /* workflow input (one JSON value) or "" */
    const char *input_file;            /* ... read from a file */
    const char *input_server_id_field; /* set this field of the input object to the server id */
    const char *on_workflow_exit;      /* "restart" or "release" */
    const char *workers_signal;        /* signal name for worker changes, "off", or "" (mode default) */
    int child_max_restarts;            /* run: quick child exits before release (0: never) */
    int long_poll_budget;              /* run/up: fleet records below which owners long-poll */

    /* metrics */
    const char *metrics_listen;
    const char *reconcile_metrics_listen; /* reconcile --loop: opt-in, NULL: none */

    /* which options were set, and from where (dd_config_source) */
    struct {
        const char *name; /* the option's long name (static) */
        dd_opt_src src;
        const char *value; /* as given (argv or environment) */
        const char *env;   /* the option's environment variable, or NULL */
    } given[DD_MAX_GIVEN];
    int ngiven;
} dd_config;

typedef enum dd_opt_type {
    DD_OPT_STR,
    DD_OPT_PORT,
    DD_OPT_DURATION,
    DD_OPT_DOUBLE,
    DD_OPT_FLAG,
    DD_OPT_DISPATCHER, /* repeatable "project/queue" */
    DD_OPT_COUNT,      /* an int, 0 or more */
} dd_opt_type;

typedef struct dd_opt {
    const char *name; /* long name without the dashes */
    const char *env;  /* environment variable or NULL */
    dd_opt_type type;
    size_t offset; /* offsetof(dd_config, field) */
    const char *metavar;
    const char *help;
} dd_opt;

/* Option groups; each is terminated by an entry with name == NULL. */
extern const dd_opt dd_opts_common[];
extern const dd_opt dd_opts_state[];
extern const dd_opt dd_opts_json[];
extern const dd_opt dd_opts_stack[];
extern const dd_opt dd_opts_temporal[];
extern const dd_opt dd_opts_redis[];
extern const dd_opt dd_opts_redis_port[];
extern const dd_opt dd_opts_redis_wait[];
extern const dd_opt dd_opts_metrics[];
extern const dd_opt dd_opts_reconcile_metrics[];
extern const dd_opt dd_opts_dispatcher[];
extern const dd_opt dd_opts_server_id[];
extern const dd_opt dd_opts_last_will_server_id[];
extern const dd_opt dd_opts_heartbeat[];
extern const dd_opt dd_opts_stale[];
extern const dd_opt dd_opts_reconcile[];
extern const dd_opt dd_opts_takeover[];
extern const dd_opt dd_opts_workflow[];
extern const dd_opt dd_opts_workflow_run[];
extern const dd_opt dd_opts_id_prefix[];
extern const dd_opt dd_opts_stack_http[];
extern const dd_opt dd_opts_stop[];
extern const dd_opt dd_opts_loop[];
extern const dd_opt dd_opts_child[];
extern const dd_opt dd_opts_loss_watch[];

/* Fills defaults (state dir from $XDG_STATE_HOME or ~/.local/state). */
void dd_config_defaults(dd_config *cfg);
void dd_config_release(dd_config *cfg);

/* Parses argv[0..argc) against the NULL-terminated list of groups. Applies
 * env first, then flags. Positional arguments are moved to the front of argv
 * and counted in *npos; everything after "--" is positional too and *dashdash
 * (if not NULL) gets the index in argv of the first of them (-1 if none).
 * On error returns DD_EINVAL with a message in err (a caller-sized buffer). */
int dd_config_parse(dd_config *cfg, const dd_opt *const *groups, int argc, char **argv,
                    int *npos, int *dashdash, char *err, size_t errlen);
/* Cross-field checks (threshold above heartbeat interval, ...). */
int dd_config_validate(const dd_config *cfg, char *err, size_t errlen);
/* Where option NAME (long name, no dashes) got its value: a flag, the
 * environment, or the default when it was not given (or is not an option of
 * this command). */
dd_opt_src dd_config_source(const dd_config *cfg, const char *name);
/* "--redis-port 7000" or "DISPATCHD_REDIS_PORT=7000", for messages naming
 * where a value came from. Writes "" for an option that was not given. */
void dd_config_describe(const dd_config *cfg, const dd_opt *const *groups, const char *name,
                        char *out, size_t len);
/* Local ports that must differ: --redis-port, --temporal-port and
 * --temporal-http-port (when the command has the stack group), plus any
 * extra (name, port) pairs the caller adds (e.g. the metrics port of `up`).
 * DD_EINVAL with both options named when two are the same port. */
typedef struct dd_port_use {
    const char *name; /* option long name */
    int port;
} dd_port_use;
int dd_config_check_ports(const dd_config *cfg, const dd_opt *const *groups,
                          const dd_port_use *extra, int nextra, char *err, size_t errlen);
/* --redis-port (status, workers) against --redis-url: a flag beats the
 * environment; given at the same level, the URL must name 127.0.0.1:PORT (or
 * localhost:PORT), else DD_EINVAL naming both. On success cfg->redis_url is
 * "" when the port is the one to use. */
int dd_config_resolve_redis(dd_config *cfg, const dd_opt *const *groups, char *err,
                            size_t errlen);
void dd_config_help(FILE *out, const dd_opt *const *groups);

/* Splits a "project/queue" value at its first '/' (as DD_OPT_DISPATCHER
 * accepts it) into heap strings the caller frees, whole: a name is never
 * cut, so two long distinct names stay two dispatchers. DD_EINVAL (both
 * NULL) unless both parts are non-empty. */
int dd_config_dispatcher_split(const char *spec, char **project, char **queue);

/* Reads a secret from env var (if set) or a file (first line, trailing
 * newline stripped, any length). *out is NULL when neither is configured.
 * Caller frees. */
int dd_config_secret(const char *env, const char *file, char **out, char *err, size_t errlen);

#endif
