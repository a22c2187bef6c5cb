/* service.c - the two servers of the local stack and how to run them.
 *
 * Both bind 127.0.0.1 only and keep their data under the state dir, so a
 * restarted Temporal dev server still has its workflows and a restarted
 * Redis its records. */
#include "proc/proc.h"

#include "core/buf.h"
#include "core/config.h"
#include "core/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const dd_service_names[DD_SVC_COUNT] = {"redis", "temporal"};

int dd_service_kind_parse(const char *name)
{
    for (int i = 0; i < DD_SVC_COUNT; i++)
        if (strcmp(name, dd_service_names[i]) == 0)
            return i;
    return DD_EINVAL;
}

/* mkdir -p for one path (of any length: a cut copy would create another
 * directory than the one asked for). */
static int dd_mkdirs(const char *path)
{
    char *tmp = dd_strdup(path);
    int rc = 0;
    for (char *p = tmp + 1; *p && rc == 0; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            rc = -errno;
        *p = '/';
    }
    if (rc == 0 && mkdir(tmp, 0755) < 0 && errno != EEXIST)
        rc = -errno;
    free(tmp);
    return rc;
}

/* Resolves a program: an explicit path must exist; a bare name is searched
 * in $PATH. Returns a heap string or NULL. */
static char *dd_which(const char *prog)
{
    if (strchr(prog, '/'))
        return access(prog, X_OK) == 0 ? dd_strdup(prog) : NULL;
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/local/bin:/usr/bin:/bin";
    char *copy = dd_strdup(path), *save = NULL, *found = NULL;
    for (char *dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
        char *cand = dd_strdupf("%s/%s", dir, prog);
        if (access(cand, X_OK) == 0)
            found = cand;
        else
            free(cand);
    }
    free(copy);
    return found;
}

static char *dd_find_temporal(const dd_config *cfg, const char *self_dir)
{
    if (cfg->temporal_bin && *cfg->temporal_bin)
        return dd_which(cfg->temporal_bin);
    /* The install script builds it into <repo>/.tools/bin; the binary lives
     * in <repo>/build or <repo>/build-*. */
    const char *rel[] = {"/../.tools/bin/temporal", "/.tools/bin/temporal",
                         "/../../.tools/bin/temporal"};
    for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
        char *cand = dd_strdupf("%s%s", self_dir, rel[i]);
        if (access(cand, X_OK) == 0) {
            /* realpath(.., NULL) allocates: with a buffer it needs PATH_MAX bytes */
            char *real = realpath(cand, NULL);
            if (real) {
                free(cand);
                return real;
            }
            return cand;
        }
        free(cand);
    }
    return dd_which("temporal");
}

static void dd_arg(dd_service *s, int *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void dd_arg(dd_service *s, int *n, const char *fmt, ...)
{
    dd_buf b = DD_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    dd_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    s->argv[(*n)++] = dd_buf_detach(&b);
    s->argv[*n] = NULL;
}

int dd_service_init(dd_service *s, dd_service_kind kind, const dd_config *cfg,
                    const char *self_dir, bool need_binary, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->kind = kind;
    s->name = dd_service_names[kind];
    const char *st = cfg->state_dir;
    int rc = dd_mkdirs(st);
    if (rc == 0) {
        char *probe = dd_strdupf("%s/.writable", st);
        FILE *f = fopen(probe, "we");
        if (!f)
            rc = -errno;
        else {
            fclose(f);
            unlink(probe);
        }
        free(probe);
    }
    if (rc < 0) {
        dd_msgf(err, errlen,
                "state dir '%s' is not writable: %s; choose another with --state-dir", st,
                strerror(-rc));
        return DD_EINVAL; /* the user's input: exit 2 */
    }
    s->lock_path = dd_strdupf("%s/%s.lock", st, s->name);
    s->status_path = dd_strdupf("%s/%s.status", st, s->name);
    s->log_path = dd_strdupf("%s/%s.log", st, s->name);
    s->data_dir = dd_strdupf("%s/%s", st, s->name);
    if ((rc = dd_mkdirs(s->data_dir)) < 0) {
        dd_msgf(err, errlen, "cannot create '%s': %s; choose another --state-dir", s->data_dir,
                strerror(-rc));
        dd_service_release(s);
        return DD_EINVAL;
    }

    int n = 0;
    if (kind == DD_SVC_REDIS) {
        char *bin = dd_which(cfg->redis_bin);
        if (!bin && !need_binary)
            bin = dd_strdup(cfg->redis_bin);
        if (!bin) {
            dd_msgf(err, errlen,
                    "redis-server not found ('%s'); install it with scripts/install-deps.sh "
                    "(Debian package redis-server) or point --redis-bin at it",
                    cfg->redis_bin);
            dd_service_release(s);
            /* a path the user gave is bad input; a missing install is not */
            return dd_config_source(cfg, "redis-bin") ? DD_EINVAL : -ENOENT;
        }
        s->argv[n++] = bin;
        s->ports[s->nports++] = cfg->redis_port;
        s->probe_port = cfg->redis_port;
        s->probe_req = "PING\r\n";
        s->probe_expect = "+PONG";
        s->start_timeout_ms = 10000;
        /* No config file: every setting is on the command line, so what
         * `status` shows is what runs. RDB snapshots keep data across restarts. */
        dd_arg(s, &n, "--port");
        dd_arg(s, &n, "%d", cfg->redis_port);
        dd_arg(s, &n, "--bind");
        dd_arg(s, &n, "127.0.0.1");
        dd_arg(s, &n, "--dir");
        dd_arg(s, &n, "%s", s->data_dir);
        dd_arg(s, &n, "--save");
        dd_arg(s, &n, "60 1");
        dd_arg(s, &n, "--daemonize");
        dd_arg(s, &n, "no");
        dd_arg(s, &n, "--logfile");
        dd_arg(s, &n, "%s", "");
    } else {
        char *bin = dd_find_temporal(cfg, self_dir);
        if (!bin && !need_binary)
            bin = dd_strdup("temporal");
        if (!bin) {
            dd_msgf(err, errlen,
                    "temporal CLI not found (looked for --temporal-bin, .tools/bin/temporal next "
                    "to the build, and $PATH); install it with scripts/install-deps.sh "
                    "(GOBIN=.tools/bin go install github.com/temporalio/cli/cmd/temporal@v1.5.1)");
            dd_service_release(s);
            return dd_config_source(cfg, "temporal-bin") ? DD_EINVAL : -ENOENT;
        }
        s->argv[n++] = bin;
        s->ports[s->nports++] = cfg->temporal_http_port;
        s->ports[s->nports++] = cfg->temporal_port;
        s->probe_port = cfg->temporal_http_port;
        s->probe_req = "GET /api/v1/system-info HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       "Connection: close\r\n\r\n";
        s->probe_expect = "HTTP/1.1 200";
        s->start_timeout_ms = 60000;
        dd_arg(s, &n, "server");
        dd_arg(s, &n, "start-dev");
        dd_arg(s, &n, "--headless");
        dd_arg(s, &n, "--ip");
        dd_arg(s, &n, "127.0.0.1");
        dd_arg(s, &n, "--port");
        dd_arg(s, &n, "%d", cfg->temporal_port);
        dd_arg(s, &n, "--http-port");
        dd_arg(s, &n, "%d", cfg->temporal_http_port);
        dd_arg(s, &n, "--db-filename");
        dd_arg(s, &n, "%s/temporal.db", s->data_dir);
        dd_arg(s, &n, "--log-level");
        dd_arg(s, &n, "warn");
        /* Lets a dispatcher be restarted right after it was terminated. */
        dd_arg(s, &n, "--dynamic-config-value");
        dd_arg(s, &n, "history.workflowIdReuseMinimalInterval=0");
    }
    return 0;
}

void dd_service_release(dd_service *s)
{
    for (int i = 0; s->argv[i]; i++)
        free(s->argv[i]);
    s->argv[0] = NULL;
    free(s->lock_path);
    free(s->status_path);
    free(s->log_path);
    free(s->data_dir);
    s->lock_path = s->status_path = s->log_path = s->data_dir = NULL;
}

void dd_service_describe(const dd_service *s, char *out, size_t len)
{
    if (s->kind == DD_SVC_REDIS)
        dd_msgf(out, len, "redis://127.0.0.1:%d", s->ports[0]);
    else
        dd_msgf(out, len, "http://127.0.0.1:%d (grpc 127.0.0.1:%d)", s->ports[0], s->ports[1]);
}
