/* fuzz_store_url - src/store/store.c's Redis URL parser and key builder.
 *   - a URL parses to exactly one of host:port or a unix path, port
 *     1-65535, db >= 0, TLS exactly for rediss:// (always host:port), or is
 *     refused with a reason;
 *   - a refusal never quotes the password: the input is parsed a second
 *     time with a marker password and the message must not contain it;
 *   - a key is "dd:<kind>:{<id>}" whole, or NULL (empty or > 1000 bytes).
 *
 * Input: [selector][payload...] */
#include "fuzz.h"

#include "core/error.h"
#include "store/store_int.h"

#define MARK "Pw0rdMark"

static void url(const char *s)
{
    dd_store_url u;
    char err[256];
    memset(err, 0, sizeof(err));
    int rc = dd_store_url_parse(s, &u, err, sizeof(err));
    if (rc == 0) {
        FUZZ_CHECK((u.host != NULL) != (u.path != NULL), "host %p, path %p", (void *)u.host,
                   (void *)u.path);
        if (u.host)
            FUZZ_CHECK(*u.host && u.port >= 1 && u.port <= 65535, "host '%s' port %d", u.host,
                       u.port);
        if (u.path)
            FUZZ_CHECK(u.path[0] == '/', "path '%s'", u.path);
        FUZZ_CHECK(u.db >= 0, "db %d", u.db);
        FUZZ_CHECK(u.tls == (strncmp(s, "rediss://", 9) == 0) && (!u.tls || u.host),
                   "tls %d for '%s'", u.tls, s);
        dd_store_url_release(&u);
    } else {
        FUZZ_CHECK(rc == DD_EINVAL && *err, "rc %d, err '%s'", rc, err);
        FUZZ_CHECK(!u.host && !u.path && !u.user && !u.password, "leftovers after a refusal");
    }
    /* the same URL with a marker password in front of its host */
    const char *sep = strstr(s, "://");
    if (!sep || strstr(s, MARK)) /* the marker must come from us only */
        return;
    size_t head = (size_t)(sep + 3 - s);
    size_t n = strlen(s) + sizeof(MARK) + 2;
    char *t = malloc(n);
    snprintf(t, n, "%.*s:%s@%s", (int)head, s, MARK, sep + 3);
    rc = dd_store_url_parse(t, &u, err, sizeof(err));
    if (rc == 0)
        dd_store_url_release(&u);
    else
        FUZZ_CHECK(!strstr(err, MARK), "'%s' refused quoting the password: %s", t, err);
    free(t);
}

static void key(const char *id, uint8_t k)
{
    static const char *const kinds[] = {"hb", "epoch", "workers", "lease"};
    char buf[DD_STORE__KEYMAX];
    const char *kind = kinds[k % 4];
    const char *r = dd_store__key(buf, kind, id);
    size_t n = strlen(id);
    if (n == 0 || n > 1000) {
        FUZZ_CHECK(r == NULL, "key for a %zu-byte id", n);
        return;
    }
    FUZZ_CHECK(r == buf, "no key for a %zu-byte id", n);
    size_t kl = strlen(kind);
    FUZZ_CHECK(strlen(r) == 3 + kl + 2 + n + 1 && strncmp(r, "dd:", 3) == 0 &&
                   strncmp(r + 3, kind, kl) == 0 && strncmp(r + 3 + kl, ":{", 2) == 0 &&
                   memcmp(r + 5 + kl, id, n) == 0 && r[5 + kl + n] == '}',
               "key '%s' for id '%s'", r, id);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    uint8_t sel = fuzz_byte(&in);
    char *s = malloc(in.n + 1);
    memcpy(s, in.p, in.n);
    s[in.n] = '\0';
    if (sel & 1)
        key(s, sel >> 1);
    else
        url(s);
    free(s);
    return 0;
}
