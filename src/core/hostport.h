/* hostport.h - the one parser of a "HOST[:PORT]" / "[IPv6][:PORT]" authority:
 * the Temporal base URL's (src/http), a redis:// URL's (src/store) and the
 * --metrics-listen address (src/metrics).
 *
 * Syntax only, no name lookup: HOST is a name or an IPv4 literal (any bytes
 * but ':', controls and space; the caller has already split off "scheme://",
 * user info and "/path"), or an IPv6 literal in brackets (checked with
 * inet_pton, an optional "%zone" allowed). A bare IPv6 address (two colons
 * or more without brackets) is refused with a hint, as the port would be
 * ambiguous. PORT is 1 to 5 digits, 1-65535 (0 too with DD_HOSTPORT_PORT_ZERO:
 * a listen address, where 0 asks for any free port). Nothing is cut: the
 * host is copied whole. Messages name the problem, not the input (the
 * caller says which input: "'http://x:0': bad port '0' (want 1-65535)"). */
#ifndef DD_CORE_HOSTPORT_H
#define DD_CORE_HOSTPORT_H

#include <stdbool.h>
#include <stddef.h>

typedef struct dd_hostport {
    char *host; /* without brackets, NUL-terminated; owned (dd_hostport_release) */
    int port;   /* the given one, else the default */
    bool ipv6;  /* written in brackets: an IPv6 literal, maybe with "%zone" */
    bool has_port; /* ":PORT" was given */
} dd_hostport;

enum {
    DD_HOSTPORT_NEED_PORT = 1, /* ":PORT" is required (default_port is unused) */
    DD_HOSTPORT_PORT_ZERO = 2, /* port 0 is allowed (listen addresses: any free port) */
};

/* Parses s[0..n) (s need not be NUL-terminated there) into *out. 0, or
 * DD_EINVAL with the reason in err (out is then empty: host NULL). */
int dd_hostport_parse(const char *s, size_t n, int default_port, unsigned flags,
                      dd_hostport *out, char *err, size_t errlen);

/* Frees out->host and empties *out; safe on an empty one. */
void dd_hostport_release(dd_hostport *hp);

#endif
