/* fuzz.h - what every tests/fuzz/fuzz_*.c shares: the libFuzzer entry
 * points (replay_main.c calls them the same way), a check that aborts with
 * a message (a finding for libFuzzer and for the replay test alike), and a
 * reader that takes choices from the front of the input. */
#ifndef DD_FUZZ_FUZZ_H
#define DD_FUZZ_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv); /* optional */

/* A property that must hold; abort() makes it a crash report with the input. */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Consumes the input front to back: choices first, the payload is the rest. */
typedef struct fuzz_in {
    const uint8_t *p;
    size_t n;
} fuzz_in;

static inline uint8_t fuzz_byte(fuzz_in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static inline uint16_t fuzz_u16(fuzz_in *in)
{
    uint16_t hi = fuzz_byte(in);
    return (uint16_t)(hi << 8 | fuzz_byte(in));
}

/* The rest of the input up to the next NUL (consumed with it) as a new
 * NUL-terminated string the caller frees. */
static inline char *fuzz_cstr(fuzz_in *in)
{
    const uint8_t *z = memchr(in->p, 0, in->n);
    size_t k = z ? (size_t)(z - in->p) : in->n;
    char *s = malloc(k + 1);
    if (!s)
        abort();
    memcpy(s, in->p, k);
    s[k] = '\0';
    in->p += z ? k + 1 : k;
    in->n -= z ? k + 1 : k;
    return s;
}

#endif
