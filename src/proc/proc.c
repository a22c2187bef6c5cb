/* proc.c - reading processes from /proc: identity, groups, tokens, lock
 * holders and port owners. Everything here is a snapshot; callers re-check
 * identity right before acting on a pid. */
#include "proc/proc.h"

#include "core/buf.h"
#include "core/error.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

int dd_proc_read(pid_t pid, dd_proc_info *out)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -ENOENT;
    buf[n] = '\0';
    /* comm is in parentheses and may itself contain spaces or ')'. */
    char *lp = strchr(buf, '(');
    char *rp = strrchr(buf, ')');
    if (!lp || !rp || rp < lp)
        return DD_ECORRUPT;
    size_t clen = (size_t)(rp - lp - 1);
    if (clen >= sizeof(out->comm))
        clen = sizeof(out->comm) - 1;
    memcpy(out->comm, lp + 1, clen);
    out->comm[clen] = '\0';
    /* Fields after comm: 3 state, 4 ppid, 5 pgrp, 6 session, ... 22 starttime. */
    char *p = rp + 2;
    int field = 3;
    char *save = NULL;
    for (char *tok = strtok_r(p, " ", &save); tok; tok = strtok_r(NULL, " ", &save), field++) {
        if (field == 3)
            out->state = tok[0];
        else if (field == 5)
            out->pgrp = (pid_t)atoi(tok);
        else if (field == 6)
            out->sid = (pid_t)atoi(tok);
        else if (field == 22) {
            out->start_ticks = strtoull(tok, NULL, 10);
            return 0;
        }
    }
    return DD_ECORRUPT;
}

int dd_proc_boot_id(char *out, size_t len)
{
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
    if (!f)
        return -errno;
    if (!fgets(out, (int)len, f)) {
        fclose(f);
        return DD_ECORRUPT;
    }
    fclose(f);
    out[strcspn(out, "\n")] = '\0';
    return 0;
}

int dd_proc_ident_of(pid_t pid, dd_proc_ident *id)
{
    dd_proc_info info;
    int rc = dd_proc_read(pid, &info);
    if (rc < 0)
        return rc;
    id->pid = pid;
    id->start_ticks = info.start_ticks;
    return dd_proc_boot_id(id->boot_id, sizeof(id->boot_id));
}

bool dd_proc_ident_matches(const dd_proc_ident *id)
{
    if (id->pid <= 0)
        return false;
    dd_proc_info info;
    if (dd_proc_read(id->pid, &info) < 0)
        return false;
    if (info.state == 'Z' || info.state == 'X')
        return false;
    if (info.start_ticks != id->start_ticks)
        return false;
    char boot[40];
    if (dd_proc_boot_id(boot, sizeof(boot)) < 0)
        return false;
    return strcmp(boot, id->boot_id) == 0;
}

static bool dd_proc_has_token(pid_t pid, const char *token)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    /* whole: with a fixed buffer a long token overran it in the memcmp below */
    char *key = dd_strdupf("DISPATCHD_SERVICE_TOKEN=%s", token);
    size_t klen = strlen(key);
    /* environ is NUL-separated; read it whole (bounded) and compare entries. */
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap + 1);
    bool found = false;
    if (!buf)
        goto out;
    ssize_t n;
    while (len < cap && (n = read(fd, buf + len, cap - len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
    for (size_t i = 0; i < len;) {
        size_t elen = strnlen(buf + i, len - i);
        if (elen == klen && memcmp(buf + i, key, klen) == 0) {
            found = true;
            break;
        }
        i += elen + 1;
    }
out:
    free(buf);
    free(key);
    close(fd);
    return found;
}

typedef bool (*dd_proc_pred)(pid_t pid, const void *arg);

static int dd_proc_scan(dd_proc_pred pred, const void *arg, pid_t *out, int n)
{
    DIR *d = opendir("/proc");
    if (!d)
        return -errno;
    int count = 0;
    pid_t self = getpid();
    struct dirent *e;
    while ((e = readdir(d)) != NULL && count < n) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid == self)
            continue;
        if (pred(pid, arg))
            out[count++] = pid;
    }
    closedir(d);
    return count;
}

struct dd_find_arg {
    const char *token;
    pid_t pgid;
};

static bool dd_proc_pred_find(pid_t pid, const void *varg)
{
    const struct dd_find_arg *a = varg;
    if (a->pgid > 0) {
        dd_proc_info info;
        if (dd_proc_read(pid, &info) == 0 && info.pgrp == a->pgid && info.state != 'Z')
            return true;
    }
    return a->token && *a->token && dd_proc_has_token(pid, a->token);
}

int dd_proc_find(const char *token, pid_t pgid, pid_t *out, int n)
{
    struct dd_find_arg a = {token, pgid};
    return dd_proc_scan(dd_proc_pred_find, &a, out, n);
}

struct dd_group_token {
    pid_t pgid;
    const char *token;
};

static bool dd_proc_pred_group_token(pid_t pid, const void *varg)
{
    const struct dd_group_token *a = varg;
    dd_proc_info info;
    return dd_proc_read(pid, &info) == 0 && info.pgrp == a->pgid && info.state != 'Z' &&
           dd_proc_has_token(pid, a->token);
}

int dd_proc_kill_group_token(pid_t pgid, const char *token, int sig)
{
    pid_t pids[256];
    struct dd_group_token a = {pgid, token};
    int n = dd_proc_scan(dd_proc_pred_group_token, &a, pids, 256);
    for (int i = 0; i < n; i++)
        kill(pids[i], sig);
    return n < 0 ? 0 : n;
}

/* True when one of pid's open files is a link to target ("/path" or
 * "socket:[inode]"). */
static bool dd_proc_has_fd_to(pid_t pid, const char *target)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool found = false;
    struct dirent *e;
    /* One byte more than target: readlink() cuts silently, and a link that
     * fills the buffer is longer than target, so not it (a fixed buffer
     * missed holders of a long path). */
    size_t tlen = strlen(target);
    char link[320], *got = dd_xmalloc(tlen + 2);
    while (!found && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        int ln = snprintf(link, sizeof(link), "%s/%s", dir, e->d_name); /* 63 + 1 + 255 fit */
        if (ln < 0 || (size_t)ln >= sizeof(link))
            continue;
        ssize_t len = readlink(link, got, tlen + 1);
        found = len == (ssize_t)tlen && memcmp(got, target, tlen) == 0;
    }
    free(got);
    closedir(d);
    return found;
}

static bool dd_proc_pred_holding(pid_t pid, const void *arg)
{
    return dd_proc_has_fd_to(pid, arg);
}

int dd_proc_holding(const char *path, pid_t *out, int n)
{
    /* realpath(.., NULL) allocates: with a buffer it writes up to PATH_MAX
     * bytes, more than the 600 this once had */
    char *real = realpath(path, NULL);
    if (!real)
        return 0;
    int k = dd_proc_scan(dd_proc_pred_holding, real, out, n);
    free(real);
    return k;
}

/* Finds the socket inode listening on port in /proc/net/tcp{,6}. */
static unsigned long dd_port_inode(int port)
{
    const char *files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    for (int f = 0; f < 2; f++) {
        FILE *fp = fopen(files[f], "re");
        if (!fp)
            continue;
        char line[512];
        if (!fgets(line, sizeof(line), fp)) { /* header */
            fclose(fp);
            continue;
        }
        while (fgets(line, sizeof(line), fp)) {
            char local[128];
            unsigned st;
            unsigned long inode;
            /* sl local rem st tx:rx tr:tm retrnsmt uid timeout inode */
            if (sscanf(line, "%*s %127s %*s %x %*s %*s %*s %*s %*s %lu", local, &st, &inode) != 3)
                continue;
            char *colon = strrchr(local, ':');
            if (!colon || st != 0x0A) /* 0A = LISTEN */
                continue;
            if ((int)strtol(colon + 1, NULL, 16) == port) {
                fclose(fp);
                return inode;
            }
        }
        fclose(fp);
    }
    return 0;
}

static bool dd_proc_pred_socket(pid_t pid, const void *arg)
{
    char want[64];
    snprintf(want, sizeof(want), "socket:[%lu]", *(const unsigned long *)arg);
    return dd_proc_has_fd_to(pid, want);
}

pid_t dd_proc_port_owner(int port)
{
    unsigned long inode = dd_port_inode(port);
    if (!inode)
        return 0;
    pid_t pid = 0;
    return dd_proc_scan(dd_proc_pred_socket, &inode, &pid, 1) == 1 ? pid : 0;
}

int dd_proc_port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    /* SO_REUSEADDR: a port in TIME_WAIT is free for a server too. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 ? 0 : -errno;
    close(fd);
    return rc == -EADDRINUSE ? DD_EBUSY : rc;
}
