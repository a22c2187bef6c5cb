/* hostport.c - HOST[:PORT] and [IPv6][:PORT] (see hostport.h). Pure;
 * unit-tested in tests/unit/test_hostport.c, fuzzed by
 * tests/fuzz/fuzz_hostport.c. */
#include "core/hostport.h"

#include "core/buf.h"
#include "core/error.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

static int dd_hostport_fail(dd_hostport *out, char *err, size_t errlen, const char *msg,
                            const char *want)
{
    dd_hostport_release(out);
    if (err && errlen)
        dd_msgf(err, errlen, "%s (want %s)", msg, want);
    return DD_EINVAL;
}

/* An IPv6 literal, optionally with a non-empty "%zone": s[0..n). */
static bool dd_hostport_is_ipv6(const char *s, size_t n)
{
    char addr[INET6_ADDRSTRLEN];
    unsigned char bin[sizeof(struct in6_addr)];
    const char *pct = memchr(s, '%', n);
    size_t an = pct ? (size_t)(pct - s) : n;
    if (an >= sizeof(addr) || (pct && pct + 1 == s + n))
        return false;
    memcpy(addr, s, an);
    addr[an] = '\0';
    return inet_pton(AF_INET6, addr, bin) == 1;
}

int dd_hostport_parse(const char *s, size_t n, int default_port, unsigned flags,
                      dd_hostport *out, char *err, size_t errlen)
{
    const char *end = s + n, *host, *host_end, *port = NULL;
    bool need_port = flags & DD_HOSTPORT_NEED_PORT;
    const char *want = need_port ? "HOST:PORT" : "HOST[:PORT]";
    memset(out, 0, sizeof(*out));
    if (n > 0 && *s == '[') {
        const char *rb = memchr(s, ']', n);
        if (!rb)
            return dd_hostport_fail(out, err, errlen, "unterminated '['", "[IPv6]:PORT");
        host = s + 1;
        host_end = rb;
        if (rb + 1 < end) {
            if (rb[1] != ':')
                return dd_hostport_fail(out, err, errlen, "unexpected text after ']'",
                                        "[IPv6]:PORT");
            port = rb + 2;
        }
        out->ipv6 = true;
    } else {
        host = s;
        host_end = memchr(s, ':', n);
        if (host_end) {
            port = host_end + 1;
            if (memchr(port, ':', (size_t)(end - port)))
                return dd_hostport_fail(out, err, errlen,
                                        "an IPv6 address needs brackets", "[ADDR]:PORT");
        } else {
            host_end = end;
        }
    }
    size_t hn = (size_t)(host_end - host);
    if (hn == 0)
        return dd_hostport_fail(out, err, errlen, "missing host", want);
    for (size_t i = 0; i < hn; i++) {
        unsigned char c = (unsigned char)host[i];
        if (c <= ' ' || c == 0x7f)
            return dd_hostport_fail(out, err, errlen,
                                    "the host contains a space or a control character", want);
        if (!out->ipv6 && (c == '[' || c == ']'))
            return dd_hostport_fail(out, err, errlen, "a bracket inside the host",
                                    "[IPv6]:PORT");
    }
    if (out->ipv6 && !dd_hostport_is_ipv6(host, hn))
        return dd_hostport_fail(out, err, errlen, "the host in brackets is not an IPv6 address",
                                "[IPv6]:PORT");
    out->port = default_port;
    if (port) {
        size_t pn = (size_t)(end - port);
        long v = 0;
        bool ok = pn >= 1 && pn <= 5;
        for (size_t i = 0; ok && i < pn; i++) {
            ok = port[i] >= '0' && port[i] <= '9';
            v = v * 10 + (port[i] - '0');
        }
        long min = flags & DD_HOSTPORT_PORT_ZERO ? 0 : 1;
        if (!ok || v < min || v > 65535) {
            dd_hostport_release(out);
            if (err && errlen)
                dd_msgf(err, errlen, "bad port '%.*s%s' (want %ld-65535)",
                        (int)(pn > 32 ? 32 : pn), port, pn > 32 ? "..." : "", min);
            return DD_EINVAL;
        }
        out->port = (int)v;
        out->has_port = true;
    } else if (need_port) {
        return dd_hostport_fail(out, err, errlen, "missing port",
                                out->ipv6 ? "[IPv6]:PORT" : want);
    }
    out->host = dd_xmalloc(hn + 1);
    memcpy(out->host, host, hn);
    out->host[hn] = '\0';
    return 0;
}

void dd_hostport_release(dd_hostport *hp)
{
    free(hp->host);
    memset(hp, 0, sizeof(*hp));
}
