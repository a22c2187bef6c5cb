/* tls.c - see tls.h. */
#include "net/tls.h"

#include "core/error.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dd_tls_ctx {
    SSL_CTX *ssl_ctx;
    int refs;
    char *opt_prefix; /* "" when none */
    bool has_cert;
};

struct dd_tls {
    dd_tls_ctx *ctx;
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    char *host;
    int last; /* SSL_get_error of the last failed call */
};

/* The last OpenSSL error as text ("" if none), and the queue cleared. */
static const char *dd_tls_err_text(char *buf, size_t n)
{
    unsigned long e = ERR_peek_last_error();
    buf[0] = '\0';
    if (e) {
        const char *reason = ERR_reason_error_string(e);
        if (reason)
            dd_msgf(buf, n, "%s", reason);
        else
            ERR_error_string_n(e, buf, n);
    }
    ERR_clear_error();
    return buf;
}

/* OpenSSL says "system lib" for a missing file: name the cause ourselves. */
static int dd_tls_check_readable(const char *path, const char *what, dd_buf *err)
{
    FILE *fp = path ? fopen(path, "r") : NULL;
    if (path && !fp) {
        dd_buf_printf(err, "cannot read %s '%s': %s", what, path, strerror(errno));
        return DD_EINVAL;
    }
    if (fp)
        fclose(fp);
    return 0;
}

static int dd_tls_no_password(char *buf, int size, int rwflag, void *arg)
{
    return 0;
}

static int dd_tls_ctx_setup(dd_tls_ctx *c, const dd_tls_ctx_opts *o, dd_buf *err)
{
    char e[256];
    if (dd_tls_check_readable(o->ca_file, "CA file", err) < 0 ||
        dd_tls_check_readable(o->cert_file, "client certificate file", err) < 0 ||
        dd_tls_check_readable(o->key_file, "client key file", err) < 0)
        return DD_EINVAL;
    if (o->key_file && !o->cert_file) {
        dd_buf_printf(err, "a client key file ('%s') needs a client certificate file too",
                      o->key_file);
        return DD_EINVAL;
    }
    c->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ssl_ctx) {
        dd_buf_printf(err, "cannot create a TLS context: %s", dd_tls_err_text(e, sizeof(e)));
        return DD_EINVAL;
    }
    SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION);
    /* an encrypted key must fail, not prompt on the daemon's terminal */
    SSL_CTX_set_default_passwd_cb(c->ssl_ctx, dd_tls_no_password);
    SSL_CTX_set_verify(c->ssl_ctx, SSL_VERIFY_PEER, NULL);
    if (o->alpn && SSL_CTX_set_alpn_protos(c->ssl_ctx, o->alpn, (unsigned)o->alpn_len) != 0) {
        dd_buf_printf(err, "cannot set ALPN: %s", dd_tls_err_text(e, sizeof(e)));
        return DD_EINVAL;
    }
    if (o->ca_file) {
        if (SSL_CTX_load_verify_locations(c->ssl_ctx, o->ca_file, NULL) != 1) {
            dd_buf_printf(err, "cannot load CA file '%s': %s", o->ca_file,
                          dd_tls_err_text(e, sizeof(e)));
            return DD_EINVAL;
        }
    } else if (SSL_CTX_set_default_verify_paths(c->ssl_ctx) != 1) {
        dd_buf_printf(err, "cannot load the system CA store: %s", dd_tls_err_text(e, sizeof(e)));
        return DD_EINVAL;
    }
    if (o->cert_file) {
        const char *key = o->key_file ? o->key_file : o->cert_file;
        if (SSL_CTX_use_certificate_chain_file(c->ssl_ctx, o->cert_file) != 1) {
            dd_buf_printf(err, "cannot load client certificate file '%s': %s", o->cert_file,
                          dd_tls_err_text(e, sizeof(e)));
            return DD_EINVAL;
        }
        if (SSL_CTX_use_PrivateKey_file(c->ssl_ctx, key, SSL_FILETYPE_PEM) != 1) {
            dd_buf_printf(err, "cannot load client key file '%s': %s", key,
                          dd_tls_err_text(e, sizeof(e)));
            return DD_EINVAL;
        }
        if (SSL_CTX_check_private_key(c->ssl_ctx) != 1) {
            dd_buf_printf(err, "client key '%s' does not match certificate '%s'", key,
                          o->cert_file);
            ERR_clear_error();
            return DD_EINVAL;
        }
        c->has_cert = true;
    }
    return 0;
}

int dd_tls_ctx_new(const dd_tls_ctx_opts *o, dd_tls_ctx **out, dd_buf *err)
{
    dd_tls_ctx *c = dd_xcalloc(1, sizeof(*c));
    *out = NULL;
    c->refs = 1;
    c->opt_prefix = dd_strdup(o->opt_prefix ? o->opt_prefix : "");
    int rc = dd_tls_ctx_setup(c, o, err);
    if (rc < 0) {
        dd_tls_ctx_unref(c);
        return rc;
    }
    *out = c;
    return 0;
}

dd_tls_ctx *dd_tls_ctx_ref(dd_tls_ctx *c)
{
    if (c)
        c->refs++;
    return c;
}

bool dd_tls_ctx_has_cert(const dd_tls_ctx *c)
{
    return c && c->has_cert;
}

void dd_tls_ctx_unref(dd_tls_ctx *c)
{
    if (!c || --c->refs > 0)
        return;
    if (c->ssl_ctx)
        SSL_CTX_free(c->ssl_ctx);
    free(c->opt_prefix);
    free(c);
}

int dd_tls_new(dd_tls_ctx *ctx, const char *host, dd_tls **out, char *err, size_t errlen)
{
    dd_tls *t = dd_xcalloc(1, sizeof(*t));
    unsigned char a[sizeof(struct in6_addr)];
    *out = NULL;
    t->ctx = dd_tls_ctx_ref(ctx);
    t->host = dd_strdup(host);
    t->ssl = SSL_new(ctx->ssl_ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        BIO_free(t->rbio); /* not attached yet: ours */
        BIO_free(t->wbio);
        if (t->ssl)
            SSL_free(t->ssl);
        t->ssl = NULL;
        ERR_clear_error();
        dd_tls_free(t);
        dd_msgf(err, errlen, "TLS with %s: out of memory", host);
        return -ENOMEM;
    }
    BIO_set_mem_eof_return(t->rbio, -1); /* empty means "wait", not EOF */
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_connect_state(t->ssl);
    /* the name (or address) the certificate must carry: never skip it */
    bool numeric = inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
    int ok = numeric ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host)
                     : SSL_set_tlsext_host_name(t->ssl, host) == 1 &&
                           SSL_set1_host(t->ssl, host) == 1;
    if (!ok) {
        ERR_clear_error();
        dd_tls_free(t);
        dd_msgf(err, errlen, "TLS with %s: cannot set the name to verify", host);
        return -EACCES;
    }
    *out = t;
    return 0;
}

void dd_tls_free(dd_tls *t)
{
    if (!t)
        return;
    if (t->ssl)
        SSL_free(t->ssl); /* frees both BIOs */
    dd_tls_ctx_unref(t->ctx);
    free(t->host);
    free(t);
}

void dd_tls_feed(dd_tls *t, const char *p, size_t n)
{
    BIO_write(t->rbio, p, (int)n);
}

int dd_tls_handshake(dd_tls *t)
{
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1)
        return 1;
    t->last = SSL_get_error(t->ssl, r);
    return t->last == SSL_ERROR_WANT_READ ? 0 : -1;
}

/* No ERR_clear_error() before SSL_read / SSL_write: every failure path
 * empties the thread's error queue itself (dd_tls_failure,
 * dd_tls_forget_error, the context setup), so it is empty here, and
 * OpenSSL 3's error-state lookup is a visible share of a small record's
 * cost (bench/redis_tls). */
ssize_t dd_tls_read(dd_tls *t, char *buf, size_t n)
{
    /* Nothing decrypted and nothing received: the answer is "more input"
     * without the cost of a failing SSL_read. */
    if (SSL_pending(t->ssl) == 0 && BIO_ctrl_pending(t->rbio) == 0 &&
        SSL_is_init_finished(t->ssl))
        return 0;
    int r = SSL_read(t->ssl, buf, (int)n);
    if (r > 0)
        return r;
    t->last = SSL_get_error(t->ssl, r);
    if (t->last == SSL_ERROR_WANT_READ)
        return 0;
    if (t->last == SSL_ERROR_ZERO_RETURN)
        return DD_TLS_EOF;
    return DD_EPROTO;
}

int dd_tls_write(dd_tls *t, const char *p, size_t n)
{
    /* a memory BIO takes everything: all or an error */
    if (n > 0 && SSL_write(t->ssl, p, (int)n) <= 0) {
        t->last = SSL_ERROR_SSL;
        return DD_EPROTO;
    }
    return 0;
}

size_t dd_tls_take_out(dd_tls *t, dd_buf *out)
{
    /* straight from the memory BIO's buffer, then emptied: no copy through
     * a chunk, one call whatever the size */
    char *p = NULL;
    long n = BIO_get_mem_data(t->wbio, &p);
    if (n <= 0)
        return 0;
    dd_buf_append(out, p, (size_t)n);
    (void)BIO_reset(t->wbio);
    return (size_t)n;
}

bool dd_tls_buffered(const dd_tls *t)
{
    return SSL_pending(t->ssl) > 0 || BIO_ctrl_pending(t->rbio) > 0;
}

/* Alerts saying the peer refused our certificate (or us): configuration,
 * not bad luck, so another attempt would fail the same way. */
static bool dd_tls_refused_alert(unsigned long e)
{
    switch (ERR_GET_REASON(e)) {
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
        return true;
    default:
        return false;
    }
}

/* Messages lead with the cause ("TLS: wrong CA: ..."): a short reason
 * field (/readyz) keeps it even when the rest is cut. */
static void dd_tls_verify_msg(const dd_tls *t, long v, const char *peer, char *msg, size_t len)
{
    const char *p = t->ctx->opt_prefix, *what = X509_verify_cert_error_string(v);
    switch (v) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
        dd_msgf(msg, len,
                "TLS: wrong CA: the certificate of %s is not signed by a CA we trust "
                "(certificate verification failed: %s); give the CA that signed it%s%s%s",
                peer, what, *p ? " with " : "", p, *p ? "-ca-file" : "");
        return;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        dd_msgf(msg, len,
                "TLS: name mismatch: the certificate of %s does not name '%s' (certificate "
                "verification failed: %s); connect by a name or address it carries",
                peer, t->host, what);
        return;
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
        dd_msgf(msg, len,
                "TLS: certificate verification of %s failed: %s; check the certificate's dates "
                "and this host's clock",
                peer, what);
        return;
    default:
        dd_msgf(msg, len, "TLS: certificate verification of %s failed: %s", peer, what);
    }
}

int dd_tls_failure(dd_tls *t, bool handshake, const char *peer, char *msg, size_t len)
{
    char e[256];
    const char *p = t->ctx->opt_prefix;
    long v = SSL_get_verify_result(t->ssl);
    if (v != X509_V_OK) {
        ERR_clear_error();
        dd_tls_verify_msg(t, v, peer, msg, len);
        return -EACCES;
    }
    if (t->last == SSL_ERROR_SYSCALL || t->last == SSL_ERROR_WANT_READ) {
        ERR_clear_error();
        dd_msgf(msg, len, "TLS %s with %s: connection closed", handshake ? "handshake" : "session",
                peer);
        return DD_EUNAVAIL;
    }
    unsigned long err = ERR_peek_last_error();
    int reason = ERR_GET_REASON(err);
    bool final = handshake || dd_tls_refused_alert(err);
    dd_tls_err_text(e, sizeof(e));
    if (!*e)
        snprintf(e, sizeof(e), "connection closed");
    if (reason == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED ||
        (!t->ctx->has_cert && reason == SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE)) {
        if (t->ctx->has_cert)
            dd_msgf(msg, len, "TLS: client certificate required: %s did not take ours (%s)", peer,
                    e);
        else
            dd_msgf(msg, len,
                    "TLS: client certificate required: %s asks for one and none was given (%s)"
                    "%s%s%s%s%s",
                    peer, e, *p ? "; give one with " : "", p, *p ? "-cert-file and " : "", p,
                    *p ? "-key-file" : "");
    } else if (reason == SSL_R_TLSV1_ALERT_UNKNOWN_CA ||
               reason == SSL_R_SSLV3_ALERT_BAD_CERTIFICATE ||
               reason == SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN) {
        dd_msgf(msg, len,
                "TLS: client certificate refused: %s does not accept ours (%s); is it signed by "
                "a CA the server trusts?",
                peer, e);
    } else {
        dd_msgf(msg, len, "TLS %s with %s failed: %s", handshake ? "handshake" : "session", peer,
                e);
    }
    return final ? -EACCES : DD_EUNAVAIL;
}

void dd_tls_forget_error(dd_tls *t)
{
    ERR_clear_error();
}
