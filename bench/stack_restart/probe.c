/* probe.c - tight loopback prober for bench/stack_restart (built by run.sh).
 *
 *   probe pid   PORT                 prints the redis-server pid (INFO server)
 *   probe wait  PORT TIMEOUT_MS      waits until PING answers; prints pid
 *   probe kill  PORT PID TIMEOUT_MS [INTERVAL_US]
 *       SIGKILLs PID, then connects to 127.0.0.1:PORT and sends PING every
 *       INTERVAL_US (default 1000) until +PONG comes back from a redis-server
 *       whose process_id is not PID. Prints
 *         kill_wall_us=<CLOCK_REALTIME at kill> kill_to_ping_us=<monotonic>
 *         new_pid=<pid> attempts=<n>
 *       The time is taken when +PONG is read; the pid check (INFO server on
 *       the same connection) happens after and is not counted.
 * Exit status 0 on success, 1 on timeout, 2 on usage errors. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int64_t now_us(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    /* No TIME_WAIT pile-up from thousands of short probes. */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends req, reads until the reply holds need (or a full line when need is
 * NULL). Returns bytes read into buf, or -1. */
static int request(int fd, const char *req, char *buf, size_t len, const char *need)
{
    size_t rl = strlen(req);
    if (send(fd, req, rl, MSG_NOSIGNAL) != (ssize_t)rl)
        return -1;
    size_t got = 0;
    while (got + 1 < len) {
        ssize_t n = recv(fd, buf + got, len - 1 - got, 0);
        if (n <= 0)
            return -1;
        got += (size_t)n;
        buf[got] = 0;
        if (need ? strstr(buf, need) != NULL : strchr(buf, '\n') != NULL)
            return (int)got;
    }
    return (int)got;
}

static long info_pid(int fd)
{
    char buf[8192];
    if (request(fd, "INFO server\r\n", buf, sizeof(buf), "tcp_port:") < 0)
        return -1;
    char *p = strstr(buf, "process_id:");
    return p ? strtol(p + 11, NULL, 10) : -1;
}

/* One PING; on +PONG returns the server's pid (>0), else -1. *t_pong gets
 * the monotonic time +PONG was read. */
static long ping_once(int port, int64_t *t_pong)
{
    int fd = dial(port);
    if (fd < 0)
        return -1;
    char buf[64];
    long pid = -1;
    if (request(fd, "PING\r\n", buf, sizeof(buf), NULL) > 0 && strncmp(buf, "+PONG", 5) == 0) {
        if (t_pong)
            *t_pong = now_us(CLOCK_MONOTONIC);
        pid = info_pid(fd);
    }
    close(fd);
    return pid;
}

static void sleep_us(long us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "pid") == 0) {
        long pid = ping_once(atoi(argv[2]), NULL);
        if (pid <= 0)
            return 1;
        printf("%ld\n", pid);
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "wait") == 0) {
        int port = atoi(argv[2]);
        int64_t end = now_us(CLOCK_MONOTONIC) + atoll(argv[3]) * 1000;
        while (now_us(CLOCK_MONOTONIC) < end) {
            long pid = ping_once(port, NULL);
            if (pid > 0) {
                printf("%ld\n", pid);
                return 0;
            }
            sleep_us(10000);
        }
        return 1;
    }
    if (argc >= 5 && strcmp(argv[1], "kill") == 0) {
        int port = atoi(argv[2]);
        pid_t victim = (pid_t)atol(argv[3]);
        int64_t timeout_us = atoll(argv[4]) * 1000;
        long interval = argc >= 6 ? atol(argv[5]) : 1000;
        if (victim <= 1)
            return 2;
        int64_t t0_wall = now_us(CLOCK_REALTIME);
        int64_t t0 = now_us(CLOCK_MONOTONIC);
        if (kill(victim, SIGKILL) < 0) {
            perror("kill");
            return 2;
        }
        long attempts = 0;
        for (;;) {
            int64_t t_pong = 0;
            attempts++;
            long pid = ping_once(port, &t_pong);
            if (pid > 0 && pid != victim) {
                printf("kill_wall_us=%lld kill_to_ping_us=%lld new_pid=%ld attempts=%ld\n",
                       (long long)t0_wall, (long long)(t_pong - t0), pid, attempts);
                return 0;
            }
            if (now_us(CLOCK_MONOTONIC) - t0 > timeout_us) {
                printf("kill_wall_us=%lld timeout attempts=%ld\n", (long long)t0_wall, attempts);
                return 1;
            }
            sleep_us(interval);
        }
    }
    fprintf(stderr, "usage: probe pid PORT | wait PORT TIMEOUT_MS | kill PORT PID TIMEOUT_MS [INTERVAL_US]\n");
    return 2;
}
