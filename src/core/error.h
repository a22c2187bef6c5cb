/* error.h - one error space for all of dispatchd.
 *
 * Functions that act return 0 on success or a negative code: either -errno
 * (e.g. -ENOENT) or one of the DD_E* codes below, which live far below the
 * errno range so the two never collide. dd_strerror() names both. */
#ifndef DD_CORE_ERROR_H
#define DD_CORE_ERROR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

enum {
    DD_EBASE = -10000,
    DD_EINVAL = DD_EBASE - 1,     /* bad input from the user or caller */
    DD_ETIMEOUT = DD_EBASE - 2,   /* an operation exceeded its deadline */
    DD_EPROTO = DD_EBASE - 3,     /* a peer answered something we cannot parse */
    DD_EHTTP = DD_EBASE - 4,      /* an HTTP status we do not handle */
    DD_ECONFLICT = DD_EBASE - 5,  /* already exists / already running */
    DD_ENOTFOUND = DD_EBASE - 6,  /* the thing asked about does not exist */
    DD_EFENCED = DD_EBASE - 7,    /* a write was rejected: someone newer holds it */
    DD_EBUSY = DD_EBASE - 8,      /* held by someone else (lock, port) */
    DD_EUNAVAIL = DD_EBASE - 9,   /* a dependency is down (connection refused, 5xx) */
    DD_ECANCELED = DD_EBASE - 10, /* the operation was cancelled by shutdown */
    DD_ERATELIMIT = DD_EBASE - 11, /* the peer asked us to slow down (429) */
    DD_ECORRUPT = DD_EBASE - 12,  /* a file or record does not have the expected shape */
    DD_EUNHEALTHY = DD_EBASE - 13, /* a process is alive but does not answer */
    DD_ELAST = DD_EBASE - 14,
};

/* A static string naming err (either -errno or DD_E*). Never NULL. */
const char *dd_strerror(int err);

/* snprintf for a bounded human-readable message (an error text, a health
 * detail, a terminate reason) into out[n]: when the text does not fit, it
 * ends in "..." so the cut shows. Returns true when it fit. Only for
 * messages: a name, path, ID or key that does not fit must be refused or
 * built in a dd_buf instead (a cut name can make two dispatchers one).
 * n == 0 writes nothing. */
bool dd_msgf(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool dd_vmsgf(char *out, size_t n, const char *fmt, va_list ap);

#endif
