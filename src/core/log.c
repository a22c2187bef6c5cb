#include "core/log.h"

#include "core/buf.h"
#include "core/error.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DD_LOG_MAX_SECRETS 8

struct dd_log {
    FILE *out;
    dd_log_level level;
    char *secrets[DD_LOG_MAX_SECRETS];
    int nsecrets;
    dd_buf fields; /* " key=value" pairs added to every line */
};

static const char *const dd_level_names[] = {"debug", "info", "warn", "error"};

dd_log *dd_log_new(FILE *out, dd_log_level level)
{
    dd_log *log = dd_xcalloc(1, sizeof(*log));
    log->out = out;
    log->level = level;
    return log;
}

void dd_log_free(dd_log *log)
{
    if (!log)
        return;
    for (int i = 0; i < log->nsecrets; i++)
        free(log->secrets[i]);
    dd_buf_release(&log->fields);
    free(log);
}

void dd_log_set_level(dd_log *log, dd_log_level level)
{
    log->level = level;
}

int dd_log_level_parse(const char *s, dd_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, dd_level_names[i]) == 0) {
            *out = (dd_log_level)i;
            return 0;
        }
    }
    return DD_EINVAL;
}

void dd_log_add_secret(dd_log *log, const char *secret)
{
    if (!secret || strlen(secret) < 4 || log->nsecrets == DD_LOG_MAX_SECRETS)
        return;
    log->secrets[log->nsecrets++] = dd_strdup(secret);
}

void dd_log_add_field(dd_log *log, const char *key, const char *value)
{
    dd_buf_printf(&log->fields, " %s=", key);
    dd_logfmt_value(&log->fields, value);
}

void dd_logfmt_value(dd_buf *b, const char *v)
{
    if (!v) {
        dd_buf_puts(b, "null");
        return;
    }
    bool quote = (*v == '\0');
    for (const char *p = v; *p && !quote; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= ' ' || c == '=' || c == '"' || c == '\\' || c == 0x7f)
            quote = true;
    }
    if (!quote) {
        dd_buf_puts(b, v);
        return;
    }
    dd_buf_putc(b, '"');
    for (const char *p = v; *p; p++) {
        unsigned char c = (unsigned char)*p;
        switch (c) {
        case '"': dd_buf_puts(b, "\\\""); break;
        case '\\': dd_buf_puts(b, "\\\\"); break;
        case '\n': dd_buf_puts(b, "\\n"); break;
        case '\r': dd_buf_puts(b, "\\r"); break;
        case '\t': dd_buf_puts(b, "\\t"); break;
        default:
            if (c < 0x20 || c == 0x7f)
                dd_buf_printf(b, "\\x%02x", c);
            else
                dd_buf_putc(b, (char)c);
        }
    }
    dd_buf_putc(b, '"');
}

/* Formats one conversion spec (from '%' up to and including the conversion
 * character) with the next va_arg of the matching type. */
static const char *dd_log_conv(dd_buf *b, const char *spec, va_list *ap)
{
    char one[16];
    const char *p = spec + 1;
    while (*p && strchr("0123456789.-+ #", *p))
        p++;
    int lmod = 0; /* 0 none, 1 l, 2 ll, 3 z */
    if (p[0] == 'l' && p[1] == 'l') {
        lmod = 2;
        p += 2;
    } else if (p[0] == 'l') {
        lmod = 1;
        p++;
    } else if (p[0] == 'z') {
        lmod = 3;
        p++;
    }
    char conv = *p;
    size_t n = (size_t)(p - spec) + 1;
    if (n >= sizeof(one) || conv == '\0') {
        dd_buf_puts(b, "?");
        return conv ? p + 1 : p;
    }
    memcpy(one, spec, n);
    one[n] = '\0';
    switch (conv) {
    case 's':
        dd_logfmt_value(b, va_arg(*ap, const char *));
        break;
    case 'd': case 'i':
        if (lmod == 2)
            dd_buf_printf(b, one, va_arg(*ap, long long));
        else if (lmod == 1)
            dd_buf_printf(b, one, va_arg(*ap, long));
        else if (lmod == 3)
            dd_buf_printf(b, one, va_arg(*ap, size_t));
        else
            dd_buf_printf(b, one, va_arg(*ap, int));
        break;
    case 'u': case 'x':
        if (lmod == 2)
            dd_buf_printf(b, one, va_arg(*ap, unsigned long long));
        else if (lmod == 1)
            dd_buf_printf(b, one, va_arg(*ap, unsigned long));
        else if (lmod == 3)
            dd_buf_printf(b, one, va_arg(*ap, size_t));
        else
            dd_buf_printf(b, one, va_arg(*ap, unsigned));
        break;
    case 'f': case 'g':
        dd_buf_printf(b, one, va_arg(*ap, double));
        break;
    case 'c':
        dd_buf_printf(b, one, va_arg(*ap, int));
        break;
    case '%':
        dd_buf_putc(b, '%');
        break;
    default:
        dd_buf_puts(b, "?");
    }
    return p + 1;
}

static void dd_log_scrub(const dd_log *log, dd_buf *line)
{
    for (int i = 0; i < log->nsecrets; i++) {
        const char *s = log->secrets[i];
        size_t sl = strlen(s);
        char *hit;
        while ((hit = strstr(line->data, s)) != NULL) {
            dd_buf out = DD_BUF_INIT;
            dd_buf_append(&out, line->data, (size_t)(hit - line->data));
            dd_buf_puts(&out, "***");
            dd_buf_puts(&out, hit + sl);
            dd_buf_release(line);
            *line = out;
        }
    }
}

void dd_logf(dd_log *log, dd_log_level level, const char *event, const char *fmt, ...)
{
    if (!log || level < log->level)
        return;
    dd_buf line = DD_BUF_INIT;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char tbuf[32];
    strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);
    dd_buf_printf(&line, "ts=%s.%03ldZ level=%s event=", tbuf, ts.tv_nsec / 1000000L,
                  dd_level_names[level]);
    dd_logfmt_value(&line, event);
    dd_buf_puts(&line, dd_buf_str(&log->fields));
    if (fmt && *fmt) {
        dd_buf_putc(&line, ' ');
        va_list ap;
        va_start(ap, fmt);
        const char *p = fmt;
        while (*p) {
            if (*p == '%') {
                p = dd_log_conv(&line, p, &ap);
            } else {
                dd_buf_putc(&line, *p);
                p++;
            }
        }
        va_end(ap);
    }
    dd_log_scrub(log, &line);
    dd_buf_putc(&line, '\n');
    fwrite(line.data, 1, line.len, log->out);
    fflush(log->out);
    dd_buf_release(&line);
}
