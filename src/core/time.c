#include "core/time.h"

#include "core/error.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

uint64_t dd_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t dd_mono_ms(void)
{
    return dd_mono_us() / 1000u;
}

int64_t dd_boot_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t dd_boot_ms(void)
{
    return dd_boot_us() / 1000;
}

int64_t dd_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t dd_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int dd_duration_parse(const char *s, int64_t *out_ms)
{
    if (!s || !*s)
        return DD_EINVAL;
    const char *p = s;
    int64_t total = 0;
    int parts = 0;
    while (*p) {
        if (!isdigit((unsigned char)*p))
            return DD_EINVAL;
        int64_t v = 0;
        while (isdigit((unsigned char)*p)) {
            if (v > (INT64_MAX - 9) / 10)
                return DD_EINVAL;
            v = v * 10 + (*p - '0');
            p++;
        }
        int64_t mult;
        if (strncmp(p, "ms", 2) == 0) {
            mult = 1;
            p += 2;
        } else if (*p == 's') {
            mult = 1000;
            p++;
        } else if (*p == 'm') {
            mult = 60 * 1000;
            p++;
        } else if (*p == 'h') {
            mult = 3600 * 1000;
            p++;
        } else if (*p == '\0' && parts == 0) {
            mult = 1000; /* a bare number means seconds */
        } else {
            return DD_EINVAL;
        }
        if (v > (INT64_MAX - total) / mult)
            return DD_EINVAL;
        total += v * mult;
        parts++;
    }
    *out_ms = total;
    return 0;
}

void dd_duration_format(int64_t ms, char *out, size_t outlen)
{
    if (ms < 0)
        snprintf(out, outlen, "-");
    else if (ms < 1000)
        snprintf(out, outlen, "%lldms", (long long)ms);
    else if (ms < 60000 && ms % 1000)
        snprintf(out, outlen, "%.1fs", (double)ms / 1000.0);
    else if (ms < 60000)
        snprintf(out, outlen, "%llds", (long long)ms / 1000);
    else if (ms < 3600000)
        snprintf(out, outlen, "%lldm%llds", (long long)ms / 60000, (long long)(ms / 1000) % 60);
    else
        snprintf(out, outlen, "%lldh%lldm", (long long)ms / 3600000,
                 (long long)(ms / 60000) % 60);
}

void dd_rng_seed(dd_rng *r, uint64_t seed)
{
    if (seed == 0) {
        if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
            seed = dd_mono_us() ^ (uint64_t)dd_wall_ms() << 20;
    }
    r->s = seed ? seed : 0x9e3779b97f4a7c15ull;
}

uint64_t dd_rng_next(dd_rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545f4914f6cdd1dull;
}

double dd_rng_unit(dd_rng *r)
{
    return (double)(dd_rng_next(r) >> 11) / (double)(1ull << 53);
}
