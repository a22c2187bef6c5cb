/* http.h - a small asynchronous HTTP/1.1 client on the caller's libuv loop.
 *
 * Why not libcurl: dispatchd talks to exactly one HTTP API (Temporal's), with
 * JSON bodies, over plain TCP or TLS. libcurl's Debian build pulls in ~30
 * shared libraries (GnuTLS, Kerberos, LDAP, SSH, RTMP, ...) and initialises
 * OpenSSL at start-up: about 7 MB of a host's 11 MB resident set. This client
 * needs libuv and, for https:// only, OpenSSL (initialised on first use).
 *
 * One client serves one origin (scheme, host, port, optional path prefix)
 * and keeps up to max_idle keep-alive connections. Requests run in parallel,
 * one per connection. A request sent on a reused connection that the server
 * had already closed (EOF or reset before any reply byte) is sent once more
 * on a fresh connection, as browsers and libcurl do; every other failure is
 * reported, and retrying is the caller's decision (reply->transient says
 * whether another attempt could succeed).
 *
 * Host names are resolved with uv_getaddrinfo (numeric addresses without
 * it) and every address is tried in order, so "localhost" works whether the
 * server listens on ::1 or 127.0.0.1.
 *
 * Writes assume SIGPIPE is ignored (dispatchd's main does so).
 *
 * Callbacks run from the loop, never from inside dd_http_request(),
 * dd_http_abandon() or dd_http_close(), and run exactly once unless the
 * request was abandoned (then never). "Abandon", not "cancel": in dispatchd a
 * cancelled operation still calls back once with DD_ECANCELED
 * (CONTRIBUTING.md); an abandoned request never does (the Temporal client
 * abandons an attempt it retries or cancels, and reports for itself). */
#ifndef DD_HTTP_HTTP_H
#define DD_HTTP_HTTP_H

#include "core/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct dd_http dd_http;
typedef struct dd_http_req dd_http_req;

typedef struct dd_http_opts {
    const char *base_url;  /* required: "http://HOST[:PORT][/PREFIX]" or "https://..." */
    const char *ca_file;   /* https: CA bundle (PEM) to verify the server; NULL: system store */
    const char *cert_file; /* https: client certificate chain (PEM) for mTLS; NULL: none */
    const char *key_file;  /* its private key (PEM); NULL: in cert_file */
    const char *tls_opt_prefix; /* the options that set the files ("--temporal"), named
                                 * in TLS error hints; NULL: none */
    int max_idle;          /* idle keep-alive connections kept; 0: 4 */
    size_t max_body;       /* a larger reply body fails the request; 0: 16 MiB */
    int64_t connect_timeout_ms; /* per connection attempt; 0: 5 s */
} dd_http_opts;

/* What a request produced. Valid only during the callback. */
typedef struct dd_http_reply {
    int err;          /* 0 (a complete reply, whatever its status) or DD_EUNAVAIL,
                       * DD_ETIMEOUT, DD_EPROTO (unparseable reply, body too
                       * large), -EACCES (TLS verification or handshake refused) */
    bool transient;   /* err != 0 and another attempt may succeed */
    int status;       /* HTTP status; 0 when no status line arrived */
    const char *body; /* NUL-terminated ("" when empty); never NULL */
    size_t body_len;
    const char *message; /* "" on success; else one readable line, e.g.
                          * "connect to 127.0.0.1:7243: connection refused" */
} dd_http_reply;

typedef void (*dd_http_cb)(const dd_http_reply *reply, void *arg);
typedef void (*dd_http_close_cb)(void *arg);

/* Parses and checks base_url (scheme, host, port 1-65535, no user info, no
 * query) and, for https, loads the CA and client certificate files. Returns 0
 * and *out, or DD_EINVAL with a readable reason in err. */
int dd_http_new(uv_loop_t *loop, const dd_http_opts *opts, dd_http **out, char *err,
                size_t errlen);

/* "scheme://host:port" + the path prefix without trailing '/', for messages. */
const char *dd_http_base_url(const dd_http *h);

/* Sends METHOD base-prefix+target. target starts with '/' and is sent as is
 * (the caller escapes it). headers: extra header lines, each ending in
 * "\r\n" (NULL: none); Host, User-Agent and Content-Length are added here.
 * body may be NULL (no body; POST then sends Content-Length: 0).
 * timeout_ms bounds the whole request, connecting included (> 0).
 * Returns 0, or DD_EINVAL (bad arguments) / DD_ECANCELED (client closing)
 * without calling cb. *out (may be NULL) receives a handle for cancel. */
int dd_http_request(dd_http *h, const char *method, const char *target, const char *headers,
                    const char *body, size_t body_len, int64_t timeout_ms, dd_http_cb cb,
                    void *arg, dd_http_req **out);

/* Abandons a request whose callback has not run: the callback never runs,
 * and its connection is closed. A no-op from inside its own callback. */
void dd_http_abandon(dd_http_req *req);

/* Abandons every request (no callbacks; their handles die here, so do not
 * abandon them afterwards), closes every connection, then calls cb(arg) (may
 * be NULL) from the loop and frees h. */
void dd_http_close(dd_http *h, dd_http_close_cb cb, void *arg);

#endif
