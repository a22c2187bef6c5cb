#include "core/error.h"

#include <stdio.h>
#include <string.h>

static const char *const dd_error_names[] = {
    [-(DD_EINVAL - DD_EBASE)] = "invalid argument",
    [-(DD_ETIMEOUT - DD_EBASE)] = "timed out",
    [-(DD_EPROTO - DD_EBASE)] = "protocol error",
    [-(DD_EHTTP - DD_EBASE)] = "unexpected HTTP status",
    [-(DD_ECONFLICT - DD_EBASE)] = "already exists",
    [-(DD_ENOTFOUND - DD_EBASE)] = "not found",
    [-(DD_EFENCED - DD_EBASE)] = "fenced: held by a newer owner",
    [-(DD_EBUSY - DD_EBASE)] = "busy: held by someone else",
    [-(DD_EUNAVAIL - DD_EBASE)] = "service unavailable",
    [-(DD_ECANCELED - DD_EBASE)] = "cancelled",
    [-(DD_ERATELIMIT - DD_EBASE)] = "rate limited",
    [-(DD_ECORRUPT - DD_EBASE)] = "corrupt data",
    [-(DD_EUNHEALTHY - DD_EBASE)] = "not healthy",
};

const char *dd_strerror(int err)
{
    if (err == 0)
        return "success";
    if (err < DD_EBASE && err > DD_ELAST) {
        const char *s = dd_error_names[DD_EBASE - err];
        return s ? s : "unknown error";
    }
    if (err < 0 && err > DD_EBASE)
        return strerror(-err);
    return "unknown error";
}

bool dd_vmsgf(char *out, size_t n, const char *fmt, va_list ap)
{
    if (n == 0)
        return false;
    int k = vsnprintf(out, n, fmt, ap);
    if (k < 0) { /* an encoding error: say so rather than leave garbage */
        snprintf(out, n, "%s", n > 3 ? "..." : "");
        return false;
    }
    if ((size_t)k < n)
        return true;
    /* cut: mark it, without splitting a UTF-8 sequence before the dots */
    size_t end = n > 4 ? n - 4 : 0;
    while (end > 0 && ((unsigned char)out[end] & 0xc0) == 0x80)
        end--;
    snprintf(out + end, n - end, "%s", "...");
    return false;
}

bool dd_msgf(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool fit = dd_vmsgf(out, n, fmt, ap);
    va_end(ap);
    return fit;
}
