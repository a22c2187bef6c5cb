/* buf.h - a growable byte buffer, always NUL-terminated.
 *
 * Allocation failure aborts: a daemon that cannot allocate a few hundred
 * bytes has nothing useful left to do, and checking every append would bury
 * the logic (same choice as hiredis' sds users and git's strbuf). */
#ifndef DD_CORE_BUF_H
#define DD_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct dd_buf {
    char *data; /* NUL-terminated; NULL until the first append */
    size_t len;
    size_t cap;
} dd_buf;

#define DD_BUF_INIT {NULL, 0, 0}

void dd_buf_append(dd_buf *b, const char *s, size_t n);
void dd_buf_puts(dd_buf *b, const char *s);
void dd_buf_putc(dd_buf *b, char c);
void dd_buf_printf(dd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void dd_buf_vprintf(dd_buf *b, const char *fmt, va_list ap);
void dd_buf_reset(dd_buf *b);
/* Returns the contents ("" when empty), still owned by b. */
const char *dd_buf_str(const dd_buf *b);
/* Hands the heap string to the caller (who frees it) and empties b. */
char *dd_buf_detach(dd_buf *b);
void dd_buf_release(dd_buf *b);

/* Small string helpers. The caller frees what dd_strdup and dd_strdupf
 * return. dd_strdupf: printf into a new heap string of whatever length it
 * takes (paths, names: never cut). */
char *dd_strdup(const char *s);
/* Wipes the NUL-terminated secret s (a password, an API key) and frees it;
 * NULL is a no-op. The wipe cannot be optimised away: a memset right before
 * free is a dead store that compilers remove (GCC -O2 does). */
void dd_secret_free(char *s);
char *dd_strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void *dd_xmalloc(size_t n);
void *dd_xcalloc(size_t n, size_t sz);
void *dd_xrealloc(void *p, size_t n);

#endif
