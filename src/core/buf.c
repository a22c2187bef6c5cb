#include "core/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void dd_oom(void)
{
    fputs("dispatchd: out of memory\n", stderr);
    abort();
}

void *dd_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        dd_oom();
    return p;
}

void *dd_xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p)
        dd_oom();
    return p;
}

void *dd_xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        dd_oom();
    return p;
}

char *dd_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = dd_xmalloc(n);
    memcpy(d, s, n);
    return d;
}

void dd_secret_free(char *s)
{
    if (!s)
        return;
    explicit_bzero(s, strlen(s));
    free(s);
}

char *dd_strdupf(const char *fmt, ...)
{
    dd_buf b = DD_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    dd_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    return dd_buf_detach(&b);
}

static void dd_buf_grow(dd_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->data = dd_xrealloc(b->data, cap);
    b->cap = cap;
}

void dd_buf_append(dd_buf *b, const char *s, size_t n)
{
    dd_buf_grow(b, n);
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void dd_buf_puts(dd_buf *b, const char *s)
{
    dd_buf_append(b, s, strlen(s));
}

void dd_buf_putc(dd_buf *b, char c)
{
    dd_buf_append(b, &c, 1);
}

void dd_buf_vprintf(dd_buf *b, const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    int n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    if (n <= 0)
        return;
    dd_buf_grow(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void dd_buf_printf(dd_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dd_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void dd_buf_reset(dd_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

const char *dd_buf_str(const dd_buf *b)
{
    return b->data ? b->data : "";
}

char *dd_buf_detach(dd_buf *b)
{
    char *s = b->data ? b->data : dd_strdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    return s;
}

void dd_buf_release(dd_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
