/* status.c - the per-service status file: who holds the lock.
 *
 * Written atomically (.new, then rename) so a reader sees the old or the
 * new file, never half of one. It is a description, not a source of truth:
 * every field is checked against the kernel before it is believed. */
#include "proc/proc.h"

#include "core/buf.h"
#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int dd_status_write(const char *path, const dd_status *st)
{
    json_t *ports = json_array();
    for (int i = 0; i < st->nports; i++)
        json_array_append_new(ports, json_integer(st->ports[i]));
    json_t *o = json_pack("{s:s, s:i, s:I, s:s, s:o, s:I, s:s, s:i, s:s}", "service",
                          st->service, "pid", (int)st->ident.pid, "start_ticks",
                          (json_int_t)st->ident.start_ticks, "boot_id", st->ident.boot_id,
                          "ports", ports, "started_ms", (json_int_t)st->started_ms, "token",
                          st->token, "supervisor", (int)st->supervisor, "cmd", st->cmd);
    if (!o)
        return DD_EINVAL;
    char *tmp = dd_strdupf("%s.new", path);
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    char *text = json_dumps(o, JSON_COMPACT);
    size_t len = strlen(text);
    /* No fsync: rename() already makes the swap atomic for every reader,
     * and the file only has to outlive a crash of a process, not of the
     * machine (after a reboot the boot id differs and the file is stale
     * anyway). An fsync here would stall the supervisor's loop for ms. */
    if (write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1)
        rc = -errno;
    free(text);
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
out:
    free(tmp);
    json_decref(o);
    return rc;
}

/* Copies a string field whole, or fails: our writer never writes one that
 * does not fit, so a longer one means the file is not ours (a cut token
 * could match another service's processes). */
static bool dd_status_copy_field(char *out, size_t n, const char *s)
{
    size_t len = strlen(s);
    if (len >= n)
        return false;
    memcpy(out, s, len + 1);
    return true;
}

int dd_status_read(const char *path, dd_status *st)
{
    memset(st, 0, sizeof(*st));
    json_error_t jerr;
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    json_t *o = json_loadf(f, 0, &jerr);
    fclose(f);
    if (!o)
        return DD_ECORRUPT;
    int rc = DD_ECORRUPT;
    const char *service, *boot, *token, *cmd;
    int pid, supervisor;
    json_int_t ticks, started;
    json_t *ports;
    if (json_unpack(o, "{s:s, s:i, s:I, s:s, s:o, s:I, s:s, s:i, s:s}", "service", &service,
                    "pid", &pid, "start_ticks", &ticks, "boot_id", &boot, "ports", &ports,
                    "started_ms", &started, "token", &token, "supervisor", &supervisor, "cmd",
                    &cmd) < 0)
        goto out;
    if (pid <= 0 || ticks <= 0 || !json_is_array(ports))
        goto out;
    if (!dd_status_copy_field(st->service, sizeof(st->service), service) ||
        !dd_status_copy_field(st->ident.boot_id, sizeof(st->ident.boot_id), boot) ||
        !dd_status_copy_field(st->token, sizeof(st->token), token) ||
        !dd_status_copy_field(st->cmd, sizeof(st->cmd), cmd))
        goto out;
    st->ident.pid = pid;
    st->ident.start_ticks = (unsigned long long)ticks;
    size_t i;
    json_t *v;
    json_array_foreach(ports, i, v)
    {
        if (!json_is_integer(v) || st->nports == DD_MAX_PORTS)
            goto out;
        st->ports[st->nports++] = (int)json_integer_value(v);
    }
    st->started_ms = started;
    st->supervisor = supervisor;
    rc = 0;
out:
    json_decref(o);
    return rc;
}
