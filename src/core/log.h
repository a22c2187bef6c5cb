/* log.h - structured logs, one logfmt line per event.
 *
 *   ts=2026-11-23T12:00:00.123Z level=info event=takeover workflow_id=... run_id=...
 *
 * or, with DD_LOG_JSON (--log-format json), the same record as one JSON object
 * per line: {"ts":"2026-...","level":"info","event":"takeover","workflow_id":...}.
 * The JSON is made from the finished logfmt line, so both formats carry the
 * same keys and values, and secrets are scrubbed before either is written.
 * Bare values that are JSON numbers, true, false or null stay literals;
 * everything else is a string; bytes that are not UTF-8 become U+FFFD.
 *
 * The format string of dd_logf() is a list of key=value pairs in printf
 * syntax. Every %s value is quoted and escaped when it needs to be, so a
 * value can never forge another key. Supported conversions: %s %d %i %u %ld
 * %lu %lld %llu %zu %x %f and %.Nf. A logger also scrubs registered secrets
 * (passwords, API keys) from every line as a last line of defence: callers
 * should not pass secrets in the first place. */
#ifndef DD_CORE_LOG_H
#define DD_CORE_LOG_H

#include <stdio.h>

typedef enum dd_log_level {
    DD_LOG_DEBUG = 0,
    DD_LOG_INFO = 1,
    DD_LOG_WARN = 2,
    DD_LOG_ERROR = 3,
} dd_log_level;

typedef enum dd_log_format {
    DD_LOG_LOGFMT = 0,
    DD_LOG_JSON = 1,
} dd_log_format;

typedef struct dd_log dd_log;

/* out is borrowed (not closed by dd_log_free). Never NULL (no handle, and
 * out of memory aborts: CONTRIBUTING.md, "Lifecycle"). */
dd_log *dd_log_new(FILE *out, dd_log_level level);
void dd_log_free(dd_log *log);
void dd_log_set_level(dd_log *log, dd_log_level level);
/* Parses "debug", "info", "warn", "error"; returns 0 or DD_EINVAL. */
int dd_log_level_parse(const char *s, dd_log_level *out);
/* Parses "logfmt" or "json"; returns 0 or DD_EINVAL. */
int dd_log_format_parse(const char *s, dd_log_format *out);
void dd_log_set_format(dd_log *log, dd_log_format format);
/* Any line that would contain secret is written with it replaced by "***":
 * in %s values and fields before they are escaped (a secret holding '"' or
 * '\' looks different once escaped), then in the finished line as given and
 * as escaped. The logger keeps its own copy (wiped when freed). Secrets
 * shorter than 4 bytes are ignored (they would scrub ordinary words). */
void dd_log_add_secret(dd_log *log, const char *secret);
/* Adds a key=value pair to every line (e.g. server_id, component). */
void dd_log_add_field(dd_log *log, const char *key, const char *value);

/* The compiler checks every call's values against fmt (printf rules). */
void dd_logf(dd_log *log, dd_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define dd_debug(log, event, ...) dd_logf((log), DD_LOG_DEBUG, (event), __VA_ARGS__)
#define dd_info(log, event, ...) dd_logf((log), DD_LOG_INFO, (event), __VA_ARGS__)
#define dd_warn(log, event, ...) dd_logf((log), DD_LOG_WARN, (event), __VA_ARGS__)
#define dd_error(log, event, ...) dd_logf((log), DD_LOG_ERROR, (event), __VA_ARGS__)

/* Appends v to b as a logfmt value (quoted if it contains space, '=', '"',
 * control characters or is empty). Exposed for tests and for status output. */
struct dd_buf;
void dd_logfmt_value(struct dd_buf *b, const char *v);

#endif
