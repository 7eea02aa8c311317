/**
 * The Lua scripts of the Redis driver. Each runs atomically on the server; each is sent once and then called by its
 * SHA1 (EVALSHA), and sent again after a NOSCRIPT (a restarted or flushed server).
 *
 * Keys, all under one prefix P = `{namespace}:` (one hash tag, so a namespace lives in one cluster slot):
 *   P s:<sid>        session: value = member id, PX = the session TTL
 *   P ss             zset sid -> expiry (server ms): the sessions a live coordinator may have to reap
 *   P sm:<sid>       hash group -> member: the session's memberships
 *   P sl:<sid>       set of hold keys: `<kind>:<name>` for an exclusive hold, `<slot>/<kind>:<name>` for a shared
 *                    hold or a permit: what the session holds; and '' once a fast path has granted the session a
 *                    hold, so that the set outlives its last hold (not made and deleted again on every acquire and
 *                    release of an uncontended lock); it goes with the session
 *   P groups         set of group names
 *   P g:<group>      hash member -> `<sid> <capabilities JSON>`
 *   P x:<group>      stream of changes: n (sequence), t (j|u|l), m (member), c (capabilities JSON)
 *   P n:<group>      the group's change sequence number (so a reader can tell a trimmed stream from a gapless one)
 *   P l:<kind>:<name>   the holders: an exclusive one as s (sid), m (member), t (fencing token), w (its grant's
 *                       nonce); or shared ones (holds of a lock, permits of a semaphore) as <rid> -> `<token> <nonce>
 *                       <member>` each, with k (a semaphore's limit) while any holds
 *   P f:<kind>:<name>   fencing counter: the last token granted, never more than 1 ms below the server's TIME in
 *                       microseconds (see FENCE), lapsing a week after it was last moved up to the clock
 *   P q:<kind>:<name>   list of waiting requests (rids), FIFO: the line behind the holders
 *   P qt:<kind>:<name>  zset rid -> expiry of the waiter's entry (server ms), refreshed while it waits
 *   P qn:<kind>:<name>  hash rid -> the waiting call's nonce, so a waiter trusts only a grant meant for this wait
 *   P qs:<kind>:<name>  hash rid -> when the request entered the line (server ms), for listings
 *   P r              with ?replicas=N only: the last confirmed grant's token, written by confirm so that a WAIT on
 *                    the confirming connection covers the grant (PX one minute)
 *   channel P c:<kind>:<name>: `g <rid> <nonce> <token>` when granted, `r` when a hold ends and nobody is granted (watchers)
 *   channel P w:<driver id>: `<nonce> <token>` when a queued call of that driver is granted the lock (waiters)
 *
 * A request's id (rid) is its session's id for an exclusive one (slot 0: exclusive locks and leadership keep the
 * layout and the fast paths they always had), `<sid>/<slot>` for a shared hold or a permit; a sid never holds a '/'.
 * Every request of a name waits in its one line and is granted by the rule of holdsAt (src/driver.ts): the first in
 * line holds; after a shared holder, the shared requests that follow also hold, up to the limit (see promote).
 *
 * Every script takes KEYS[1] = P..'ss' (routing only) and ARGV[1] = P, then its own arguments.
 * Errors meant for the caller are replies 'CONCORD <code>'.
 */
import { createHash } from 'node:crypto';
import type { LockKind } from '../../src/driver.js';

/** A lock's key under the prefix, as the scripts take it: `<kind>:<name>`. */
export function lockKey(kind: LockKind, name: string): string {
  return `${kind}:${name}`;
}

/**
 * Shared holds of a lock take slots from 1 and permits of a semaphore from 0 (src/lock/registry.ts); slot 0 of a lock,
 * and leadership, is the exclusive request.
 */
export function isShared(kind: LockKind, slot: number): boolean {
  return kind === 'semaphore' || slot > 0;
}

/** A shared request's id in its line (an exclusive one's is its session's id). */
export function requestId(sessionId: string, slot: number): string {
  return `${sessionId}/${String(slot)}`;
}

/** What a shared hold is listed under in its session's set and known by in held.ts (an exclusive one: its lock key). */
export function holdKey(lockKey: string, slot: number): string {
  return `${String(slot)}/${lockKey}`;
}

/** A fencing counter lapses this long after it was seeded (it is re-seeded from the clock, so tokens still grow). */
export const FENCE_TTL_MS = 7 * 24 * 3600 * 1000;

/** How far below the server's clock (µs) a fencing token may be before the counter is moved up to the clock. */
export const FENCE_SLACK_US = 1000;

/** Entries kept per group stream; a watcher further behind than this resynchronises. */
export const STREAM_MAXLEN = 2000;

/**
 * The next fencing token of lock `lk`, recorded as the lock's last: above the last one granted (the counter), above the
 * previous holder's (`last`, when known), and never more than FENCE_SLACK_US below the server's clock in
 * microseconds (`t`, a TIME reply). The clock keeps tokens growing when the counter is gone: after a restart that
 * lost the data, after it lapsed (a week after it was last moved up to the clock, so names used once do not pile up),
 * and after a failover to a replica that never saw the latest grants: every token is at most the clock of its grant
 * (nobody takes a lock a million times a second), and the promoted replica's clock has moved on by more than the
 * slack by the time it grants again (a failover takes far longer than a millisecond; clocks of the servers must agree
 * better than that duration). The counter is moved up to the clock only when it fell behind by more than the slack,
 * so a busy lock pays one write per millisecond at most, not one per grant. The previous holder's token keeps tokens
 * growing should the clock go back.
 */
const FENCE = `
local function fence(lk, t, last)
  local key = P .. 'f:' .. lk
  local n = redis.call('INCR', key)
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local above = now
  if last and tonumber(last) >= above then above = tonumber(last) + 1 end
  if n < above - ${FENCE_SLACK_US} or (last and n <= tonumber(last)) then
    n = above
    redis.call('SET', key, string.format('%d', n), 'PX', ${FENCE_TTL_MS})
  end
  return string.format('%d', n)
end`;

/**
 * FENCE for a grant with no previous holder to exceed, inlined for the fast paths (no function, no second TIME): sets
 * `token` for the lock `lk`.
 */
const FENCE_INLINE = `  local fence = P .. 'f:' .. lk
  local n = redis.call('INCR', fence)
  local t = redis.call('TIME')
  local now = t[1] * 1000000 + t[2]
  if n < now - ${FENCE_SLACK_US} then
    n = now
    redis.call('SET', fence, string.format('%d', n), 'PX', ${FENCE_TTL_MS})
  end
  local token = string.format('%d', n)`;

const PRELUDE = `
local P = ARGV[1]
local NOW = nil
local function nowms()
  if not NOW then
    local t = redis.call('TIME')
    NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return NOW
end
local function fail(code) return redis.error_reply('CONCORD ' .. code) end
${FENCE}
local function alive(sid) return redis.call('EXISTS', P .. 's:' .. sid) == 1 end

-- A request's session, whether it is shared, and the key it is held under in sl:<sid> (see the top of this file).
local function sidOf(rid)
  local c = string.find(rid, '/', 1, true)
  if c then return string.sub(rid, 1, c - 1) end
  return rid
end
local function isShared(rid) return string.find(rid, '/', 1, true) ~= nil end
local function holdKey(lk, rid)
  local c = string.find(rid, '/', 1, true)
  if c then return string.sub(rid, c + 1) .. '/' .. lk end
  return lk
end
-- A shared holder's value: token, nonce, member.
local function parseHold(v) return string.match(v, '^(%d+) (%S+) (.*)$') end

local function event(group, typ, member, caps)
  local n = redis.call('INCR', P .. 'n:' .. group)
  redis.call('XADD', P .. 'x:' .. group, 'MAXLEN', '~', ${STREAM_MAXLEN}, '*', 'n', n, 't', typ, 'm', member, 'c', caps)
end

-- The waiting call learns of its grant on its own driver's channel (the nonce is '<driver id>:<n>').
local function tell(nonce, token)
  local c = string.find(nonce, ':', 1, true)
  if c then redis.call('PUBLISH', P .. 'w:' .. string.sub(nonce, 1, c - 1), nonce .. ' ' .. token) end
end

-- last: the token of the holder this grant follows, when known (the lock key is already gone on a hand-off).
local function grant(lk, sid, member, nonce, last)
  local token = fence(lk, redis.call('TIME'), last)
  redis.call('HSET', P .. 'l:' .. lk, 's', sid, 'm', member, 't', token, 'w', nonce)
  redis.call('SADD', P .. 'sl:' .. sid, lk)
  redis.call('PUBLISH', P .. 'c:' .. lk, 'g ' .. sid .. ' ' .. nonce .. ' ' .. token)
  tell(nonce, token)
  return token
end

-- A shared hold or a permit; limit (when above 0) is recorded as the semaphore's.
local function grantShared(lk, rid, member, nonce, last, limit)
  local token = fence(lk, redis.call('TIME'), last)
  local l = P .. 'l:' .. lk
  local v = token .. ' ' .. nonce .. ' ' .. member
  if limit and limit > 0 then
    redis.call('HSET', l, rid, v, 'k', string.format('%d', limit))
  else
    redis.call('HSET', l, rid, v)
  end
  redis.call('SADD', P .. 'sl:' .. sidOf(rid), holdKey(lk, rid))
  redis.call('PUBLISH', P .. 'c:' .. lk, 'g ' .. rid .. ' ' .. nonce .. ' ' .. token)
  tell(nonce, token)
  return token
end

-- Drops waiters at the head whose session died or who stopped refreshing their entry; returns the live head.
local function prune(lk, now)
  local q, qt = P .. 'q:' .. lk, P .. 'qt:' .. lk
  while true do
    local head = redis.call('LINDEX', q, 0)
    if not head then return nil end
    now = now or nowms()
    local exp = redis.call('ZSCORE', qt, head)
    if exp and tonumber(exp) >= now and alive(sidOf(head)) then return head end
    redis.call('LPOP', q)
    redis.call('ZREM', qt, head)
    redis.call('HDEL', P .. 'qn:' .. lk, head)
    redis.call('HDEL', P .. 'qs:' .. lk, head)
  end
end

local function dequeue(lk, rid)
  if redis.call('ZREM', P .. 'qt:' .. lk, rid) == 1 then
    redis.call('LREM', P .. 'q:' .. lk, 0, rid)
    redis.call('HDEL', P .. 'qn:' .. lk, rid)
    redis.call('HDEL', P .. 'qs:' .. lk, rid)
  end
end

-- A new entry records when it entered the line (now, server ms); a refresh keeps that time.
local function enqueue(lk, rid, expiry, nonce, now)
  if redis.call('ZADD', P .. 'qt:' .. lk, expiry, rid) == 1 then
    redis.call('RPUSH', P .. 'q:' .. lk, rid)
    redis.call('HSET', P .. 'qs:' .. lk, rid, now)
  end
  redis.call('HSET', P .. 'qn:' .. lk, rid, nonce)
end

-- The line moved (a hold ended, a waiter left): the live waiters at its head that may now hold are granted at once
-- (no round trip on their side): the first one when nobody holds; then, while they are shared and no exclusive one
-- holds, the next ones up to the limit. A semaphore's limit is the recorded one, else \`limit\`, else 1 (never too
-- many). A hold that ended (freed) with nobody granted is announced.
local function promote(lk, now, last, limit, freed)
  local l = P .. 'l:' .. lk
  if redis.call('HGET', l, 's') then return end
  local n = redis.call('HLEN', l)
  local stored = redis.call('HGET', l, 'k')
  if stored then
    limit = tonumber(stored)
    n = n - 1
  elseif not limit then
    limit = 0
    if string.sub(lk, 1, 10) == 'semaphore:' then limit = 1 end
  end
  local granted = false
  while limit == 0 or n < limit do
    local head = prune(lk, now)
    if not head then break end
    local shared = isShared(head)
    if not shared and n > 0 then break end
    local member = redis.call('GET', P .. 's:' .. sidOf(head))
    local nonce = redis.call('HGET', P .. 'qn:' .. lk, head) or '-'
    dequeue(lk, head)
    granted = true
    if not shared then
      grant(lk, head, member, nonce, last)
      break
    end
    grantShared(lk, head, member, nonce, last, limit)
    n = n + 1
  end
  if freed and not granted then redis.call('PUBLISH', P .. 'c:' .. lk, 'r') end
end

local function free(lk, sid, now)
  local last = redis.call('HGET', P .. 'l:' .. lk, 't')
  redis.call('DEL', P .. 'l:' .. lk)
  redis.call('SREM', P .. 'sl:' .. sid, lk)
  promote(lk, now, last, nil, true)
end

-- Ends a shared hold or a permit (the lock key goes once only the limit is left) and serves the line.
local function release(lk, rid, now)
  local l = P .. 'l:' .. lk
  local h = redis.call('HMGET', l, rid, 'k')
  redis.call('HDEL', l, rid)
  if h[2] and redis.call('HLEN', l) == 1 then redis.call('DEL', l) end
  redis.call('SREM', P .. 'sl:' .. sidOf(rid), holdKey(lk, rid))
  local last = nil
  if h[1] then last = parseHold(h[1]) end
  promote(lk, now, last, h[2] and tonumber(h[2]), true)
end

-- Holders whose session died are removed, and the line is served: afterwards the live waiter at its head (if any)
-- may not hold yet. limit: the caller's, for a semaphore that has none recorded.
local function settle(lk, now, limit)
  local l = P .. 'l:' .. lk
  local s = redis.call('HGET', l, 's')
  if s then
    if not alive(s) then free(lk, s, now) end
    return
  end
  local all = redis.call('HGETALL', l)
  local last, freed = nil, false
  for i = 1, #all, 2 do
    local rid = all[i]
    if rid ~= 'k' and not alive(sidOf(rid)) then
      local token = parseHold(all[i + 1])
      redis.call('HDEL', l, rid)
      redis.call('SREM', P .. 'sl:' .. sidOf(rid), holdKey(lk, rid))
      freed = true
      if token and (not last or tonumber(token) > tonumber(last)) then last = token end
    end
  end
  local stored = redis.call('HGET', l, 'k')
  if stored then
    limit = tonumber(stored)
    if redis.call('HLEN', l) == 1 then redis.call('DEL', l) end
  end
  promote(lk, now, last, limit, freed)
end

-- ms until a holder's session would expire (the earliest of shared holders'), -1 when unknown.
local function holderTtl(lk)
  local l = P .. 'l:' .. lk
  local s = redis.call('HGET', l, 's')
  if s then return redis.call('PTTL', P .. 's:' .. s) end
  local least = -1
  local all = redis.call('HGETALL', l)
  for i = 1, #all, 2 do
    if all[i] ~= 'k' then
      local ttl = redis.call('PTTL', P .. 's:' .. sidOf(all[i]))
      if ttl >= 0 and (least < 0 or ttl < least) then least = ttl end
    end
  end
  return least
end

-- Everything a dead or closed session held: memberships (with leave events) and locks (handed to waiters).
local function reapSession(sid, now)
  local sm = P .. 'sm:' .. sid
  local groups = redis.call('HGETALL', sm)
  for i = 1, #groups, 2 do
    local g, m = groups[i], groups[i + 1]
    local gk = P .. 'g:' .. g
    local v = redis.call('HGET', gk, m)
    if v and string.sub(v, 1, #sid + 1) == sid .. ' ' then
      redis.call('HDEL', gk, m)
      event(g, 'l', m, '')
    end
  end
  redis.call('DEL', sm)
  local sl = P .. 'sl:' .. sid
  for _, hk in ipairs(redis.call('SMEMBERS', sl)) do
    local slot, lk = string.match(hk, '^(%d+)/(.*)$')
    if hk == '' then
      -- the placeholder of the fast paths: no hold
    elseif slot then
      local rid = sid .. '/' .. slot
      if redis.call('HGET', P .. 'l:' .. lk, rid) then release(lk, rid, now) end
    else
      local h = redis.call('HMGET', P .. 'l:' .. hk, 's', 't')
      if h[1] == sid then
        redis.call('DEL', P .. 'l:' .. hk)
        promote(hk, now, h[2], nil, true)
      end
    end
  end
  redis.call('DEL', sl)
  redis.call('ZREM', P .. 'ss', sid)
end

local function reap(now, limit)
  local due = redis.call('ZRANGEBYSCORE', P .. 'ss', '-inf', now, 'LIMIT', 0, limit)
  local n = 0
  for _, sid in ipairs(due) do
    local pttl = redis.call('PTTL', P .. 's:' .. sid)
    if pttl < 0 then
      reapSession(sid, now)
      n = n + 1
    else
      redis.call('ZADD', P .. 'ss', now + pttl, sid)
    end
  end
  return n
end

-- {1, hold key...}: the holds named in ARGV[from], ARGV[from + 2]... (each followed by its token) that sid no longer
-- holds with that token: deleted, or given to someone else, from outside.
local function held(sid, from)
  local out = {1}
  for i = from, #ARGV - 1, 2 do
    local hk, token = ARGV[i], ARGV[i + 1]
    local slot, lk = string.match(hk, '^(%d+)/(.*)$')
    if slot then
      local v = redis.call('HGET', P .. 'l:' .. lk, sid .. '/' .. slot)
      if not v or parseHold(v) ~= token then table.insert(out, hk) end
    else
      local h = redis.call('HMGET', P .. 'l:' .. hk, 's', 't')
      if h[1] ~= sid or h[2] ~= token then table.insert(out, hk) end
    end
  end
  return out
end

local function ownerOf(v) return string.sub(v, 1, string.find(v, ' ', 1, true) - 1) end

-- Members whose session died are reaped before anyone looks at the group.
local function reapGroup(group, now)
  local all = redis.call('HGETALL', P .. 'g:' .. group)
  for i = 2, #all, 2 do
    local sid = ownerOf(all[i])
    if not alive(sid) then reapSession(sid, now) end
  end
end
`;

/**
 * Fast paths, run before the prelude (whose functions then are never defined): an uncontended acquire or release is a
 * few plain commands, close to a SET NX and a compare-and-delete; a wait behind a live holder and a release to a live
 * first waiter skip the general machinery too. Anything unusual (a dead holder, a stale or dead head of the line, a
 * retry by the holder itself, shared holders or a shared request at the head) falls through, before any write, to the
 * full body. Shared holds and permits have theirs: joining a line of shared holders below the limit with nobody
 * queued, and leaving one with nobody queued.
 */
const FAST: { readonly [K in ScriptName]?: string } = {
  acquire: `
local P, lk, sid = ARGV[1], ARGV[2], ARGV[3]
local l, q, s = P .. 'l:' .. lk, P .. 'q:' .. lk, P .. 's:' .. sid
-- Three questions in one call: EXISTS counts a key each time it is named, so the lock and its line add 0 to 2 and
-- our session 3 when it is alive. A dead session is refused whatever else holds (as in the full body).
local n = redis.call('EXISTS', l, q, s, s, s)
if n < 3 then return redis.error_reply('CONCORD ERR_SESSION_LOST') end
-- Free and nobody queued: grant at once (the full body's grant, seeding included, for a lock nobody holds).
if n == 3 then
  -- FENCE, inlined (no previous holder here).
${FENCE_INLINE}
  redis.call('HSET', l, 's', sid, 'm', ARGV[4], 't', token, 'w', ARGV[7])
  -- With the placeholder '' (see the top of this file): the release's SREM then never deletes the set.
  redis.call('SADD', P .. 'sl:' .. sid, lk, '')
  redis.call('PUBLISH', P .. 'c:' .. lk, 'g ' .. sid .. ' ' .. ARGV[7] .. ' ' .. token)
  return {1, token}
end
-- Held by another live session: report, and take (or keep) our place in the line when waiting.
local holder = redis.call('HGET', l, 's')
if holder and holder ~= sid then
  local pttl = redis.call('PTTL', P .. 's:' .. holder)
  if pttl ~= -2 then
    if ARGV[5] == 'wait' then
      local t = redis.call('TIME')
      local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
      if redis.call('ZADD', P .. 'qt:' .. lk, now + tonumber(ARGV[6]), sid) == 1 then
        redis.call('RPUSH', q, sid)
        redis.call('HSET', P .. 'qs:' .. lk, sid, now)
      end
      redis.call('HSET', P .. 'qn:' .. lk, sid, ARGV[7])
    end
    return {0, pttl}
  end
end`,
  unlock: `
local P, lk, sid = ARGV[1], ARGV[2], ARGV[3]
local l, q = P .. 'l:' .. lk, P .. 'q:' .. lk
local h = redis.call('HMGET', l, 's', 't')
if h[1] ~= sid or h[2] ~= ARGV[4] then return 0 end
local head = redis.call('LINDEX', q, 0)
-- Nobody queued: delete and announce.
if not head then
  redis.call('DEL', l)
  redis.call('SREM', P .. 'sl:' .. sid, lk)
  redis.call('PUBLISH', P .. 'c:' .. lk, 'r')
  return 1
end
-- The first waiter is live and its entry fresh: hand the lock over in place (a dead or stale head is the full
-- body's business).
local qt = P .. 'qt:' .. lk
local exp = redis.call('ZSCORE', qt, head)
local member = redis.call('GET', P .. 's:' .. head)
if exp and member then
  local t = redis.call('TIME')
  if tonumber(exp) >= tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) then
    local qn = P .. 'qn:' .. lk
    local nonce = redis.call('HGET', qn, head) or '-'
    redis.call('LPOP', q)
    redis.call('ZREM', qt, head)
    redis.call('HDEL', qn, head)
    redis.call('HDEL', P .. 'qs:' .. lk, head)
    redis.call('SREM', P .. 'sl:' .. sid, lk)
${FENCE}
    local token = fence(lk, t, h[2])
    redis.call('HSET', l, 's', head, 'm', member, 't', token, 'w', nonce)
    redis.call('SADD', P .. 'sl:' .. head, lk)
    redis.call('PUBLISH', P .. 'c:' .. lk, 'g ' .. head .. ' ' .. nonce .. ' ' .. token)
    local c = string.find(nonce, ':', 1, true)
    if c then redis.call('PUBLISH', P .. 'w:' .. string.sub(nonce, 1, c - 1), nonce .. ' ' .. token) end
    return 1
  end
end`,
  acquireShared: `
local P, lk, rid = ARGV[1], ARGV[2], ARGV[3]
local l, q = P .. 'l:' .. lk, P .. 'q:' .. lk
local limit = tonumber(ARGV[8])
local c = string.find(rid, '/', 1, true)
local sid = string.sub(rid, 1, c - 1)
local s = P .. 's:' .. sid
-- As the exclusive fast path: the lock and its line count 0 to 2, our live session 3; a dead one is refused.
local live = redis.call('EXISTS', l, q, s, s, s)
if live < 3 then return redis.error_reply('CONCORD ERR_SESSION_LOST') end
-- Nobody in line; or only shared holders, below this very limit, and nobody queued: hold at once.
local join = live == 3
if not join and redis.call('EXISTS', q) == 0 then
  local h = redis.call('HMGET', l, 's', 'k', rid)
  local k = h[2] or '0'
  if not h[1] and not h[3] and k == ARGV[8] then
    local n = redis.call('HLEN', l)
    if h[2] then n = n - 1 end
    join = limit == 0 or n < limit
  end
end
if join then
  -- FENCE, inlined (as the exclusive fast path: tokens before it are below the counter, or below the clock).
${FENCE_INLINE}
  local v = token .. ' ' .. ARGV[7] .. ' ' .. ARGV[4]
  if limit > 0 then redis.call('HSET', l, rid, v, 'k', ARGV[8]) else redis.call('HSET', l, rid, v) end
  redis.call('SADD', P .. 'sl:' .. sid, string.sub(rid, c + 1) .. '/' .. lk, '')
  redis.call('PUBLISH', P .. 'c:' .. lk, 'g ' .. rid .. ' ' .. ARGV[7] .. ' ' .. token)
  return {1, token}
end`,
  unlockShared: `
local P, lk, rid = ARGV[1], ARGV[2], ARGV[3]
local l = P .. 'l:' .. lk
local v = redis.call('HGET', l, rid)
if not v or string.match(v, '^%d+') ~= ARGV[4] then return 0 end
-- Nobody queued: drop the hold (and the key, once only the limit is left) and announce.
if redis.call('EXISTS', P .. 'q:' .. lk) == 0 then
  redis.call('HDEL', l, rid)
  if redis.call('HLEN', l) == 1 and redis.call('HGET', l, 'k') then redis.call('DEL', l) end
  local c = string.find(rid, '/', 1, true)
  redis.call('SREM', P .. 'sl:' .. string.sub(rid, 1, c - 1), string.sub(rid, c + 1) .. '/' .. lk)
  redis.call('PUBLISH', P .. 'c:' .. lk, 'r')
  return 1
end`,
};

const BODIES = {
  /** ARGV: P, sid, member, ttlMs */
  openSession: `
redis.call('SET', P .. 's:' .. ARGV[2], ARGV[3], 'PX', ARGV[4])
redis.call('ZADD', P .. 'ss', nowms() + tonumber(ARGV[4]), ARGV[2])
return 1`,

  /**
   * ARGV: P, sid, ttlMs, reapLimit, then `<kind>:<name>`, token for each lock the caller believes the session holds.
   * 0 when the session is gone, else {1, the locks among those it no longer holds...}. Reaps expired sessions too.
   */
  renewSession: `
local sid = ARGV[2]
local now = nowms()
if redis.call('PEXPIRE', P .. 's:' .. sid, ARGV[3]) == 0 then return 0 end
redis.call('ZADD', P .. 'ss', now + tonumber(ARGV[3]), sid)
reap(now, tonumber(ARGV[4]))
return held(sid, 5)`,

  /** ARGV: P, sid, then `<kind>:<name>`, token pairs. {0} when the session is gone, else as renewSession. */
  check: `
local sid = ARGV[2]
if not alive(sid) then return {0} end
return held(sid, 3)`,

  /** ARGV: P, limit */
  reap: `return reap(nowms(), tonumber(ARGV[2]))`,

  /** ARGV: P, sid */
  closeSession: `
redis.call('DEL', P .. 's:' .. ARGV[2])
reapSession(ARGV[2], nowms())
return 1`,

  /** ARGV: P, group */
  createGroup: `
if redis.call('SADD', P .. 'groups', ARGV[2]) == 0 then return fail('ERR_GROUP_EXISTS') end
redis.call('PERSIST', P .. 'x:' .. ARGV[2])
redis.call('PERSIST', P .. 'n:' .. ARGV[2])
return 1`,

  /** ARGV: P, group, historyMs */
  deleteGroup: `
local g = ARGV[2]
if redis.call('SISMEMBER', P .. 'groups', g) == 0 then return fail('ERR_GROUP_NOT_FOUND') end
reapGroup(g, nowms())
if redis.call('HLEN', P .. 'g:' .. g) > 0 then return fail('ERR_GROUP_NOT_EMPTY') end
redis.call('SREM', P .. 'groups', g)
-- The history outlives the group a while, so a watcher of a re-created group carries on without a gap.
redis.call('PEXPIRE', P .. 'x:' .. g, ARGV[3])
redis.call('PEXPIRE', P .. 'n:' .. g, ARGV[3])
return 1`,

  /** ARGV: P */
  listGroups: `return redis.call('SMEMBERS', P .. 'groups')`,

  /** ARGV: P, group, member, sid, capabilities JSON, create (1|0) */
  joinGroup: `
local g, m, sid = ARGV[2], ARGV[3], ARGV[4]
if not alive(sid) then return fail('ERR_SESSION_LOST') end
if redis.call('SISMEMBER', P .. 'groups', g) == 0 then
  if ARGV[6] ~= '1' then return fail('ERR_GROUP_NOT_FOUND') end
  redis.call('SADD', P .. 'groups', g)
  redis.call('PERSIST', P .. 'x:' .. g)
  redis.call('PERSIST', P .. 'n:' .. g)
end
local gk = P .. 'g:' .. g
local v = redis.call('HGET', gk, m)
if v then
  local owner = ownerOf(v)
  if alive(owner) then return fail('ERR_MEMBER_EXISTS') end
  reapSession(owner, nowms())
end
redis.call('HSET', gk, m, sid .. ' ' .. ARGV[5])
redis.call('HSET', P .. 'sm:' .. sid, g, m)
event(g, 'j', m, ARGV[5])
return 1`,

  /** ARGV: P, group, member */
  leaveGroup: `
local g, m = ARGV[2], ARGV[3]
if redis.call('SISMEMBER', P .. 'groups', g) == 0 then return fail('ERR_GROUP_NOT_FOUND') end
local gk = P .. 'g:' .. g
local v = redis.call('HGET', gk, m)
if not v then return fail('ERR_MEMBER_NOT_JOINED') end
redis.call('HDEL', gk, m)
redis.call('HDEL', P .. 'sm:' .. ownerOf(v), g)
event(g, 'l', m, '')
return 1`,

  /** ARGV: P, group, member, capabilities JSON */
  updateMember: `
local g, m = ARGV[2], ARGV[3]
if redis.call('SISMEMBER', P .. 'groups', g) == 0 then return fail('ERR_GROUP_NOT_FOUND') end
local gk = P .. 'g:' .. g
local v = redis.call('HGET', gk, m)
if not v then return fail('ERR_MEMBER_NOT_JOINED') end
redis.call('HSET', gk, m, ownerOf(v) .. ' ' .. ARGV[4])
event(g, 'u', m, ARGV[4])
return 1`,

  /** ARGV: P, group. {exists, {member, value, ...}, last stream id, sequence}, all read at one instant. */
  getMembers: `
local g = ARGV[2]
local exists = redis.call('SISMEMBER', P .. 'groups', g)
if exists == 1 then reapGroup(g, nowms()) end
local members = redis.call('HGETALL', P .. 'g:' .. g)
local last = redis.call('XREVRANGE', P .. 'x:' .. g, '+', '-', 'COUNT', 1)
local id = '0-0'
if last[1] then id = last[1][1] end
local n = redis.call('GET', P .. 'n:' .. g) or '0'
return {exists, members, id, n}`,

  /**
   * ARGV: P, lk, sid, member, mode ('try' | 'wait'), waiter entry ttl ms, nonce of this call.
   * {1, token} when held by sid; {0, ms until the holder's session would expire (-1: unknown)} otherwise.
   */
  acquire: `
local lk, sid, member, mode, nonce = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[7]
if not alive(sid) then return fail('ERR_SESSION_LOST') end
-- Dead holders go and live waiters that may hold are served first: we never barge ahead of them.
settle(lk, nil, nil)
local l = P .. 'l:' .. lk
local h = redis.call('HMGET', l, 's', 'm', 't', 'w')
if h[1] == sid then
  dequeue(lk, sid)
  -- Granted to this very wait (the grant crossed this call): the same token.
  if h[4] == nonce then return {1, h[3]} end
  -- Held by an earlier acquisition of this session (a retry whose reply was lost, or a release still on its way):
  -- a fresh token, so that late release cannot free the lock.
  return {1, grant(lk, sid, member, nonce, h[3])}
end
-- Nobody holds it (no shared holder either) and nobody live waits: ours.
if not h[1] and redis.call('EXISTS', l) == 0 and not prune(lk, nil) then return {1, grant(lk, sid, member, nonce)} end
if mode == 'wait' then
  local now = nowms()
  enqueue(lk, sid, now + tonumber(ARGV[6]), nonce, now)
end
return {0, holderTtl(lk)}`,

  /**
   * ARGV: P, lk, rid (`<sid>/<slot>`), member, mode ('try' | 'wait'), waiter entry ttl ms, nonce of this call, limit
   * (a semaphore's; 0 for a shared hold of a lock). As acquire, for a shared hold or a permit; {2, limit} when the
   * semaphore is in use with another limit (nothing changed).
   */
  acquireShared: `
local lk, rid, member, mode, nonce, limit = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[7], tonumber(ARGV[8])
if not alive(sidOf(rid)) then return fail('ERR_SESSION_LOST') end
settle(lk, nil, limit)
local l = P .. 'l:' .. lk
local h = redis.call('HMGET', l, 's', 'k', rid)
if h[2] and tonumber(h[2]) ~= limit then return {2, tonumber(h[2])} end
if h[3] then
  dequeue(lk, rid)
  local token, held = parseHold(h[3])
  if held == nonce then return {1, token} end
  return {1, grantShared(lk, rid, member, nonce, token, limit)}
end
-- No exclusive holder, nobody live waits, and room under the limit: ours at once.
if not h[1] and not prune(lk, nil) then
  local n = redis.call('HLEN', l)
  if h[2] then n = n - 1 end
  if limit == 0 or n < limit then return {1, grantShared(lk, rid, member, nonce, nil, limit)} end
end
if mode == 'wait' then
  local now = nowms()
  enqueue(lk, rid, now + tonumber(ARGV[6]), nonce, now)
end
return {0, holderTtl(lk)}`,

  /**
   * ARGV: P, lk, rid. Everything the request still has in the line after an acquisition the core gave up on: its
   * queue entry, and its hold if it was granted meanwhile (the line then served as a release does).
   */
  cancel: `
local lk, rid = ARGV[2], ARGV[3]
dequeue(lk, rid)
local l = P .. 'l:' .. lk
if isShared(rid) then
  if redis.call('HGET', l, rid) then release(lk, rid, nil) return 1 end
elseif redis.call('HGET', l, 's') == rid then
  free(lk, rid, nil)
  return 1
end
-- A waiter left: those behind it may hold now (shared ones behind an exclusive one).
promote(lk, nil, nil, nil, false)
return 1`,

  /**
   * ARGV: P, lk, rid, nonce. One aborted wait undoes only its own traces: the queue entry and a grant made to that very
   * nonce, never a hold the request has from another acquisition.
   */
  abandon: `
local lk, rid, nonce = ARGV[2], ARGV[3], ARGV[4]
if redis.call('HGET', P .. 'qn:' .. lk, rid) == nonce then dequeue(lk, rid) end
local l = P .. 'l:' .. lk
if isShared(rid) then
  local v = redis.call('HGET', l, rid)
  if v and select(2, parseHold(v)) == nonce then release(lk, rid, nil) return 1 end
else
  local h = redis.call('HMGET', l, 's', 'w')
  if h[1] == rid and h[2] == nonce then free(lk, rid, nil) return 1 end
end
promote(lk, nil, nil, nil, false)
return 1`,

  /**
   * ARGV: P, lk, rid, token. With ?replicas=N, before a grant is reported: 1 when the request holds the lock with that
   * token, after a write of this connection's own (a WAIT covers only its connection's writes, and the stream a
   * replica applies is in order, so covering this write covers the grant, whichever connection made it); else 0.
   */
  confirm: `
local lk, rid, token = ARGV[2], ARGV[3], ARGV[4]
local l = P .. 'l:' .. lk
local held
if isShared(rid) then
  local v = redis.call('HGET', l, rid)
  held = v and parseHold(v) == token
else
  local h = redis.call('HMGET', l, 's', 't')
  held = h[1] == rid and h[2] == token
end
if not held then return 0 end
redis.call('SET', P .. 'r', token, 'PX', 60000)
return 1`,

  /** ARGV: P, lk, sid, token */
  unlock: `
local lk, sid = ARGV[2], ARGV[3]
local h = redis.call('HMGET', P .. 'l:' .. lk, 's', 't')
if h[1] == sid and h[2] == ARGV[4] then free(lk, sid, nil) return 1 end
return 0`,

  /** ARGV: P, lk, rid, token: a shared hold or a permit. */
  unlockShared: `
local lk, rid = ARGV[2], ARGV[3]
local v = redis.call('HGET', P .. 'l:' .. lk, rid)
if v and parseHold(v) == ARGV[4] then release(lk, rid, nil) return 1 end
return 0`,

  /**
   * ARGV: P, then lk... Read-only: for each, {lk, the semaphore's limit ('' for a lock), how many live waiters queue,
   * {member, token, shared ('1' | '0')...} of its live holders, the first live waiter's member ('' when none) and ms
   * it has waited (-1 when its entry has no time: made by an older release)}.
   */
  locks: `
local out = {}
local now = nowms()
for i = 2, #ARGV do
  local lk = ARGV[i]
  local all = redis.call('HGETALL', P .. 'l:' .. lk)
  local fields = {}
  for j = 1, #all, 2 do fields[all[j]] = all[j + 1] end
  local holders = {}
  if fields.s then
    if alive(fields.s) then holders = {fields.m, fields.t, '0'} end
  else
    for rid, v in pairs(fields) do
      if rid ~= 'k' and alive(sidOf(rid)) then
        local token, _, member = parseHold(v)
        holders[#holders + 1] = member
        holders[#holders + 1] = token
        holders[#holders + 1] = '1'
      end
    end
  end
  local waiting = 0
  for _, rid in ipairs(redis.call('ZRANGEBYSCORE', P .. 'qt:' .. lk, now, '+inf')) do
    if alive(sidOf(rid)) then waiting = waiting + 1 end
  end
  local first, waited = '', -1
  if waiting > 0 then
    local qt = P .. 'qt:' .. lk
    for _, rid in ipairs(redis.call('LRANGE', P .. 'q:' .. lk, 0, -1)) do
      local exp = redis.call('ZSCORE', qt, rid)
      local member = redis.call('GET', P .. 's:' .. sidOf(rid))
      if exp and tonumber(exp) >= now and member then
        first = member
        local since = redis.call('HGET', P .. 'qs:' .. lk, rid)
        if since then waited = now - tonumber(since) end
        break
      end
    end
  end
  out[#out + 1] = {lk, fields.k or '', waiting, holders, first, waited}
end
return out`,

  /** ARGV: P, lk. {member, token, shared ('1' | '0')...} of every holder, in no order; dead ones are removed first. */
  holders: `
local lk = ARGV[2]
settle(lk, nil, nil)
local all = redis.call('HGETALL', P .. 'l:' .. lk)
local fields = {}
for i = 1, #all, 2 do fields[all[i]] = all[i + 1] end
if fields.s then return {fields.m, fields.t, '0'} end
local out = {}
for rid, v in pairs(fields) do
  if rid ~= 'k' then
    local token, _, member = parseHold(v)
    out[#out + 1] = member
    out[#out + 1] = token
    out[#out + 1] = '1'
  end
end
return out`,
} as const;

export type ScriptName = keyof typeof BODIES;

export interface Script {
  readonly name: ScriptName;
  readonly source: string;
  readonly sha: string;
}

function build(name: ScriptName): Script {
  // Scripts must not depend on the reply of TIME being replicated verbatim (Redis 6 needs effects replication).
  const source = `if redis.replicate_commands then pcall(redis.replicate_commands) end\n${FAST[name] ?? ''}\n${PRELUDE}\n${BODIES[name]}`;
  return { name, source, sha: createHash('sha1').update(source).digest('hex') };
}

export const SCRIPTS: { readonly [K in ScriptName]: Script } = Object.fromEntries(
  (Object.keys(BODIES) as ScriptName[]).map((name) => [name, build(name)]),
) as { [K in ScriptName]: Script };

/** Every command the scripts above call, each tried once by PROBE. */
export const SCRIPT_COMMANDS = [
  'TIME',
  'SET',
  'INCR',
  'GET',
  'EXISTS',
  'PTTL',
  'PEXPIRE',
  'PERSIST',
  'HSET',
  'HGET',
  'HMGET',
  'HGETALL',
  'HLEN',
  'HDEL',
  'SADD',
  'SISMEMBER',
  'SMEMBERS',
  'SREM',
  'ZADD',
  'ZSCORE',
  'ZRANGEBYSCORE',
  'ZREM',
  'RPUSH',
  'LINDEX',
  'LRANGE',
  'LREM',
  'LPOP',
  'XADD',
  'XREVRANGE',
  'PUBLISH',
  'DEL',
] as const;

/**
 * Run once at connect, with EVAL and then EVALSHA: calls every command the scripts use, on probe keys under the
 * prefix that it deletes again within the same atomic step (so it works on Redis 6 as on 7, where ACL DRYRUN and
 * redis.acl_check_cmd would need 7), and returns `<COMMAND>\t<error>` for each call the server refused. ARGV: P.
 */
export const PROBE: { readonly source: string; readonly sha: string } = (() => {
  const source = `if redis.replicate_commands then pcall(redis.replicate_commands) end
local P = ARGV[1]
local s, h, st, z, l, x = P .. 'probe:s', P .. 'probe:h', P .. 'probe:set', P .. 'probe:z', P .. 'probe:l', P .. 'probe:x'
local out = {}
local function try(name, ...)
  local r = redis.pcall(name, ...)
  if type(r) == 'table' and r.err then table.insert(out, name .. '\\t' .. r.err) end
end
try('TIME')
try('SET', s, '1', 'PX', '60000')
try('INCR', s)
try('GET', s)
try('EXISTS', s)
try('PTTL', s)
try('PEXPIRE', s, '60000')
try('PERSIST', s)
try('HSET', h, 'f', 'v')
try('HGET', h, 'f')
try('HMGET', h, 'f')
try('HGETALL', h)
try('HLEN', h)
try('HDEL', h, 'f')
try('SADD', st, 'm')
try('SISMEMBER', st, 'm')
try('SMEMBERS', st)
try('SREM', st, 'm')
try('ZADD', z, '1', 'm')
try('ZSCORE', z, 'm')
try('ZRANGEBYSCORE', z, '-inf', '+inf', 'LIMIT', '0', '1')
try('ZREM', z, 'm')
try('RPUSH', l, 'm')
try('LINDEX', l, '0')
try('LRANGE', l, '0', '-1')
try('LREM', l, '0', 'm')
try('LPOP', l)
try('XADD', x, 'MAXLEN', '~', '10', '*', 'n', '1')
try('XREVRANGE', x, '+', '-', 'COUNT', '1')
try('PUBLISH', P .. 'c:probe', '')
try('DEL', s, h, st, z, l, x)
return out`;
  return { source, sha: createHash('sha1').update(source).digest('hex') };
})();
