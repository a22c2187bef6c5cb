/* tls.h - TLS client sessions for sockets on a libuv loop, through OpenSSL
 * memory BIOs: shared by src/http (https:// to Temporal) and src/store
 * (rediss://), so both verify the same way and name failures in the same
 * words.
 *
 * A session never touches a socket. The owner of the socket pumps bytes:
 * what it reads goes in with dd_tls_feed, then dd_tls_handshake (until it
 * returns 1) or dd_tls_read gives plaintext; plaintext goes out with
 * dd_tls_write; after any of these, whatever OpenSSL wants to send is taken
 * with dd_tls_take_out and written to the socket. So TLS never blocks the
 * loop and never owns the socket.
 *
 * Verification: the server's certificate must chain to the CA file (or the
 * system store without one) and name the host: DNS names get SNI and the
 * host name check, a numeric address the IP check. TLS 1.2 at least. A
 * client certificate (mTLS) is sent when a cert file is given.
 *
 * OpenSSL is initialised by the first dd_tls_ctx_new (OpenSSL 1.1+ does so
 * on first use), so a process that only uses http:// and redis:// /
 * unix:// never initialises it.
 *
 * Ownership: a context is reference counted (dd_tls_ctx_ref / _unref: the
 * store shares one with its subscriptions); a session holds a reference to
 * its context. Strings passed in are copied. No callbacks. */
#ifndef DD_NET_TLS_H
#define DD_NET_TLS_H

#include "core/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct dd_tls_ctx dd_tls_ctx;
typedef struct dd_tls dd_tls;

typedef struct dd_tls_ctx_opts {
    const char *ca_file;   /* CA bundle (PEM) to verify the server; NULL: system store */
    const char *cert_file; /* client certificate chain (PEM) for mTLS; NULL: none */
    const char *key_file;  /* its private key (PEM); NULL: in cert_file */
    const unsigned char *alpn; /* ALPN list in wire format; NULL: none */
    size_t alpn_len;
    const char *opt_prefix; /* the options' prefix for hints ("--redis"); NULL: none */
} dd_tls_ctx_opts;

/* Loads and checks the files (readable, key matches certificate). 0, or
 * DD_EINVAL with the reason (naming the file) appended to err. */
int dd_tls_ctx_new(const dd_tls_ctx_opts *o, dd_tls_ctx **out, dd_buf *err);
dd_tls_ctx *dd_tls_ctx_ref(dd_tls_ctx *c);
/* A client certificate was given. */
bool dd_tls_ctx_has_cert(const dd_tls_ctx *c);
void dd_tls_ctx_unref(dd_tls_ctx *c); /* NULL: no-op */

/* A client session for host (a name, or an address without brackets). 0,
 * or -EACCES / -ENOMEM with the reason in err. */
int dd_tls_new(dd_tls_ctx *ctx, const char *host, dd_tls **out, char *err, size_t errlen);
void dd_tls_free(dd_tls *t); /* NULL: no-op */

/* Ciphertext read from the socket. */
void dd_tls_feed(dd_tls *t, const char *p, size_t n);
/* 1 handshake done, 0 more input needed, < 0 failed (dd_tls_failure). */
int dd_tls_handshake(dd_tls *t);
/* Plaintext: > 0 bytes, 0 more input needed, DD_TLS_EOF the peer closed
 * (close_notify), DD_EPROTO failed (dd_tls_failure says how). */
#define DD_TLS_EOF (-100000)
ssize_t dd_tls_read(dd_tls *t, char *buf, size_t n);
/* Encrypts all of p: 0, or DD_EPROTO (dd_tls_failure says how). */
int dd_tls_write(dd_tls *t, const char *p, size_t n);
/* Ciphertext for the peer: appends what is waiting to out; returns the
 * number of bytes appended. */
size_t dd_tls_take_out(dd_tls *t, dd_buf *out);
/* Bytes still inside the session (decrypted and not read, or received and
 * not decrypted). */
bool dd_tls_buffered(const dd_tls *t);

/* After a failed dd_tls_handshake / _read / _write: the reason in msg
 * ("TLS: certificate verification of HOST:PORT failed: hostname mismatch
 * (the server's certificate does not name HOST) ..."), peer naming the
 * server in it. Returns -EACCES when another attempt would fail the same
 * way (verification, handshake refused, the server refused our
 * certificate or asked for one we do not have), DD_EUNAVAIL otherwise (the
 * connection closed during the handshake, a broken record). */
int dd_tls_failure(dd_tls *t, bool handshake, const char *peer, char *msg, size_t len);
/* After a failure nobody needs named (the connection is dropped anyway). */
void dd_tls_forget_error(dd_tls *t);

#endif
