/* records.c - heartbeat records, leases and the worker registry: the Lua
 * scripts and the reply parsing. See store.h for the key schema and the
 * fencing argument.
 *
 * Scripts go out with plain EVAL: they are a few hundred bytes, Redis
 * caches the compiled function by its SHA anyway, and there is no NOSCRIPT
 * retry path to get wrong after a restart or a failover. */
#include "store/store_int.h"

#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INDEX_KEY "dd:hb:index"
#define ID_PREFIX_KEY "dd:id_prefix"

/* One clock for the whole fleet: every heartbeat time is Redis's (TIME,
 * inside the script that writes it), and staleness is judged against
 * Redis's TIME too, so a host whose clock is off can neither make a healthy
 * owner look stale nor a dead one look fresh. A caller may pass a time of
 * its own (tests and tools that write records of a chosen age); 0 means
 * the server's clock, which is what every daemon path uses. Lua numbers
 * are doubles: milliseconds since 1970 stay exact (< 2^53). */
#define LUA_NOW(arg)                                                                               \
    "local now = tonumber(" arg ") or 0\n"                                                         \
    "if now == 0 then\n"                                                                          \
    "  local t = redis.call('TIME')\n"                                                            \
    "  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"                         \
    "end\n"                                                                                       \
    "local nows = string.format('%d', now)\n"

/* KEYS: hb, index, epoch. ARGV: wid run server project queue now ttl
 * first_run wf_type (the last two may be ''). Returns {epoch, hb_ms written}. */
static const char lua_claim[] = LUA_NOW("ARGV[6]")
    "local e = redis.call('INCR', KEYS[3])\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('HSET', KEYS[1], 'workflow_id', ARGV[1], 'run_id', ARGV[2],\n"
    "  'server_id', ARGV[3], 'project', ARGV[4], 'queue', ARGV[5], 'hb_ms', nows,\n"
    "  'ttl_ms', ARGV[7], 'epoch', e)\n"
    "if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'first_run_id', ARGV[8]) end\n"
    "if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 'wf_type', ARGV[9]) end\n"
    "if ARGV[10] ~= '' then redis.call('HSET', KEYS[1], 'nonce', ARGV[10]) end\n"
    "redis.call('ZADD', KEYS[2], nows, ARGV[1])\n"
    "return {e, nows}\n";

/* The fence shared by every owner write: the stored run id and epoch must
 * both be the caller's. Returns {'fenced', server, run, epoch} otherwise. */
#define LUA_FENCE(run, epoch)                                                                      \
    "local cur = redis.call('HMGET', KEYS[1], 'run_id', 'epoch', 'server_id')\n"                   \
    "if cur[1] ~= " run " or tonumber(cur[2]) ~= tonumber(" epoch ") then\n"                     \
    "  return {'fenced', cur[3] or '', cur[1] or '', cur[2] or ''}\n"                              \
    "end\n"

/* KEYS: hb, index. ARGV: wid run epoch now ttl first_run|''. {'ok', hb_ms
 * written}. A workflow that continued as new has a new current run in the
 * same chain: the owner heartbeats with its current run and the chain's
 * first run, and the record (same epoch: the epoch alone is unique per
 * claim) moves to the current run in the same fenced step, however many
 * continue-as-new steps happened since it last landed. */
static const char lua_heartbeat[] =
    "local cur = redis.call('HMGET', KEYS[1], 'run_id', 'epoch', 'server_id', 'first_run_id')\n"
    "if (cur[1] ~= ARGV[2] and (ARGV[6] == '' or cur[4] ~= ARGV[6])) or\n"
    "   tonumber(cur[2]) ~= tonumber(ARGV[3]) then\n"
    "  return {'fenced', cur[3] or '', cur[1] or '', cur[2] or ''}\n"
    "end\n" LUA_NOW("ARGV[4]")
    "redis.call('HSET', KEYS[1], 'hb_ms', nows, 'ttl_ms', ARGV[5], 'run_id', ARGV[2])\n"
    "redis.call('ZADD', KEYS[2], nows, ARGV[1])\n"
    "return {'ok', nows}\n";

/* The same for many records at once. KEYS: hb_1..hb_n, index. ARGV: now,
 * then per item wid run epoch ttl first_run|''. One TIME for all; each item
 * is fenced on its own record alone, so one that a newer owner holds is
 * answered 'fenced' and the loop goes on. Returns one reply per item, as
 * lua_heartbeat's. */
static const char lua_heartbeat_batch[] = LUA_NOW("ARGV[1]")
    "local out = {}\n"
    "local index = KEYS[#KEYS]\n"
    "for i = 1, #KEYS - 1 do\n"
    "  local a = 2 + (i - 1) * 5\n"
    "  local cur = redis.call('HMGET', KEYS[i], 'run_id', 'epoch', 'server_id', 'first_run_id')\n"
    "  if (cur[1] ~= ARGV[a + 1] and (ARGV[a + 4] == '' or cur[4] ~= ARGV[a + 4])) or\n"
    "     tonumber(cur[2]) ~= tonumber(ARGV[a + 2]) then\n"
    "    out[i] = {'fenced', cur[3] or '', cur[1] or '', cur[2] or ''}\n"
    "  else\n"
    "    redis.call('HSET', KEYS[i], 'hb_ms', nows, 'ttl_ms', ARGV[a + 3], 'run_id', ARGV[a + 1])\n"
    "    redis.call('ZADD', index, nows, ARGV[a])\n"
    "    out[i] = {'ok', nows}\n"
    "  end\n"
    "end\n"
    "return out\n";

/* When Redis (re)started, by its own uptime, on the server clock only
 * (since = 0 when the caller judges by a time of its own): a record's age
 * counts from its last heartbeat or from then, whichever is later. While
 * Redis was down nobody could heartbeat, so a record it kept is not stale
 * until its owner has had a whole threshold to write again (the fleet bench
 * saw a reconcile 0.1 s after a 2.2 s Redis restart terminate 10 healthy
 * chains). Uptime counts whole seconds: since is at most 1 s late, which
 * only delays a judgement. */
#define LUA_SINCE(arg)                                                                             \
    "local since = 0\n"                                                                            \
    "if (tonumber(" arg ") or 0) == 0 then\n"                                                      \
    "  local up = tonumber(string.match(redis.call('INFO', 'server'), "                            \
    "'uptime_in_seconds:(%d+)') or '')\n"                                                          \
    "  if up then since = now - up * 1000 end\n"                                                   \
    "end\n"                                                                                        \
    "local sinces = string.format('%d', since)\n"

/* KEYS: hb. {server time, HGETALL, Redis up since}: the record and the clock
 * it is judged by, read in one atomic step. */
static const char lua_get[] = LUA_NOW("0") LUA_SINCE("0")
    "return {nows, redis.call('HGETALL', KEYS[1]), sinces}\n";

/* KEYS: hb_1..hb_n. {server time, Redis up since, HGETALL 1, ..., HGETALL
 * n}: many records read as lua_get reads one, on one clock. */
static const char lua_get_batch[] = LUA_NOW("0") LUA_SINCE("0")
    "local out = {nows, sinces}\n"
    "for i = 1, #KEYS do out[i + 2] = redis.call('HGETALL', KEYS[i]) end\n"
    "return out\n";

/* KEYS: index. ARGV: now threshold|'' limit. {server time, members older
 * than now - threshold (all with ''), ZCARD, their count, Redis up since}.
 * Nothing is older than the threshold while Redis has been up for less. */
static const char lua_range[] = LUA_NOW("ARGV[1]") LUA_SINCE("ARGV[1]")
    "local max = '+inf'\n"
    "if ARGV[2] ~= '' then\n"
    "  local edge = now - tonumber(ARGV[2])\n"
    "  if since >= edge then max = '(-inf' else max = '(' .. string.format('%d', edge) end\n"
    "end\n"
    "local m = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', max, 'LIMIT', 0, tonumber(ARGV[3]))\n"
    "return {nows, m, redis.call('ZCARD', KEYS[1]), redis.call('ZCOUNT', KEYS[1], '-inf', max),\n"
    "  sinces}\n";

/* KEYS: workers. ARGV: member now. */
static const char lua_worker_hb[] = LUA_NOW("ARGV[2]")
    "redis.call('ZADD', KEYS[1], nows, ARGV[1])\n"
    "return nows\n";

/* KEYS: workers, hb. ARGV: member now. {1 if the member was not in the set
 * (new, or evicted since), the owner record's ttl_ms or 0}: one step, so a
 * worker learns both whether it was evicted and what threshold the owner
 * evicts by. A ttl that is not a sane number reads as 0 (unknown). */
static const char lua_worker_beat[] = LUA_NOW("ARGV[2]")
    "local added = redis.call('ZADD', KEYS[1], nows, ARGV[1])\n"
    "local ttl = tonumber(redis.call('HGET', KEYS[2], 'ttl_ms') or '') or 0\n"
    "if ttl ~= ttl or ttl < 0 or ttl > 9007199254740992 then ttl = 0 end\n"
    "return {added, math.floor(ttl)}\n";

/* KEYS: hb, index. ARGV: wid run epoch. */
static const char lua_release[] = LUA_FENCE("ARGV[2]", "ARGV[3]")
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "return {'ok'}\n";

/* The owner lets go: a graceful release once its child has stopped, or its
 * last will (src/child/will.c: the guard of a dispatchd that died, once the
 * child is confirmed stopped). KEYS: hb, index, ack (the handoff flag of
 * run, '' for none). ARGV: wid run epoch first_run|'' mode holder ack_ttl
 * channel. Fenced like every owner write (run, or an earlier run of the
 * chain first_run, and the epoch), so a late will never touches a newer
 * owner. The handoff flag ("nothing of run acts any more") is set whether
 * or not the fence holds: it is true either way, and a newer owner that
 * replaced run may be waiting for it; in workflow mode also for the run
 * the record names, the chain's current one. mode 'delete' removes the
 * record (a graceful release: its run is terminated already); 'expire'
 * sets its heartbeat to 0 (a last will: the run is still running, and a
 * stale record is what makes a standby or the reconciler end it,
 * termination-first). Then one PUBLISH of wid on channel, so standbys try
 * at once instead of waiting for their timer: pcall, so an ACL user without
 * +publish still releases (its standbys then wait for their timers). */
static const char lua_let_go[] =
    "local cur = redis.call('HMGET', KEYS[1], 'run_id', 'epoch', 'server_id', 'first_run_id')\n"
    "local ttl = tonumber(ARGV[7]) or 0\n"
    "if ttl > 0 and KEYS[3] ~= '' then\n"
    "  redis.call('SET', KEYS[3], ARGV[6], 'PX', ttl)\n"
    "  if cur[1] and cur[1] ~= ARGV[2] and ARGV[4] ~= '' and cur[4] == ARGV[4] then\n"
    "    redis.call('SET', 'dd:lease:{handoff:' .. ARGV[1] .. ':' .. cur[1] .. '}', ARGV[6],\n"
    "      'PX', ttl)\n"
    "  end\n"
    "end\n"
    "if (cur[1] ~= ARGV[2] and (ARGV[4] == '' or cur[4] ~= ARGV[4])) or\n"
    "   tonumber(cur[2]) ~= tonumber(ARGV[3]) then\n"
    "  return {'fenced', cur[3] or '', cur[1] or '', cur[2] or ''}\n"
    "end\n"
    "if ARGV[5] == 'expire' then\n" /* hb_ms DD_STORE_HB_RELEASED: stale at once */
    "  redis.call('HSET', KEYS[1], 'hb_ms', '0')\n"
    "  redis.call('ZADD', KEYS[2], 0, ARGV[1])\n"
    "else\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "end\n"
    "redis.pcall('PUBLISH', ARGV[8], ARGV[1])\n"
    "return {'ok'}\n";

/* KEYS: hb, index. ARGV: wid run hb_ms. 1 deleted, 0 gone, -1 changed.
 * Numbers are compared as numbers so "0123" and "123" agree. */
static const char lua_cad[] =
    "local cur = redis.call('HMGET', KEYS[1], 'run_id', 'hb_ms')\n"
    "if redis.call('EXISTS', KEYS[1]) == 0 then\n"
    "  redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "  return 0\n"
    "end\n"
    "if cur[1] ~= ARGV[2] or tonumber(cur[2]) ~= tonumber(ARGV[3]) then return -1 end\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "return 1\n";

/* KEYS: lease. ARGV: holder. */
static const char lua_lease_release[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

/* KEYS: hb, workers. ARGV: run epoch older_than max_batch. Returns
 * {'ok', {member, score, ...}} or the fence answer. Batched so that one
 * noisy moment cannot empty the registry in one go (R10). */
static const char lua_evict[] = LUA_FENCE("ARGV[1]", "ARGV[2]")
    "local m = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[3], 'WITHSCORES',\n"
    "  'LIMIT', 0, tonumber(ARGV[4]))\n"
    "for i = 1, #m, 2 do redis.call('ZREM', KEYS[2], m[i]) end\n"
    "return {'ok', m}\n";

/* ---- helpers ------------------------------------------------------------ */

static char *dd_rec_xstrndup(const char *s, size_t n)
{
    char *p = dd_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static int dd_rec_parse_i64(const char *s, int64_t *out)
{
    char *end;
    if (!s || !*s)
        return DD_EINVAL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return DD_EINVAL;
    *out = v;
    return 0;
}

static bool dd_rec_is_str(const redisReply *r)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

#define I64(buf, v) (snprintf((buf), sizeof(buf), "%" PRId64, (int64_t)(v)), (buf))

/* Common start of every operation: refuse early, build the request. */
static dd_store__req *dd_rec_begin(dd_store *s, const dd_store__op *op, void (*cb)(void), void *arg,
                            int *rc)
{
    *rc = dd_store__check(s);
    if (*rc == 0 && !cb)
        *rc = DD_EINVAL;
    return *rc ? NULL : dd_store__req_new(s, op, cb, arg);
}

static int dd_rec_end(dd_store__req *r, int rc)
{
    if (rc < 0)
        dd_store__abort(r);
    else
        dd_store__submit(r);
    return rc;
}

/* ---- status-only operations --------------------------------------------- */

/* reply -> status: decided per op by r->status, set by the reply parser. */
static void dd_rec_status_deliver(dd_store__req *r, int status)
{
    ((dd_store_status_cb *)r->cb)(status ? status : r->status, r->arg);
}

static void dd_rec_ok_reply(dd_store__req *r, redisReply *rep)
{
    if (r->pending == 0)
        dd_store__finish(r, 0);
}

static void dd_rec_cad_reply(dd_store__req *r, redisReply *rep)
{
    if (rep->type != REDIS_REPLY_INTEGER)
        r->status = DD_EPROTO;
    else
        r->status = rep->integer == 1 ? 0 : rep->integer == 0 ? DD_ENOTFOUND : DD_ECONFLICT;
    dd_store__finish(r, 0);
}

static void dd_rec_lease_acquire_reply(dd_store__req *r, redisReply *rep)
{
    r->status = rep->type == REDIS_REPLY_NIL ? DD_EBUSY : dd_rec_is_str(rep) ? 0 : DD_EPROTO;
    dd_store__finish(r, 0);
}

static void dd_rec_lease_release_reply(dd_store__req *r, redisReply *rep)
{
    r->status = rep->type != REDIS_REPLY_INTEGER ? DD_EPROTO
                : rep->integer == 1             ? 0
                                                : DD_ENOTFOUND;
    dd_store__finish(r, 0);
}

static void dd_rec_lease_held_reply(dd_store__req *r, redisReply *rep)
{
    r->status = rep->type == REDIS_REPLY_NIL ? DD_ENOTFOUND : dd_rec_is_str(rep) ? 0 : DD_EPROTO;
    dd_store__finish(r, 0);
}

static const dd_store__op ping_op = {"ping", dd_rec_ok_reply, dd_rec_status_deliver,
    "PING"};
static const dd_store__op lease_held_op = {"lease_held", dd_rec_lease_held_reply, dd_rec_status_deliver,
    "GET on dd:lease:*"};
static const dd_store__op cad_op = {"compare_and_delete", dd_rec_cad_reply, dd_rec_status_deliver,
    "EVAL (HMGET EXISTS DEL ZREM) on dd:hb:{wid} dd:hb:index"};
static const dd_store__op lease_acquire_op = {"lease_acquire", dd_rec_lease_acquire_reply,
                                              dd_rec_status_deliver,
    "SET NX PX on dd:lease:*"};
static const dd_store__op lease_release_op = {"lease_release", dd_rec_lease_release_reply,
                                              dd_rec_status_deliver,
    "EVAL (GET DEL) on dd:lease:*"};
static const dd_store__op worker_hb_op = {"worker_heartbeat", dd_rec_ok_reply, dd_rec_status_deliver,
    "EVAL (TIME ZADD) on dd:workers:{wid}"};
static const dd_store__op worker_dereg_op = {"worker_deregister", dd_rec_ok_reply, dd_rec_status_deliver,
    "ZREM on dd:workers:{wid}"};

static void dd_rec_publish_reply(dd_store__req *r, redisReply *rep)
{
    if (rep->type == REDIS_REPLY_INTEGER)
        r->total = rep->integer;
    else
        r->status = DD_EPROTO;
    dd_store__finish(r, 0);
}

static void dd_rec_publish_deliver(dd_store__req *r, int status)
{
    status = status ? status : r->status;
    ((dd_store_publish_cb *)r->cb)(status, status == 0 ? r->total : 0, r->arg);
}

static const dd_store__op publish_op = {"publish", dd_rec_publish_reply, dd_rec_publish_deliver,
    "PUBLISH on the channel"};

int dd_store_publish(dd_store *s, const char *channel, const char *message,
                     dd_store_publish_cb *cb, void *arg)
{
    int rc;
    if (!channel || !*channel || !message)
        return DD_EINVAL;
    dd_store__req *r = dd_rec_begin(s, &publish_op, (void (*)(void))cb, arg, &rc);
    if (!r)
        return rc;
    return dd_rec_end(r, dd_store__cmd(r, "PUBLISH", channel, message, NULL));
}

static void dd_rec_count_deliver(dd_store__req *r, int status)
{
    status = status ? status : r->status;
    ((dd_store_count_cb *)r->cb)(status, status == 0 ? r->total : 0, r->arg);
}

static const dd_store__op fleet_size_op = {"fleet_size", dd_rec_publish_reply,
                                           dd_rec_count_deliver, "ZCARD on dd:hb:index"};

int dd_store_fleet_size(dd_store *s, dd_store_count_cb *cb, void *arg)
{
    int rc;
    dd_store__req *r = dd_rec_begin(s, &fleet_size_op, (void (*)(void))cb, arg, &rc);
    if (!r)
        return rc;
    return dd_rec_end(r, dd_store__cmd(r, "ZCARD", INDEX_KEY, NULL));
}

int dd_store_ping(dd_store *s, dd_store_status_cb *cb, void *arg)
{
    int rc;
    dd_store__req *r = dd_rec_begin(s, &ping_op, (void (*)(void))cb, arg, &rc);
    if (!r)
        return rc;
    return dd_rec_end(r, dd_store__cmd(r, "PING", NULL));
}

int dd_store_compare_and_delete(dd_store *s, const char *wid, const char *run_id, int64_t hb_ms,
                                dd_store_status_cb *cb, void *arg)
{
    char key[DD_STORE__KEYMAX], hb[24];
    int rc;
    if (!dd_store__key(key, "hb", wid) || !run_id)
        return DD_EINVAL;
    dd_store__req *r = dd_rec_begin(s, &cad_op, (void (*)(void))cb, arg, &rc);
    if (!r)
        return rc;
    return dd_rec_end(r, dd_store__cmd(r, "EVAL", lua_cad, "2", key, INDEX_KEY, wid, run_id,
                                I64(hb, hb_ms), NULL));
}

int dd_store_lease_acquire(dd_store *s, const char *name, const char *holder, int64_t ttl_ms,
                           dd_store_status_cb *cb, void *arg)
{
    char key[DD_STORE__KEYMAX], ttl[24];
    int rc;
    if (!dd_store__key(key, "lease", name) || !holder || !*holder || ttl_ms <= 0)
        return DD_EINVAL;
    dd_store__req *r = dd_rec_begin(s, &lease_acquire_op, (void (*)(void))cb, arg, &rc);
    if (!r)
        return rc;
    return dd_rec_end(r, dd_store__cmd(r, "SET", key, holder, "NX", "PX", I64(ttl, ttl_ms), NULL));
}

int dd_store_lease_release(dd_store *s, const char *name, const char *holder,
                           dd_store_status_cb *cb, void *arg)
{
    char key[DD_STORE__KEYMAX];
    int rc;
    if (!dd_store__key(key, "lease", name) || !holder)
        return DD_EINVAL;
    dd_store__req *r = dd_rec_begin(s, &lease_release_op, (void (*)(void))cb, arg, &rc);
    if (!r)
        return rc;
    return dd_rec_end(r, dd_store__cmd(r, "EVAL", lua_lease_release, "1", key, holder, NULL));
}

int dd_store_lease_held(dd_store *s, const char *name, dd_store_status_cb *cb, void *arg)
{
    char key[DD_STORE__KEYMAX];
    int rc;
    if (!dd_store__key(key, "lease", name))
        return DD_EINVAL;
    dd_store__req *r = dd_rec_begin(s, &lease_held_op, (void (*)(void))cb, arg, &rc);
    if (!r)
        return rc;
    return dd_rec_end(r, dd_store__cmd(r, "GET", key, NULL));
}

int dd_store_worker_heartbeat(dd_store *s, const char *wid, const char *server_id, int64_t now_ms,
                              dd_store_status_cb *cb, void *arg)
{
    char key[DD_STORE__KEYMAX], now[24];
    int rc;
    if (!dd_store__key(key, "workers", wid) || !server_id || !*server_id)
        return DD_EINVAL;
    dd_store__req *r = dd_rec_begin(s, &worker_hb_op, (void (*)(void))cb, arg, &rc);
    if (!r)
        return rc;
    return dd_rec_end(r, dd_store__cmd(r, "EVAL", lua_worker_hb, "1", key, server_id, I64(now, now_ms),
                                NULL));
}

static void dd_rec_worker_beat_reply(dd_store__req *r, redisReply *rep)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER ||
        rep->element[1]->type != REDIS_REPLY_INTEGER || rep->element[1]->integer < 0) {
        r->status = DD_EPROTO;
    } else {
        r->owner.epoch = rep->element[0]->integer != 0; /* added */
        r->owner.now_ms = rep->element[1]->integer;     /* the owner's ttl_ms */
    }
    dd_store__finish(r, 0);
}

static void dd_rec_worker_beat_deliver(dd_store__req *r, int status)
{
    status = status ? status : r->status;
    ((dd_store_worker_beat_cb *)r->cb)(status, status == 0 && r->owner.epoch,
                                       status == 0 ? r->owner.now_ms : 0, r->arg);
}

static const dd_store__op worker_beat_op = {"worker_beat", dd_rec_worker_beat_reply,
                                            dd_rec_worker_beat_deliver,
    "EVAL (TIME ZADD HGET) on dd:workers:{wid} dd:hb:{wid}"};

int dd_store_worker_beat(dd_store *s, const char *wid, const char *server_id, int64_t now_ms,
                         dd_store_worker_beat_cb *cb, void *arg)
{
    char key[DD_STORE__KEYMAX], hb[DD_STORE__KEYMAX], now[24];
    int rc;
    if (!dd_store__key(key, "workers", wid) || !dd_store__key(hb, "hb", wid) || !server_id ||
        !*server_id)
        return DD_EINVAL;
    dd_store__req *r = dd_rec_begin(s, &worker_beat_op, (void (*)(void))cb, arg, &rc);
    if (!r)
        return rc;
    return dd_rec_end(r, dd_store__cmd(r, "EVAL", lua_worker_beat, "2", key, hb, server_id,
                                I64(now, now_ms), NULL));
}

int dd_store_worker_deregister(dd_store *s, const char *wid, const char *server_id,
                               dd_store_status_cb *cb, void *arg)
{
    char key[DD_STORE__KEYMAX];
    int rc;
    if (!dd_store__key(key, "workers", wid) || !server_id)
        return DD_EINVAL;
    dd_store__req *r = dd_rec_begin(s, &worker_dereg_op, (void (*)(void))cb, arg, &rc);
    if (!r)
        return rc;
    return dd_rec_end(r, dd_store__cmd(r, "ZREM", key, server_id, NULL));
}

/* ---- owner operations --------------------------------------------------- */

static void dd_rec_owner_deliver(dd_store__req *r, int status)
{
    status = status ? status : r->status;
    ((dd_store_owner_cb *)r->cb)(status, status == 0 || status == DD_EFENCED ? &r->owner : NULL,
                                 r->arg);
}

/* SENTINEL (--redis-wait-replicas): the WAIT after a claim or heartbeat
 * decides whether it counts. true: rep was WAIT's, the request is done. */
static bool dd_rec_wait_reply(dd_store__req *r, redisReply *rep)
{
    if (!r->wait_reply || r->nreplies != r->wait_reply)
        return false;
    dd_store__finish(r, dd_store__wait_result(r, rep));
    return true;
}

/* The script's answer is in; with a WAIT behind it, a success waits for
 * WAIT's verdict (an error or a fence is final at once). */
static void dd_rec_script_done(dd_store__req *r)
{
    if (r->wait_reply && r->status == 0)
        return;
    dd_store__finish(r, 0);
}

/* {epoch, hb_ms} */
static void dd_rec_claim_reply(dd_store__req *r, redisReply *rep)
{
    if (dd_rec_wait_reply(r, rep))
        return;
    r->status = DD_EPROTO;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER && dd_rec_is_str(rep->element[1]) &&
        dd_rec_parse_i64(rep->element[1]->str, &r->owner.now_ms) == 0) {
        r->owner.epoch = rep->element[0]->integer;
        r->status = 0;
    }
    dd_rec_script_done(r);
}

/* {'ok'} or {'fenced', server, run, epoch} */
static void dd_rec_fenced_reply(dd_store__req *r, redisReply *rep)
{
    if (dd_rec_wait_reply(r, rep))
        return;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 || !dd_rec_is_str(rep->element[0])) {
        r->status = DD_EPROTO;
    } else if (!strcmp(rep->element[0]->str, "fenced") && rep->elements == 4) {
        r->status = DD_EFENCED;
        for (int i = 0; i < 2; i++)
            if (dd_rec_is_str(rep->element[1 + i]) && rep->element[1 + i]->len > 0)
                r->str[i] = dd_rec_xstrndup(rep->element[1 + i]->str, rep->element[1 + i]->len);
        r->owner.server_id = r->str[0];
        r->owner.run_id = r->str[1];
        if (dd_rec_is_str(rep->element[3]))
            (void)dd_rec_parse_i64(rep->element[3]->str, &r->owner.epoch);
    } else {
        r->status = strcmp(rep->element[0]->str, "ok") ? DD_EPROTO : 0;
        /* a heartbeat says when it was written (Redis's clock) */
        if (r->status == 0 && rep->elements >= 2 &&
            (!dd_rec_is_str(rep->element[1]) || dd_rec_parse_i64(rep->element[1]->str, &r->owner.now_ms) < 0))
            r->status = DD_EPROTO;
    }
    dd_rec_script_done(r);
}

static const dd_store__op claim_op = {"claim", dd_rec_claim_reply, dd_rec_owner_deliver,
    "EVAL (TIME INCR DEL HSET ZADD) on dd:hb:{wid} dd:hb:index dd:epoch:{wid}"};
static const dd_store__op heartbeat_op = {"heartbeat", dd_rec_fenced_reply, dd_rec_owner_deliver,
    "EVAL (HMGET TIME HSET ZADD) on dd:hb:{wid} dd:hb:index"};
static const dd_store__op release_op = {"release", dd_rec_fenced_reply, dd_rec_owner_deliver,
    "EVAL (HMGET DEL ZREM) on dd:hb:{wid} dd:hb:index"};

int dd_store_claim(dd_store *s, const dd_store_claim_args *a, dd_store_owner_cb *cb, void *arg)
{
    char hb[DD_STORE__KEYMAX], ep[DD_STORE__KEYMAX], now[24], ttl[24];
    int rc;
    if (!a || !dd_store__key(hb, "hb", a->workflow_id) ||
        !dd_store__key(ep, "epoch", a->workflow_id) || !a->run_id || !*a->run_id ||
        !a->server_id || !a->project || !a->queue)
        return DD_EINVAL;
    dd_store__req *r = dd_rec_begin(s, &claim_op, (void (*)(void))cb, arg, &rc);
    if (!r)
        return rc;
    r->owner.server_id = r->str[0] = dd_strdup(a->server_id);
    r->owner.run_id = r->str[1] = dd_strdup(a->run_id);
    rc = dd_store__cmd(r, "EVAL", lua_claim, "3", hb, INDEX_KEY, ep, a->workflow_id, a->run_id,
                       a->server_id, a->project, a->queue, I64(now, a->now_ms),
                       I64(ttl, a->ttl_ms), a->first_run_id ? a->first_run_id : "",
                       a->wf_type ? a->wf_type : "", a->nonce ? a->nonce : "", NULL);
    return dd_rec_end(r, rc < 0 ? rc : dd_store__add_wait(r));
}

int dd_store_heartbeat(dd_store *s, const char *wid, const char *run_id, int64_t epoch,
                       int64_t now_ms, int64_t ttl_ms, dd_store_owner_cb *cb, void *arg)
{
    return dd_store_heartbeat_chain(s, wid, run_id, NULL, epoch, now_ms, ttl_ms, cb, arg);
}

int dd_store_heartbeat_chain(dd_store *s, const char *wid, const char *run_id,
                             const char *first_run_id, int64_t epoch, int64_t now_ms,
                             int64_t ttl_ms, dd_store_owner_cb *cb, void *arg)
{
    char key[DD_STORE__KEYMAX], e[24], now[24], ttl[24];
    int rc;
    if (!dd_store__key(key, "hb", wid) || !run_id || !*run_id)
        return DD_EINVAL;
    dd_store__req *r = dd_rec_begin(s, &heartbeat_op, (void (*)(void))cb, arg, &rc);
    if (!r)
        return rc;
    r->owner.epoch = epoch;
    rc = dd_store__cmd(r, "EVAL", lua_heartbeat, "2", key, INDEX_KEY, wid, run_id, I64(e, epoch),
                       I64(now, now_ms), I64(ttl, ttl_ms), first_run_id ? first_run_id : "", NULL);
    return dd_rec_end(r, rc < 0 ? rc : dd_store__add_wait(r));
}

/* A batch: r->arg is this, r->cb a marker (begin wants one). Results are
 * parsed into it from the reply, then delivered item by item. */
typedef struct beat_batch {
    size_t n;
    bool answered; /* the script's reply was parsed into it[].status */
    struct beat_item {
        dd_store_owner_cb *cb;
        void *arg;
        int status;
        dd_store_owner owner;
        char *str[2];
    } it[];
} beat_batch;

static void dd_rec_beat_batch_marker(void) {}

/* One item's reply, as fenced_reply reads a single heartbeat's. */
static int dd_rec_beat_item_parse(struct beat_item *it, const redisReply *rep)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 || !dd_rec_is_str(rep->element[0]))
        return DD_EPROTO;
    if (!strcmp(rep->element[0]->str, "fenced") && rep->elements == 4) {
        for (int i = 0; i < 2; i++)
            if (dd_rec_is_str(rep->element[1 + i]) && rep->element[1 + i]->len > 0)
                it->str[i] = dd_rec_xstrndup(rep->element[1 + i]->str, rep->element[1 + i]->len);
        it->owner.server_id = it->str[0];
        it->owner.run_id = it->str[1];
        if (dd_rec_is_str(rep->element[3]))
            (void)dd_rec_parse_i64(rep->element[3]->str, &it->owner.epoch);
        return DD_EFENCED;
    }
    if (strcmp(rep->element[0]->str, "ok") || rep->elements != 2 || !dd_rec_is_str(rep->element[1]) ||
        dd_rec_parse_i64(rep->element[1]->str, &it->owner.now_ms) < 0)
        return DD_EPROTO;
    return 0;
}

static void dd_rec_beat_batch_reply(dd_store__req *r, redisReply *rep)
{
    beat_batch *b = r->arg;
    if (dd_rec_wait_reply(r, rep))
        return;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != b->n)
        r->status = DD_EPROTO;
    else {
        for (size_t i = 0; i < b->n; i++)
            b->it[i].status = dd_rec_beat_item_parse(&b->it[i], rep->element[i]);
        b->answered = true;
    }
    dd_rec_script_done(r); /* with --redis-wait-replicas, WAIT decides (below) */
}

static void dd_rec_beat_batch_deliver(dd_store__req *r, int status)
{
    beat_batch *b = r->arg;
    status = status ? status : r->status;
    for (size_t i = 0; i < b->n; i++) {
        struct beat_item *it = &b->it[i];
        /* a WAIT that fell short fails the beats that landed; a fenced one
         * stays fenced (its answer came from the script) */
        int st = !status                                        ? it->status
                 : b->answered && it->status == DD_EFENCED ? DD_EFENCED
                                                              : status;
        it->cb(st, st == 0 || st == DD_EFENCED ? &it->owner : NULL, it->arg);
        free(it->str[0]);
        free(it->str[1]);
    }
    free(b);
}

static const dd_store__op heartbeat_batch_op = {"heartbeat_batch", dd_rec_beat_batch_reply,
                                                dd_rec_beat_batch_deliver,
    "EVAL (TIME HMGET HSET ZADD) on dd:hb:{wid} (many) dd:hb:index"};

int dd_store_heartbeat_batch(dd_store *s, const dd_store_beat *items, size_t n, int64_t now_ms)
{
    if (!items || n == 0 || n > DD_STORE_BEAT_MAX)
        return DD_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!items[i].workflow_id || !*items[i].workflow_id || !items[i].run_id ||
            !*items[i].run_id || !items[i].cb)
            return DD_EINVAL;
    int rc = dd_store__check(s);
    if (rc)
        return rc;
    /* argv: EVAL script numkeys keys... index now (wid run epoch ttl first)... */
    size_t argc = 3 + n + 1 + 1 + 5 * n;
    const char **argv = dd_xcalloc(argc, sizeof(*argv));
    char *keys = dd_xmalloc(n * DD_STORE__KEYMAX);
    char *nums = dd_xmalloc(n * 2 * 24);
    char numkeys[24], now[24];
    size_t k = 0;
    argv[k++] = "EVAL";
    argv[k++] = lua_heartbeat_batch;
    argv[k++] = I64(numkeys, n + 1);
    for (size_t i = 0; i < n; i++)
        if (!(argv[k++] = dd_store__key(keys + i * DD_STORE__KEYMAX, "hb", items[i].workflow_id)))
            rc = DD_EINVAL; /* an id too long for a key */
    if (rc) {
        free(argv);
        free(keys);
        free(nums);
        return rc;
    }
    argv[k++] = INDEX_KEY;
    argv[k++] = I64(now, now_ms);
    for (size_t i = 0; i < n; i++) {
        char *e = nums + i * 48, *t = e + 24;
        snprintf(e, 24, "%" PRId64, items[i].epoch);
        snprintf(t, 24, "%" PRId64, items[i].ttl_ms);
        argv[k++] = items[i].workflow_id;
        argv[k++] = items[i].run_id;
        argv[k++] = e;
        argv[k++] = t;
        argv[k++] = items[i].first_run_id ? items[i].first_run_id : "";
    }
    beat_batch *b = dd_xcalloc(1, sizeof(*b) + n * sizeof(b->it[0]));
    b->n = n;
    for (size_t i = 0; i < n; i++) {
        b->it[i].cb = items[i].cb;
        b->it[i].arg = items[i].arg;
        b->it[i].owner.epoch = items[i].epoch;
    }
    dd_store__req *r = dd_rec_begin(s, &heartbeat_batch_op, dd_rec_beat_batch_marker, b, &rc);
    if (r) {
        int c = dd_store__cmdv(r, (int)argc, argv);
        rc = dd_rec_end(r, c < 0 ? c : dd_store__add_wait(r)); /* SENTINEL: WAIT N, if asked */
    }
    if (rc < 0) /* refused at once: no callback runs, so nothing else frees it */
        free(b);
    free(argv);
    free(keys);
    free(nums);
    return rc;
}

int dd_store_release(dd_store *s, const char *wid, const char *run_id, int64_t epoch,
                     dd_store_owner_cb *cb, void *arg)
{
    char key[DD_STORE__KEYMAX], e[24];
    int rc;
    if (!dd_store__key(key, "hb", wid) || !run_id || !*run_id)
        return DD_EINVAL;
    dd_store__req *r = dd_rec_begin(s, &release_op, (void (*)(void))cb, arg, &rc);
    if (!r)
        return rc;
    r->owner.epoch = epoch;
    return dd_rec_end(r, dd_store__cmd(r, "EVAL", lua_release, "2", key, INDEX_KEY, wid, run_id,
                                I64(e, epoch), NULL));
}

static const dd_store__op let_go_op = {"let_go", dd_rec_fenced_reply, dd_rec_owner_deliver,
    "EVAL (HMGET SET HSET ZADD DEL ZREM PUBLISH) on dd:hb:{wid} dd:hb:index dd:lease:* "
    "and channel " DD_STORE_CHANNEL_RELEASED};

int dd_store_let_go(dd_store *s, const dd_store_let_go_args *a, dd_store_owner_cb *cb, void *arg)
{
    char key[DD_STORE__KEYMAX], ack[DD_STORE__KEYMAX], e[24], ttl[24];
    int rc;
    if (!a || !dd_store__key(key, "hb", a->workflow_id) || !a->run_id || !*a->run_id ||
        a->epoch <= 0)
        return DD_EINVAL;
    /* always a real key under dd: (an ACL checks every declared key); a
     * ttl of 0 leaves it alone */
    bool with_ack = a->ack_holder && *a->ack_holder && a->ack_ttl_ms > 0;
    dd_buf name = DD_BUF_INIT;
    dd_buf_printf(&name, DD_STORE_LEASE_HANDOFF, a->workflow_id, a->run_id);
    const char *k = dd_store__key(ack, "lease", dd_buf_str(&name));
    dd_buf_release(&name);
    if (!k)
        return DD_EINVAL;
    dd_store__req *r = dd_rec_begin(s, &let_go_op, (void (*)(void))cb, arg, &rc);
    if (!r)
        return rc;
    r->owner.epoch = a->epoch;
    return dd_rec_end(r, dd_store__cmd(r, "EVAL", lua_let_go, "3", key, INDEX_KEY, ack, a->workflow_id,
                                a->run_id, I64(e, a->epoch),
                                a->first_run_id ? a->first_run_id : "",
                                a->expire ? "expire" : "delete",
                                a->ack_holder ? a->ack_holder : "",
                                I64(ttl, with_ack ? a->ack_ttl_ms : 0),
                                DD_STORE_CHANNEL_RELEASED, NULL));
}

/* ---- reading records ---------------------------------------------------- */

void dd_store__free_recs(dd_store_hb *recs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        dd_store_hb *h = &recs[i];
        free((char *)h->workflow_id);
        free((char *)h->run_id);
        free((char *)h->server_id);
        free((char *)h->project);
        free((char *)h->queue);
        free((char *)h->problem);
        free((char *)h->first_run_id);
        free((char *)h->wf_type);
        free((char *)h->nonce);
    }
    free(recs);
}

/* Fills h from an HGETALL reply; wid names it when the hash is missing. */
static void dd_rec_parse_record(dd_store_hb *h, const char *wid, const redisReply *rep)
{
    static const char *const names[] = {"workflow_id", "run_id", "server_id", "project",
                                        "queue",       "hb_ms",  "ttl_ms",    "epoch"};
    char *v[8] = {0};
    const char *problem = NULL;
    char why[96];
    if (rep->type != REDIS_REPLY_ARRAY) {
        problem = "not a hash";
    } else {
        for (size_t i = 0; i + 1 < rep->elements; i += 2) {
            const redisReply *k = rep->element[i], *val = rep->element[i + 1];
            for (int j = 0; j < 8 && dd_rec_is_str(k) && dd_rec_is_str(val); j++)
                if (!v[j] && !strcmp(k->str, names[j]))
                    v[j] = dd_rec_xstrndup(val->str, val->len);
        }
        if (rep->elements == 0)
            problem = "record missing (index entry only)";
    }
    for (int j = 0; j < 8 && !problem; j++)
        if (!v[j] || !*v[j]) {
            snprintf(why, sizeof(why), "missing '%s'", names[j]);
            problem = why;
        }
    int64_t *nums[3] = {&h->hb_ms, &h->ttl_ms, &h->epoch};
    for (int j = 5; j < 8; j++)
        if (v[j] && dd_rec_parse_i64(v[j], nums[j - 5]) < 0 && !problem) {
            snprintf(why, sizeof(why), "'%s' is not a number", names[j]);
            problem = why;
        }
    /* optional: only workflow-mode owners write them */
    if (rep->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i + 1 < rep->elements; i += 2) {
            const redisReply *k = rep->element[i], *val = rep->element[i + 1];
            if (!dd_rec_is_str(k) || !dd_rec_is_str(val) || val->len == 0)
                continue;
            if (!strcmp(k->str, "first_run_id") && !h->first_run_id)
                h->first_run_id = dd_rec_xstrndup(val->str, val->len);
            else if (!strcmp(k->str, "wf_type") && !h->wf_type)
                h->wf_type = dd_rec_xstrndup(val->str, val->len);
            else if (!strcmp(k->str, "nonce") && !h->nonce)
                h->nonce = dd_rec_xstrndup(val->str, val->len);
        }
    h->workflow_id = v[0] ? v[0] : dd_strdup(wid);
    h->run_id = v[1];
    h->server_id = v[2];
    h->project = v[3];
    h->queue = v[4];
    for (int j = 5; j < 8; j++)
        free(v[j]);
    h->malformed = problem != NULL;
    h->problem = problem ? dd_strdup(problem) : NULL;
}

/* {server time, HGETALL reply} */
static void dd_rec_get_reply(dd_store__req *r, redisReply *rep)
{
    int64_t now = 0, since = 0;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 || !dd_rec_is_str(rep->element[0]) ||
        dd_rec_parse_i64(rep->element[0]->str, &now) < 0 || !dd_rec_is_str(rep->element[2]) ||
        dd_rec_parse_i64(rep->element[2]->str, &since) < 0) {
        r->status = DD_EPROTO;
    } else if (rep->element[1]->type == REDIS_REPLY_ARRAY && rep->element[1]->elements == 0) {
        r->status = DD_ENOTFOUND;
    } else {
        r->recs = dd_xcalloc(1, sizeof(*r->recs));
        r->nrecs = 1;
        dd_rec_parse_record(r->recs, r->str[0], rep->element[1]);
        r->recs->now_ms = now;
        r->recs->up_since_ms = since;
    }
    dd_store__finish(r, 0);
}

static void dd_rec_get_deliver(dd_store__req *r, int status)
{
    status = status ? status : r->status;
    ((dd_store_hb_cb *)r->cb)(status, status == 0 ? r->recs : NULL, r->arg);
}

static const dd_store__op get_op = {"get", dd_rec_get_reply, dd_rec_get_deliver,
    "EVAL (TIME INFO HGETALL) on dd:hb:{wid}"};

int dd_store_get(dd_store *s, const char *wid, dd_store_hb_cb *cb, void *arg)
{
    char key[DD_STORE__KEYMAX];
    int rc;
    if (!dd_store__key(key, "hb", wid))
        return DD_EINVAL;
    dd_store__req *r = dd_rec_begin(s, &get_op, (void (*)(void))cb, arg, &rc);
    if (!r)
        return rc;
    r->str[0] = dd_strdup(wid);
    return dd_rec_end(r, dd_store__cmd(r, "EVAL", lua_get, "1", key, NULL));
}

/* A batched read: r->arg is this, r->cb a marker (begin wants one). */
typedef struct get_batch {
    size_t n;
    struct get_item {
        dd_store_hb_cb *cb;
        void *arg;
        int status;
        char *wid;
        dd_store_hb rec; /* filled when status is 0 */
    } it[];
} get_batch;

static void dd_rec_get_batch_marker(void) {}

static void dd_rec_get_batch_reply(dd_store__req *r, redisReply *rep)
{
    get_batch *b = r->arg;
    int64_t now = 0, since = 0;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != b->n + 2 ||
        !dd_rec_is_str(rep->element[0]) || dd_rec_parse_i64(rep->element[0]->str, &now) < 0 ||
        !dd_rec_is_str(rep->element[1]) || dd_rec_parse_i64(rep->element[1]->str, &since) < 0) {
        r->status = DD_EPROTO;
    } else {
        for (size_t i = 0; i < b->n; i++) {
            struct get_item *it = &b->it[i];
            const redisReply *h = rep->element[i + 2];
            if (h->type == REDIS_REPLY_ARRAY && h->elements == 0) {
                it->status = DD_ENOTFOUND;
                continue;
            }
            dd_rec_parse_record(&it->rec, it->wid, h);
            it->rec.now_ms = now;
            it->rec.up_since_ms = since;
        }
    }
    dd_store__finish(r, 0);
}

static void dd_rec_get_batch_deliver(dd_store__req *r, int status)
{
    get_batch *b = r->arg;
    status = status ? status : r->status;
    for (size_t i = 0; i < b->n; i++) {
        struct get_item *it = &b->it[i];
        int st = status ? status : it->status;
        it->cb(st, st == 0 ? &it->rec : NULL, it->arg);
        /* the record's strings (dd_rec_parse_record copies them all) */
        free((char *)it->rec.workflow_id);
        free((char *)it->rec.run_id);
        free((char *)it->rec.server_id);
        free((char *)it->rec.project);
        free((char *)it->rec.queue);
        free((char *)it->rec.problem);
        free((char *)it->rec.first_run_id);
        free((char *)it->rec.wf_type);
        free((char *)it->rec.nonce);
        free(it->wid);
    }
    free(b);
}

static const dd_store__op get_batch_op = {"get_batch", dd_rec_get_batch_reply,
    dd_rec_get_batch_deliver, "EVAL (TIME INFO HGETALL) on dd:hb:{wid} (many)"};

int dd_store_get_batch(dd_store *s, const dd_store_get_item *items, size_t n)
{
    if (!items || n == 0 || n > DD_STORE_GET_MAX)
        return DD_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!items[i].workflow_id || !*items[i].workflow_id || !items[i].cb)
            return DD_EINVAL;
    int rc = dd_store__check(s);
    if (rc)
        return rc;
    size_t argc = 3 + n;
    const char **argv = dd_xcalloc(argc, sizeof(*argv));
    char *keys = dd_xmalloc(n * DD_STORE__KEYMAX);
    char numkeys[24];
    size_t k = 0;
    argv[k++] = "EVAL";
    argv[k++] = lua_get_batch;
    argv[k++] = I64(numkeys, n);
    for (size_t i = 0; i < n && !rc; i++)
        if (!(argv[k++] = dd_store__key(keys + i * DD_STORE__KEYMAX, "hb", items[i].workflow_id)))
            rc = DD_EINVAL; /* an id too long for a key */
    if (rc) {
        free(argv);
        free(keys);
        return rc;
    }
    get_batch *b = dd_xcalloc(1, sizeof(*b) + n * sizeof(b->it[0]));
    b->n = n;
    for (size_t i = 0; i < n; i++) {
        b->it[i].cb = items[i].cb;
        b->it[i].arg = items[i].arg;
        b->it[i].wid = dd_strdup(items[i].workflow_id);
    }
    dd_store__req *r = dd_rec_begin(s, &get_batch_op, dd_rec_get_batch_marker, b, &rc);
    if (r)
        rc = dd_rec_end(r, dd_store__cmdv(r, (int)argc, argv));
    if (rc < 0) { /* refused at once: no callback runs, so nothing else frees it */
        for (size_t i = 0; i < n; i++)
            free(b->it[i].wid);
        free(b);
    }
    free(argv);
    free(keys);
    return rc;
}

/* Stale query / list: reply 1 is the script's {server time, members,
 * ZCARD, ZCOUNT}; it sends one HGETALL per member (pipelined: all go out
 * before the first answer is read), and reply 1 + i fills record i. */
static void dd_rec_range_reply(dd_store__req *r, redisReply *rep)
{
    unsigned k = r->nreplies;
    if (k == 1) {
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 5 || !dd_rec_is_str(rep->element[0]) ||
            dd_rec_parse_i64(rep->element[0]->str, &r->owner.now_ms) < 0 ||
            rep->element[1]->type != REDIS_REPLY_ARRAY ||
            rep->element[2]->type != REDIS_REPLY_INTEGER ||
            rep->element[3]->type != REDIS_REPLY_INTEGER || !dd_rec_is_str(rep->element[4]) ||
            dd_rec_parse_i64(rep->element[4]->str, &r->up_since_ms) < 0) {
            dd_store__finish(r, DD_EPROTO);
            return;
        }
        r->total = rep->element[2]->integer;
        r->stale = rep->element[3]->integer;
        const redisReply *ms = rep->element[1];
        r->recs = ms->elements ? dd_xcalloc(ms->elements, sizeof(*r->recs)) : NULL;
        r->nrecs = ms->elements;
        for (size_t i = 0; i < ms->elements; i++) {
            char key[DD_STORE__KEYMAX];
            const redisReply *m = ms->element[i];
            /* workflow_id is set here so a failed send still frees cleanly */
            r->recs[i].workflow_id = dd_rec_is_str(m) ? dd_rec_xstrndup(m->str, m->len) : dd_strdup("");
            r->recs[i].now_ms = r->owner.now_ms;
            r->recs[i].up_since_ms = r->up_since_ms;
            if (!dd_store__key(key, "hb", r->recs[i].workflow_id))
                snprintf(key, sizeof(key), "dd:hb:{}");
            if (dd_store__cmd(r, "HGETALL", key, NULL) < 0) {
                dd_store__finish(r, DD_EUNAVAIL);
                return;
            }
        }
    } else if (k - 2 < r->nrecs) {
        dd_store_hb *h = &r->recs[k - 2];
        char *wid = (char *)h->workflow_id;
        dd_rec_parse_record(h, wid, rep);
        if (h->workflow_id != wid)
            free(wid);
    }
    if (r->pending == 0)
        dd_store__finish(r, 0);
}

static void dd_rec_list_deliver(dd_store__req *r, int status)
{
    dd_store_hb_list l = {r->recs, r->nrecs, r->total, r->stale, r->owner.now_ms,
                          r->up_since_ms};
    ((dd_store_hb_list_cb *)r->cb)(status, status == 0 ? &l : NULL, r->arg);
}

static const dd_store__op stale_op = {"stale", dd_rec_range_reply, dd_rec_list_deliver,
    "EVAL (TIME INFO ZRANGEBYSCORE ZCARD ZCOUNT) on dd:hb:index, then HGETALL on dd:hb:{wid}"};
static const dd_store__op list_op = {"list", dd_rec_range_reply, dd_rec_list_deliver,
    "EVAL (TIME INFO ZRANGEBYSCORE ZCARD ZCOUNT) on dd:hb:index, then HGETALL on dd:hb:{wid}"};

static int dd_rec_range_query(dd_store *s, const dd_store__op *op, int64_t now_ms, const char *thr,
                       size_t limit, dd_store_hb_list_cb *cb, void *arg)
{
    char lim[24], now[24];
    int rc;
    dd_store__req *r = dd_rec_begin(s, op, (void (*)(void))cb, arg, &rc);
    if (!r)
        return rc;
    snprintf(lim, sizeof(lim), "%zu", limit);
    return dd_rec_end(r, dd_store__cmd(r, "EVAL", lua_range, "1", INDEX_KEY, I64(now, now_ms), thr,
                                limit ? lim : "-1", NULL));
}

int dd_store_stale(dd_store *s, int64_t now_ms, int64_t threshold_ms, size_t limit,
                   dd_store_hb_list_cb *cb, void *arg)
{
    char thr[24];
    if (limit == 0 || threshold_ms < 0 || now_ms < 0)
        return DD_EINVAL;
    /* the script makes it exclusive: a record exactly threshold old is not stale yet */
    return dd_rec_range_query(s, &stale_op, now_ms, I64(thr, threshold_ms), limit, cb, arg);
}

int dd_store_list(dd_store *s, size_t limit, dd_store_hb_list_cb *cb, void *arg)
{
    return dd_rec_range_query(s, &list_op, 0, "", limit, cb, arg);
}

/* ---- worker registry ---------------------------------------------------- */

/* Fills r->workers from a flat {member, score, ...} array. */
static int dd_rec_parse_workers(dd_store__req *r, const redisReply *a)
{
    if (a->type != REDIS_REPLY_ARRAY || a->elements % 2)
        return DD_EPROTO;
    r->nworkers = a->elements / 2;
    r->workers = r->nworkers ? dd_xcalloc(r->nworkers, sizeof(*r->workers)) : NULL;
    for (size_t i = 0; i < r->nworkers; i++) {
        const redisReply *m = a->element[2 * i], *sc = a->element[2 * i + 1];
        double d = dd_rec_is_str(sc) ? strtod(sc->str, NULL) : 0;
        /* a score from the peer: NaN or beyond int64 must not reach the cast */
        if (!(d >= -9.0e18 && d <= 9.0e18))
            d = 0;
        r->workers[i].server_id = dd_rec_is_str(m) ? dd_rec_xstrndup(m->str, m->len) : dd_strdup("");
        r->workers[i].hb_ms = (int64_t)d;
    }
    return 0;
}

static void dd_rec_workers_reply(dd_store__req *r, redisReply *rep)
{
    r->status = dd_rec_parse_workers(r, rep);
    dd_store__finish(r, 0);
}

static void dd_rec_evict_reply(dd_store__req *r, redisReply *rep)
{
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 && dd_rec_is_str(rep->element[0]) &&
        !strcmp(rep->element[0]->str, "ok"))
        r->status = dd_rec_parse_workers(r, rep->element[1]);
    else if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 4)
        r->status = DD_EFENCED;
    else
        r->status = DD_EPROTO;
    dd_store__finish(r, 0);
}

static void dd_rec_workers_deliver(dd_store__req *r, int status)
{
    dd_store_workers w = {r->workers, r->nworkers};
    status = status ? status : r->status;
    ((dd_store_workers_cb *)r->cb)(status, status == 0 ? &w : NULL, r->arg);
}

static const dd_store__op workers_op = {"worker_list", dd_rec_workers_reply, dd_rec_workers_deliver,
    "ZRANGE WITHSCORES on dd:workers:{wid}"};
static const dd_store__op evict_op = {"worker_evict", dd_rec_evict_reply, dd_rec_workers_deliver,
    "EVAL (HMGET ZRANGEBYSCORE ZREM) on dd:hb:{wid} dd:workers:{wid}"};

int dd_store_worker_list(dd_store *s, const char *wid, dd_store_workers_cb *cb, void *arg)
{
    char key[DD_STORE__KEYMAX];
    int rc;
    if (!dd_store__key(key, "workers", wid))
        return DD_EINVAL;
    dd_store__req *r = dd_rec_begin(s, &workers_op, (void (*)(void))cb, arg, &rc);
    if (!r)
        return rc;
    return dd_rec_end(r, dd_store__cmd(r, "ZRANGE", key, "0", "-1", "WITHSCORES", NULL));
}

int dd_store_worker_evict(dd_store *s, const char *wid, const char *run_id, int64_t epoch,
                          int64_t older_than_ms, size_t max_batch, dd_store_workers_cb *cb,
                          void *arg)
{
    char hb[DD_STORE__KEYMAX], wk[DD_STORE__KEYMAX], e[24], older[24], batch[24];
    int rc;
    if (!dd_store__key(hb, "hb", wid) || !dd_store__key(wk, "workers", wid) || !run_id ||
        max_batch == 0)
        return DD_EINVAL;
    dd_store__req *r = dd_rec_begin(s, &evict_op, (void (*)(void))cb, arg, &rc);
    if (!r)
        return rc;
    snprintf(batch, sizeof(batch), "%zu", max_batch);
    return dd_rec_end(r, dd_store__cmd(r, "EVAL", lua_evict, "2", hb, wk, run_id, I64(e, epoch),
                                I64(older, older_than_ms), batch, NULL));
}

/* ---- oldest heartbeat --------------------------------------------------- */

static void dd_rec_oldest_reply(dd_store__req *r, redisReply *rep)
{
    if (rep->type != REDIS_REPLY_ARRAY || (rep->elements != 0 && rep->elements != 2)) {
        r->status = DD_EPROTO;
    } else if (rep->elements == 0) {
        r->status = DD_ENOTFOUND;
    } else if (!dd_rec_is_str(rep->element[0]) || !dd_rec_is_str(rep->element[1])) {
        r->status = DD_EPROTO;
    } else {
        /* scores come back as "1700000000000" (or "1.7e+12" for big ones) */
        r->str[0] = dd_rec_xstrndup(rep->element[0]->str, rep->element[0]->len);
        double d = strtod(rep->element[1]->str, NULL);
        if (d >= -9.0e18 && d <= 9.0e18) /* NaN and out of range: malformed */
            r->owner.epoch = (int64_t)d;
        else
            r->status = DD_EPROTO;
    }
    dd_store__finish(r, 0);
}

static void dd_rec_oldest_deliver(dd_store__req *r, int status)
{
    status = status ? status : r->status;
    ((dd_store_oldest_cb *)r->cb)(status, status == 0 ? r->str[0] : NULL,
                                  status == 0 ? r->owner.epoch : 0, r->arg);
}

static const dd_store__op oldest_op = {"oldest", dd_rec_oldest_reply, dd_rec_oldest_deliver,
    "ZRANGEBYSCORE on dd:hb:index"};

int dd_store_oldest(dd_store *s, int64_t min_hb_ms, dd_store_oldest_cb *cb, void *arg)
{
    char min[24];
    int rc;
    dd_store__req *r = dd_rec_begin(s, &oldest_op, (void (*)(void))cb, arg, &rc);
    if (!r)
        return rc;
    return dd_rec_end(r, dd_store__cmd(r, "ZRANGEBYSCORE", INDEX_KEY, I64(min, min_hb_ms), "+inf",
                                "WITHSCORES", "LIMIT", "0", "1", NULL));
}

/* ---- the fleet's ID prefix ---------------------------------------------- */

/* KEYS: the prefix key. ARGV: ours. The first host of a fleet writes it;
 * every later one reads what the fleet uses. */
static const char lua_id_prefix[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur then return cur end\n"
    "redis.call('SET', KEYS[1], ARGV[1])\n"
    "return ARGV[1]\n";

static void dd_rec_id_prefix_reply(dd_store__req *r, redisReply *rep)
{
    if (dd_rec_is_str(rep))
        r->str[0] = dd_rec_xstrndup(rep->str, rep->len);
    else
        r->status = DD_EPROTO;
    dd_store__finish(r, 0);
}

static void dd_rec_id_prefix_deliver(dd_store__req *r, int status)
{
    status = status ? status : r->status;
    ((dd_store_id_prefix_cb *)r->cb)(status, status == 0 ? r->str[0] : NULL, r->arg);
}

static const dd_store__op id_prefix_op = {"id_prefix", dd_rec_id_prefix_reply, dd_rec_id_prefix_deliver,
    "EVAL (GET SET) on dd:id_prefix"};

int dd_store_id_prefix(dd_store *s, const char *prefix, dd_store_id_prefix_cb *cb, void *arg)
{
    int rc;
    if (!prefix || !*prefix)
        return DD_EINVAL;
    dd_store__req *r = dd_rec_begin(s, &id_prefix_op, (void (*)(void))cb, arg, &rc);
    if (!r)
        return rc;
    return dd_rec_end(r, dd_store__cmd(r, "EVAL", lua_id_prefix, "1", ID_PREFIX_KEY, prefix, NULL));
}
