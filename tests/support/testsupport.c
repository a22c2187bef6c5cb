#include "testsupport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define DD_TEST_MAX_SERVERS 16
static dd_test_server *dd_test_servers[DD_TEST_MAX_SERVERS];
static bool dd_test_hooked;

static void dd_test_kill_all(void)
{
    for (int i = 0; i < DD_TEST_MAX_SERVERS; i++) {
        dd_test_server *s = dd_test_servers[i];
        if (s && s->pid > 0) {
            kill(-s->pid, SIGKILL);
            waitpid(s->pid, NULL, 0);
            s->pid = 0;
        }
    }
}

static void dd_test_on_signal(int sig)
{
    dd_test_kill_all();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void dd_test_track(dd_test_server *s)
{
    if (!dd_test_hooked) {
        atexit(dd_test_kill_all);
        signal(SIGABRT, dd_test_on_signal);
        signal(SIGSEGV, dd_test_on_signal);
        signal(SIGTERM, dd_test_on_signal);
        signal(SIGINT, dd_test_on_signal);
        dd_test_hooked = true;
    }
    for (int i = 0; i < DD_TEST_MAX_SERVERS; i++) {
        if (dd_test_servers[i] == s)
            return;
    }
    for (int i = 0; i < DD_TEST_MAX_SERVERS; i++) {
        if (!dd_test_servers[i]) {
            dd_test_servers[i] = s;
            return;
        }
    }
}

int dd_test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

bool dd_test_wait_port(int port, int ms)
{
    struct timespec d = {0, 10 * 1000 * 1000};
    for (int waited = 0; waited <= ms; waited += 10) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
        close(fd);
        if (rc == 0)
            return true;
        nanosleep(&d, NULL);
    }
    return false;
}

static int dd_test_redis_spawn(dd_test_server *s, const char *password)
{
    char portbuf[16];
    snprintf(portbuf, sizeof(portbuf), "%d", s->port);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        setpgid(0, 0);
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(devnull, 1);
        const char *argv[20];
        int n = 0;
        argv[n++] = "redis-server";
        argv[n++] = "--port";
        argv[n++] = portbuf;
        argv[n++] = "--bind";
        argv[n++] = "127.0.0.1";
        argv[n++] = "--save";
        argv[n++] = "";
        argv[n++] = "--appendonly";
        argv[n++] = "no";
        argv[n++] = "--dir";
        argv[n++] = s->dir;
        argv[n++] = "--loglevel";
        argv[n++] = "warning";
        if (password) {
            argv[n++] = "--requirepass";
            argv[n++] = password;
        }
        argv[n] = NULL;
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    setpgid(pid, pid);
    s->pid = pid;
    dd_test_track(s);
    if (!dd_test_wait_port(s->port, 5000)) {
        dd_test_server_stop(s);
        return -1;
    }
    return 0;
}

int dd_test_redis_start(dd_test_server *s, const char *password)
{
    memset(s, 0, sizeof(*s));
    s->port = dd_test_free_port();
    snprintf(s->dir, sizeof(s->dir), "/tmp/dd-test-redis-%d-%d", (int)getpid(), s->port);
    mkdir(s->dir, 0700);
    return dd_test_redis_spawn(s, password);
}

int dd_test_redis_restart(dd_test_server *s, const char *password)
{
    dd_test_server_stop(s);
    return dd_test_redis_spawn(s, password);
}

void dd_test_server_stop(dd_test_server *s)
{
    if (s->pid > 0) {
        kill(-s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

static const char *dd_test_fixture_file(const char *name, char *buf, size_t len)
{
    const char *dir = getenv("DD_FIXTURE_DIR");
    if (!dir)
        return NULL;
    char path[512];
    snprintf(path, sizeof(path), "%s/temporal/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    if (!fgets(buf, (int)len, f)) {
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    return buf;
}

const char *dd_test_temporal_url(void)
{
    static char url[256];
    return dd_test_fixture_file("url", url, sizeof(url));
}

const char *dd_test_temporal_grpc(void)
{
    static char addr[256];
    return dd_test_fixture_file("grpc", addr, sizeof(addr));
}

const char *dd_test_unique(const char *prefix)
{
    static char bufs[8][128];
    static unsigned n;
    char *b = bufs[n % 8];
    snprintf(b, sizeof(bufs[0]), "%s-%d-%ld-%u", prefix, (int)getpid(), (long)time(NULL), n);
    n++;
    return b;
}

static void dd_test_on_guard(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

bool dd_test_run_until(uv_loop_t *loop, bool *flag, int ms)
{
    bool expired = false;
    uv_timer_t guard;
    uv_timer_init(loop, &guard);
    guard.data = &expired;
    uv_timer_start(&guard, dd_test_on_guard, (uint64_t)ms, 0);
    while (!*flag && !expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *flag;
}

void dd_test_sleep_loop(uv_loop_t *loop, int ms)
{
    bool never = false;
    dd_test_run_until(loop, &never, ms);
}

void dd_test_echo_log(FILE *logf)
{
    char line[2048];
    rewind(logf);
    while (fgets(line, sizeof(line), logf))
        if (!strstr(line, "level=debug"))
            fputs(line, stderr);
    fclose(logf);
}
