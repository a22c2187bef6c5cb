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
    dd_log_format format;
    char *secrets[DD_LOG_MAX_SECRETS];
    char *escaped[DD_LOG_MAX_SECRETS]; /* as a quoted logfmt value holds it; NULL: same */
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
    for (int i = 0; i < log->nsecrets; i++) {
        dd_secret_free(log->secrets[i]);
        dd_secret_free(log->escaped[i]);
    }
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

int dd_log_format_parse(const char *s, dd_log_format *out)
{
    if (!strcmp(s, "logfmt"))
        *out = DD_LOG_LOGFMT;
    else if (!strcmp(s, "json"))
        *out = DD_LOG_JSON;
    else
        return DD_EINVAL;
    return 0;
}

void dd_log_set_format(dd_log *log, dd_log_format format)
{
    log->format = format;
}

void dd_log_add_secret(dd_log *log, const char *secret)
{
    if (!secret || strlen(secret) < 4 || log->nsecrets == DD_LOG_MAX_SECRETS)
        return;
    /* The escaped form: what a line holds of a value it had to quote
     * (pa"ss -> pa\"ss), for text escaped before the secret was known. */
    dd_buf esc = DD_BUF_INIT;
    dd_logfmt_value(&esc, secret);
    char *e = NULL;
    if (esc.data[0] == '"' && (esc.len - 2 != strlen(secret) ||
                               memcmp(esc.data + 1, secret, esc.len - 2) != 0)) {
        e = dd_xmalloc(esc.len - 1);
        memcpy(e, esc.data + 1, esc.len - 2);
        e[esc.len - 2] = '\0';
    }
    explicit_bzero(esc.data, esc.len);
    dd_buf_release(&esc);
    log->escaped[log->nsecrets] = e;
    log->secrets[log->nsecrets++] = dd_strdup(secret);
}

/* Appends s with every registered secret replaced by "***": as given, and
 * (escaped) also in its escaped form. One pass: a replacement is never
 * scanned again. */
static void dd_log_scrub_into(const dd_log *log, dd_buf *out, const char *s, bool escaped)
{
    bool any = false;
    for (int i = 0; i < log->nsecrets && !any; i++)
        any = strstr(s, log->secrets[i]) || (escaped && log->escaped[i] &&
                                             strstr(s, log->escaped[i]));
    if (!any) {
        dd_buf_puts(out, s);
        return;
    }
    while (*s) { /* bounded by strlen(s): every turn consumes >= 1 byte */
        size_t hit = 0;
        for (int i = 0; i < log->nsecrets && !hit; i++) {
            size_t n = strlen(log->secrets[i]);
            if (strncmp(s, log->secrets[i], n) == 0)
                hit = n;
            else if (escaped && log->escaped[i] &&
                     strncmp(s, log->escaped[i], strlen(log->escaped[i])) == 0)
                hit = strlen(log->escaped[i]);
        }
        if (hit) {
            dd_buf_puts(out, "***");
            s += hit;
        } else {
            dd_buf_putc(out, *s++);
        }
    }
}

/* A value as logfmt, secrets replaced before it is escaped: once escaped,
 * a secret holding '"' or '\' no longer looks like itself. */
static void dd_log_value(const dd_log *log, dd_buf *b, const char *v)
{
    if (!v || log->nsecrets == 0) {
        dd_logfmt_value(b, v);
        return;
    }
    dd_buf clean = DD_BUF_INIT;
    dd_log_scrub_into(log, &clean, v, false);
    dd_logfmt_value(b, dd_buf_str(&clean));
    dd_buf_release(&clean);
}

void dd_log_add_field(dd_log *log, const char *key, const char *value)
{
    dd_buf_printf(&log->fields, " %s=", key);
    dd_log_value(log, &log->fields, value);
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
static const char *dd_log_conv(const dd_log *log, dd_buf *b, const char *spec, va_list *ap)
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
        dd_log_value(log, b, va_arg(*ap, const char *));
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

/* Last line of defence, over the finished line: text escaped before a secret
 * was registered (fields), or passed outside a %s. */
static void dd_log_scrub(const dd_log *log, dd_buf *line)
{
    if (log->nsecrets == 0)
        return;
    dd_buf out = DD_BUF_INIT;
    dd_log_scrub_into(log, &out, dd_buf_str(line), true);
    dd_buf_release(line);
    *line = out;
}

/* ---- JSON: the finished logfmt line, one member per key=value ---------- */

/* Length of the valid UTF-8 sequence at p (1..4), 0 if there is none. */
static size_t dd_log_utf8_len(const unsigned char *p)
{
    if (p[0] < 0x80)
        return 1;
    size_t n = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 0;
    if (n == 0 || p[0] > 0xf4)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0; /* also stops at the NUL */
    /* overlong 3- and 4-byte forms, surrogates, above U+10FFFF */
    if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0) ||
        (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))
        return 0;
    return n;
}

/* One character of a JSON string from raw text; returns the bytes used. */
static size_t dd_log_json_char(dd_buf *b, const char *p)
{
    unsigned char c = (unsigned char)*p;
    if (c == '"' || c == '\\') {
        dd_buf_putc(b, '\\');
        dd_buf_putc(b, (char)c);
        return 1;
    }
    if (c < 0x20 || c == 0x7f) {
        dd_buf_printf(b, "\\u%04x", c);
        return 1;
    }
    size_t n = dd_log_utf8_len((const unsigned char *)p);
    if (n == 0) {
        dd_buf_puts(b, "\\ufffd");
        return 1;
    }
    dd_buf_append(b, p, n);
    return n;
}

static void dd_log_json_string(dd_buf *b, const char *s, size_t n)
{
    dd_buf_putc(b, '"');
    for (size_t i = 0; i < n;)
        i += dd_log_json_char(b, s + i);
    dd_buf_putc(b, '"');
}

/* A bare logfmt value that JSON can carry as a literal. */
static bool dd_log_json_literal(const char *v, size_t n)
{
    if ((n == 4 && !memcmp(v, "true", 4)) || (n == 5 && !memcmp(v, "false", 5)) ||
        (n == 4 && !memcmp(v, "null", 4)))
        return true;
    size_t i = 0;
    if (i < n && v[i] == '-')
        i++;
    if (i == n || !(v[i] >= '0' && v[i] <= '9'))
        return false;
    if (v[i] == '0')
        i++;
    else
        while (i < n && v[i] >= '0' && v[i] <= '9')
            i++;
    if (i < n && v[i] == '.') {
        size_t d = ++i;
        while (i < n && v[i] >= '0' && v[i] <= '9')
            i++;
        if (i == d)
            return false;
    }
    if (i < n && (v[i] == 'e' || v[i] == 'E')) {
        i++;
        if (i < n && (v[i] == '+' || v[i] == '-'))
            i++;
        size_t d = i;
        while (i < n && v[i] >= '0' && v[i] <= '9')
            i++;
        if (i == d)
            return false;
    }
    return i == n;
}

static int dd_log_hex(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* line (logfmt, as dd_logf builds it) as a JSON object into out; false if
 * it is not key=value pairs (then out holds a partial object). */
static bool dd_log_json(const char *line, dd_buf *out)
{
    const char *p = line;
    bool first = true;
    dd_buf_putc(out, '{');
    while (*p) { /* every turn consumes a pair or fails */
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        const char *k = p;
        while (*p && *p != '=' && *p != ' ' && *p != '"')
            p++;
        if (*p != '=' || p == k)
            return false;
        if (!first)
            dd_buf_putc(out, ',');
        first = false;
        dd_log_json_string(out, k, (size_t)(p - k));
        dd_buf_putc(out, ':');
        p++;
        if (*p != '"') {
            const char *v = p;
            while (*p && *p != ' ')
                p++;
            if (dd_log_json_literal(v, (size_t)(p - v)))
                dd_buf_append(out, v, (size_t)(p - v));
            else
                dd_log_json_string(out, v, (size_t)(p - v));
            continue;
        }
        p++;
        dd_buf_putc(out, '"');
        while (*p && *p != '"') {
            if (*p != '\\') {
                p += dd_log_json_char(out, p);
                continue;
            }
            p++;
            switch (*p) {
            case '"': dd_buf_puts(out, "\\\""); p++; break;
            case '\\': dd_buf_puts(out, "\\\\"); p++; break;
            case 'n': dd_buf_puts(out, "\\n"); p++; break;
            case 'r': dd_buf_puts(out, "\\r"); p++; break;
            case 't': dd_buf_puts(out, "\\t"); p++; break;
            case 'x': {
                int hi = p[1] ? dd_log_hex(p[1]) : -1;
                int lo = hi >= 0 && p[2] ? dd_log_hex(p[2]) : -1;
                if (lo < 0)
                    return false;
                dd_buf_printf(out, "\\u%04x", hi * 16 + lo);
                p += 3;
                break;
            }
            default:
                return false;
            }
        }
        if (*p != '"')
            return false;
        p++;
        dd_buf_putc(out, '"');
        if (*p && *p != ' ')
            return false;
    }
    dd_buf_putc(out, '}');
    return true;
}

/* The line in JSON; a line that is not pairs (a format string with a bare
 * word) is kept whole, as a string, so the record stays one valid object. */
static void dd_log_to_json(dd_buf *line, dd_log_level level, const char *event)
{
    dd_buf out = DD_BUF_INIT;
    if (!dd_log_json(dd_buf_str(line), &out)) {
        dd_buf_reset(&out);
        dd_buf_printf(&out, "{\"level\":\"%s\",\"event\":", dd_level_names[level]);
        dd_log_json_string(&out, event, strlen(event));
        dd_buf_puts(&out, ",\"logfmt\":");
        dd_log_json_string(&out, dd_buf_str(line), line->len);
        dd_buf_putc(&out, '}');
    }
    dd_buf_release(line);
    *line = out;
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
                p = dd_log_conv(log, &line, p, &ap);
            } else {
                dd_buf_putc(&line, *p);
                p++;
            }
        }
        va_end(ap);
    }
    dd_log_scrub(log, &line);
    if (log->format == DD_LOG_JSON)
        dd_log_to_json(&line, level, event);
    dd_buf_putc(&line, '\n');
    fwrite(line.data, 1, line.len, log->out);
    fflush(log->out);
    dd_buf_release(&line);
}
