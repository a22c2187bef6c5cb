#include "testsupport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
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
static char dd_test_dir[512];   /* dd_test_tmpdir(), "" until made */
static pid_t dd_test_dir_owner; /* the process that made it (not a forked child) */
static int dd_test_reports_seen;

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

static int dd_test_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void dd_test_remove_dir(void)
{
    if (dd_test_dir[0] && dd_test_dir_owner == getpid()) {
        nftw(dd_test_dir, dd_test_rm_one, 16, FTW_DEPTH | FTW_PHYS);
        dd_test_dir[0] = '\0';
    }
}

/* At exit: servers stopped, sanitizer reports nobody asked for printed (and
 * the exit status made 1 if there were any), the scratch dir removed. */
static void dd_test_at_exit(void)
{
    dd_test_kill_all();
    int n = dd_test_dir[0] && dd_test_dir_owner == getpid() ? dd_test_sanitizer_reports() : 0;
    dd_test_remove_dir();
    if (n > 0) {
        fprintf(stderr, "FAIL: %d sanitizer report(s) from processes this test started\n", n);
        _exit(1);
    }
}

/* A test that dies by a signal still stops its servers and removes its
 * scratch dir (nftw is not async-signal-safe; the process is going anyway). */
static void dd_test_on_signal(int sig)
{
    dd_test_kill_all();
    dd_test_remove_dir();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void dd_test_hook(void)
{
    if (!dd_test_hooked) {
        atexit(dd_test_at_exit);
        signal(SIGABRT, dd_test_on_signal);
        signal(SIGSEGV, dd_test_on_signal);
        signal(SIGTERM, dd_test_on_signal);
        signal(SIGINT, dd_test_on_signal);
        dd_test_hooked = true;
    }
}

static void dd_test_track(dd_test_server *s)
{
    dd_test_hook();
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

/* The accept queue of the listening socket on 127.0.0.1:port (IPv4), from
 * /proc/net/tcp: for a socket in LISTEN (state 0A) the rx_queue column is
 * the number of connections the kernel completed that the server has not
 * accepted yet. -1 when there is no such socket. */
static int dd_test_accept_queue(int port)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    char line[512];
    int q = -1;
    if (!f)
        return -1;
    while (q < 0 && fgets(line, sizeof(line), f)) {
        unsigned laddr, lport, raddr, rport, st, txq, rxq;
        if (sscanf(line, " %*d: %x:%x %x:%x %x %x:%x", &laddr, &lport, &raddr, &rport, &st, &txq,
                   &rxq) == 7 &&
            st == 0x0A && (int)lport == port)
            q = (int)rxq;
    }
    fclose(f);
    return q;
}

bool dd_test_wait_accepted(int port, int ms)
{
    struct timespec d = {0, 10 * 1000 * 1000};
    for (int waited = 0; waited <= ms; waited += 10) {
        if (dd_test_accept_queue(port) == 0)
            return true;
        nanosleep(&d, NULL);
    }
    return false;
}

/* Prints the server's log (redis.log in its dir) to stderr. */
static void dd_test_redis_log(const dd_test_server *s)
{
    char path[300], line[512];
    snprintf(path, sizeof(path), "%s/redis.log", s->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    fprintf(stderr, "--- %s:\n", path);
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fclose(f);
}

/* Starts redis-server on s->port and waits (bounded) until it answers.
 * Returns 0, -1 when it did not answer in time, -2 when it exited first
 * (e.g. another process took the free port between the probe and bind). */
static int dd_test_redis_spawn(dd_test_server *s, const char *password)
{
    char portbuf[16], logpath[300];
    snprintf(portbuf, sizeof(portbuf), "%d", s->port);
    snprintf(logpath, sizeof(logpath), "%s/redis.log", s->dir);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        setpgid(0, 0);
        int devnull = open("/dev/null", O_RDWR);
        int logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(devnull, 0);
        dup2(logfd >= 0 ? logfd : devnull, 1);
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
    /* generous: a loaded machine */
    for (int waited = 0; waited < 15000; waited += 50) {
        if (dd_test_wait_port(s->port, 0))
            return 0;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            s->pid = 0;
            fprintf(stderr, "redis-server on port %d exited before answering (status %d)\n",
                    s->port, status);
            dd_test_redis_log(s);
            return -2;
        }
        struct timespec d = {0, 50 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
    fprintf(stderr, "redis-server on port %d did not answer within 15 s\n", s->port);
    dd_test_redis_log(s);
    dd_test_server_stop(s);
    return -1;
}

const char *dd_test_tmpdir(void)
{
    if (dd_test_dir[0] && dd_test_dir_owner == getpid())
        return dd_test_dir;
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    int n = snprintf(dd_test_dir, sizeof(dd_test_dir), "%s/dd-test-%d.XXXXXX", tmp, (int)getpid());
    if (n < 0 || (size_t)n >= sizeof(dd_test_dir) || !mkdtemp(dd_test_dir)) {
        fprintf(stderr, "cannot make a scratch dir under '%s'\n", tmp);
        abort();
    }
    dd_test_dir_owner = getpid();
    dd_test_hook();
    return dd_test_dir;
}

static void dd_test_append_env(const char *name, const char *opt)
{
    const char *old = getenv(name);
    char buf[1024];
    int n = snprintf(buf, sizeof(buf), "%s%s%s", old && *old ? old : "", old && *old ? ":" : "",
                     opt);
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        fprintf(stderr, "%s is too long\n", name);
        abort();
    }
    setenv(name, buf, 1);
}

void dd_test_sanitize_children(void)
{
    char opt[600];
    snprintf(opt, sizeof(opt), "log_path=%s/sanitizer", dd_test_tmpdir());
    dd_test_append_env("ASAN_OPTIONS", opt);
    dd_test_append_env("UBSAN_OPTIONS", opt);
}

static const char *const dd_test_sanitizer_words[] = {
    "AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer", "runtime error:", NULL};

static bool dd_test_file_has_report(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    bool found = false;
    if (!f)
        return false;
    while (!found && fgets(line, sizeof(line), f))
        for (int i = 0; dd_test_sanitizer_words[i] && !found; i++)
            found = strstr(line, dd_test_sanitizer_words[i]) != NULL;
    fclose(f);
    return found;
}

static int dd_test_print_report(const char *path, const struct stat *st, int flag,
                                struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag != FTW_F || !dd_test_file_has_report(path))
        return 0;
    dd_test_reports_seen++;
    fprintf(stderr, "--- sanitizer report in %s:\n", path);
    FILE *f = fopen(path, "r");
    char line[4096];
    for (int n = 0; f && n < 200 && fgets(line, sizeof(line), f); n++)
        fputs(line, stderr);
    if (f)
        fclose(f);
    unlink(path); /* reported once */
    return 0;
}

int dd_test_sanitizer_reports(void)
{
    if (!dd_test_dir[0] || dd_test_dir_owner != getpid())
        return 0;
    int before = dd_test_reports_seen;
    nftw(dd_test_dir, dd_test_print_report, 16, FTW_PHYS);
    return dd_test_reports_seen - before;
}

int dd_test_redis_start(dd_test_server *s, const char *password)
{
    static unsigned seq; /* a later server may get the same free port */
    int rc = -2;
    /* The free port can be taken between the probe and redis' bind (other
     * tests on this machine pick ports too): then another port. */
    for (int attempt = 0; attempt < 3 && rc == -2; attempt++) {
        memset(s, 0, sizeof(*s));
        s->port = dd_test_free_port();
        int n = snprintf(s->dir, sizeof(s->dir), "%s/redis-%d-%u", dd_test_tmpdir(), s->port,
                         seq++);
        if (n < 0 || (size_t)n >= sizeof(s->dir) || mkdir(s->dir, 0700) < 0) {
            fprintf(stderr, "cannot make '%s': %s\n", s->dir, strerror(errno));
            return -1;
        }
        rc = dd_test_redis_spawn(s, password);
    }
    return rc == 0 ? 0 : -1;
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
