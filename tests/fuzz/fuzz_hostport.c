/* fuzz_hostport - src/core/hostport.c, the one HOST[:PORT] parser (the
 * Temporal base URL, redis:// URLs, --metrics-listen).
 *   - the text is read by length only: it sits in a buffer of exactly its
 *     size, so ASan reports any read past it;
 *   - accepted: a non-empty host without controls or spaces, copied whole
 *     (no NUL inside), a port in range (0 only when allowed; the default when
 *     none was given), brackets exactly for IPv6; formatting it back as
 *     HOST:PORT or [HOST]:PORT parses to the same;
 *   - refused: DD_EINVAL, a message, nothing left to free.
 *
 * Input: [flags][default port u16][text...] */
#include "fuzz.h"

#include "core/error.h"
#include "core/hostport.h"

#include <stdbool.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    unsigned flags = fuzz_byte(&in) & (DD_HOSTPORT_NEED_PORT | DD_HOSTPORT_PORT_ZERO);
    int def = fuzz_u16(&in);
    char *s = malloc(in.n ? in.n : 1); /* exactly the text, no terminator */
    memcpy(s, in.p, in.n);
    dd_hostport hp;
    char err[128];
    memset(err, 'x', sizeof(err));
    int rc = dd_hostport_parse(s, in.n, def, flags, &hp, err, sizeof(err));
    if (rc != 0) {
        FUZZ_CHECK(rc == DD_EINVAL, "rc %d", rc);
        FUZZ_CHECK(memchr(err, 0, sizeof(err)) && *err, "no message");
        FUZZ_CHECK(!hp.host, "host left after a refusal");
        free(s);
        return 0;
    }
    size_t hn = strlen(hp.host);
    FUZZ_CHECK(hn > 0, "empty host");
    FUZZ_CHECK(hn + (hp.ipv6 ? 2 : 0) <= in.n, "host '%s' longer than the input", hp.host);
    FUZZ_CHECK(memcmp(hp.host, s + (hp.ipv6 ? 1 : 0), hn) == 0, "host '%s' is not the input's",
               hp.host);
    for (size_t i = 0; i < hn; i++)
        FUZZ_CHECK((unsigned char)hp.host[i] > ' ' && hp.host[i] != 0x7f, "byte %d in host",
                   hp.host[i]);
    FUZZ_CHECK(hp.ipv6 == (s[0] == '['), "ipv6 %d for '%c'", hp.ipv6, s[0]);
    if (!hp.ipv6)
        FUZZ_CHECK(!strchr(hp.host, ':'), "':' in host '%s'", hp.host);
    if (hp.has_port) {
        int min = flags & DD_HOSTPORT_PORT_ZERO ? 0 : 1;
        FUZZ_CHECK(hp.port >= min && hp.port <= 65535, "port %d", hp.port);
    } else {
        FUZZ_CHECK(!(flags & DD_HOSTPORT_NEED_PORT), "no port though required");
        FUZZ_CHECK(hp.port == def, "port %d, default %d", hp.port, def);
    }
    /* formatted back, it parses to the same */
    size_t cap = hn + 16;
    char *again = malloc(cap);
    int k = snprintf(again, cap, hp.ipv6 ? "[%s]:%d" : "%s:%d", hp.host, hp.port);
    dd_hostport hp2;
    rc = dd_hostport_parse(again, (size_t)k, def, flags, &hp2, err, sizeof(err));
    if (hp.port == 0 && !(flags & DD_HOSTPORT_PORT_ZERO)) {
        FUZZ_CHECK(rc == DD_EINVAL, "'%s': port 0 accepted", again); /* a default of 0 */
    } else {
        FUZZ_CHECK(rc == 0, "'%s' refused: %s", again, err);
        FUZZ_CHECK(!strcmp(hp2.host, hp.host) && hp2.port == hp.port && hp2.ipv6 == hp.ipv6,
                   "'%s' parsed to '%s' %d", again, hp2.host, hp2.port);
        dd_hostport_release(&hp2);
    }
    free(again);
    dd_hostport_release(&hp);
    FUZZ_CHECK(!hp.host, "release left the host");
    free(s);
    return 0;
}
