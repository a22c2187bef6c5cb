/* conn.h - one Redis connection on a libuv loop: dispatchd's own transport
 * in place of hiredis' async context.
 *
 * Why our own: Debian 12's hiredis (0.14) has no TLS and no way to plug in
 * another transport, and its async context does blocking name resolution.
 * What hiredis does well stays hiredis': commands are formatted by
 * redisFormatCommandArgv and replies are parsed by its redisReader (no
 * RESP parser of ours). This file owns only the bytes in between: name
 * resolution (uv_getaddrinfo, every address tried in order; a numeric
 * address without it), the socket (uv_tcp for host:port, uv_pipe for a
 * unix socket), the write queue, and matching replies to commands.
 *
 * Replies come back in the order the commands went out, so a connection
 * keeps a FIFO of the privdata of every command that expects a reply; each
 * reply pops one and goes to on_reply with it. A connection in subscribe
 * mode (opts.on_push set) hands the messages Redis pushes on its own
 * (arrays headed "message", "pmessage", "subscribe", "unsubscribe",
 * "psubscribe", "punsubscribe") to on_push instead; send SUBSCRIBE with
 * expect_reply false, since its confirmations are such pushes. Set on_push
 * only on a connection dedicated to SUBSCRIBE (and PING): an ordinary reply
 * could be an array that starts with "message".
 *
 * Commands may be sent right after dd_store_conn_new: they wait in the
 * write buffer until the socket is connected, then go out in order (the
 * caller's handshake first, if it sent it first).
 *
 * Ownership: opts and its strings are copied. The reply passed to on_reply
 * / on_push is owned by the connection and freed when the callback returns.
 *
 * Callbacks run from the loop, never inside a dd_store_conn_* call.
 * on_fail runs at most once: the connection could not be made, was lost, or
 * the peer broke the protocol; after it nothing more is delivered, the
 * replies still owed never come (the caller fails what waited for them:
 * it knows its privdata) and the caller closes the connection. Closing
 * (from anywhere, callbacks included) delivers nothing more either; done
 * runs from the loop once every handle is closed, then the memory is gone. */
#ifndef DD_STORE_CONN_H
#define DD_STORE_CONN_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct dd_store_conn dd_store_conn;

typedef struct dd_store_conn_opts {
    const char *host; /* TCP: a name or an address (IPv6 without brackets) */
    int port;
    const char *path;           /* a unix socket instead of host:port */
    int64_t connect_timeout_ms; /* per address tried; 0: 5000 */

    /* The socket is connected: commands are on their way. May be NULL. */
    void (*on_connected)(void *arg);
    /* The reply to the command sent with privdata. */
    void (*on_reply)(void *arg, void *privdata, redisReply *rep);
    /* Subscribe mode only (see above); NULL for an ordinary connection. */
    void (*on_push)(void *arg, redisReply *rep);
    /* status: DD_EUNAVAIL (cannot connect, connection lost), DD_ETIMEOUT
     * (no address answered within connect_timeout_ms), DD_EPROTO (a reply
     * hiredis' reader refused, or one nobody asked for); msg says what
     * happened in words ("Connection refused", "the server closed the
     * connection"). */
    void (*on_fail)(void *arg, int status, const char *msg);
    void *arg;
} dd_store_conn_opts;

/* Starts connecting. 0, or DD_EINVAL (no target, no on_reply/on_fail) with
 * the reason in err. */
int dd_store_conn_new(uv_loop_t *loop, const dd_store_conn_opts *opts, dd_store_conn **out,
                      char *err, size_t errlen);

/* Formats argv (argvlen NULL: NUL-terminated strings) with hiredis and
 * queues it. expect_reply false: no reply is matched to it (SUBSCRIBE).
 * 0, or DD_EUNAVAIL once the connection has failed or is closing. */
int dd_store_conn_command(dd_store_conn *c, int argc, const char **argv, const size_t *argvlen,
                          bool expect_reply, void *privdata);
/* The same for a command already formatted (copied). */
int dd_store_conn_write(dd_store_conn *c, const char *cmd, size_t len, bool expect_reply,
                        void *privdata);

/* True once the socket is connected (and until it fails). */
bool dd_store_conn_connected(const dd_store_conn *c);

/* Stops everything; no callback but done (may be NULL) runs after this. */
void dd_store_conn_close(dd_store_conn *c, void (*done)(void *arg), void *arg);

#endif
