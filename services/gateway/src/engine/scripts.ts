// Lua scripts run atomically by Redis. Each touches only keys of one hash tag (one Cluster slot), except DM, which
// on a single Redis or behind Sentinel writes both users' inboxes in one call (under Cluster it gets one user's keys).

/**
 * After a failover the new primary may lack the last writes of the old one, which subscribers may already
 * have received live. The first append to a stream after its primary changed skips this many offsets, so a
 * reused offset can never hide a new message behind one a subscriber saw: readers get an explicit gap instead.
 */
export const FAILOVER_OFFSET_JUMP = 1_000_000;

/**
 * The append as a Lua function, shared by APPEND and DM: append(meta, history, dedup, o) reads its 14 arguments
 * from ARGV[o + 1] .. ARGV[o + 14], in APPEND's order: head, tail, ts, skip, maxlen, ttl_s, dedup_ttl_s,
 * new_epoch, channel, use_dedup ('1'|'0'), publish command, id, failover_jump ('1'|'0'), mid.
 * The stored frame is head .. offset .. mid .. epoch .. tail, pieces built by protocol/frames.ts storedEventParts
 * (the script builds no frame itself).
 * With failover_jump, the meta hash remembers the replication id (r) of the primary that last appended; when
 * this primary's previous replication id (master_replid2) is that one, it is a replica promoted since then and
 * the offset jumps by FAILOVER_OFFSET_JUMP first. A slot migrated to another primary (resharding) moves its keys
 * whole with MIGRATE, loses nothing, and does not jump.
 * Returns {1, offset, epoch} when stored and published, {0, "offset|epoch|id|ts"} for a duplicate.
 */
const APPEND_FUNCTION = `
local replication
local function append(meta, history, dedup, o)
  if ARGV[o + 10] == '1' then
    local prev = redis.call('GET', dedup)
    if prev then return {0, prev} end
  end
  local epoch = redis.call('HGET', meta, 'e')
  if not epoch then
    epoch = ARGV[o + 8]
    redis.call('DEL', history)
    redis.call('HSET', meta, 'e', epoch, 'o', 0)
  end
  if ARGV[o + 13] == '1' then
    replication = replication or redis.call('INFO', 'replication')
    local rid = string.match(replication, 'master_replid:(%x+)')
    local was = redis.call('HGET', meta, 'r')
    if was ~= rid then
      if was and was == string.match(replication, 'master_replid2:(%x+)') then
        redis.call('HINCRBY', meta, 'o', ${FAILOVER_OFFSET_JUMP})
      end
      redis.call('HSET', meta, 'r', rid)
    end
  end
  local offset = redis.call('HINCRBY', meta, 'o', 1)
  local frame = ARGV[o + 1] .. offset .. ARGV[o + 14] .. epoch .. ARGV[o + 2]
  redis.call('XADD', history, 'MAXLEN', ARGV[o + 5], offset .. '-0', 'f', frame)
  redis.call('EXPIRE', history, ARGV[o + 6])
  redis.call('EXPIRE', meta, ARGV[o + 6])
  if ARGV[o + 10] == '1' then
    redis.call('SET', dedup, offset .. '|' .. epoch .. '|' .. ARGV[o + 12] .. '|' .. ARGV[o + 3], 'EX', ARGV[o + 7])
  end
  redis.call(ARGV[o + 11], ARGV[o + 9], 'e|' .. offset .. '|' .. epoch .. '|' .. ARGV[o + 3] .. '|' .. ARGV[o + 4] .. '|' .. frame)
  return {1, offset, epoch}
end
`;

/** Number of ARGV entries one append takes (see APPEND_FUNCTION). */
export const APPEND_ARGS = 14;

/** KEYS: meta, history, dedup.  ARGV: the 14 arguments of APPEND_FUNCTION.  Returns what it returns. */
export const APPEND = `${APPEND_FUNCTION}
return append(KEYS[1], KEYS[2], KEYS[3], 0)
`;

/** rate(counter, limit per second): counts one message; returns 0, or the ms until the window resets. */
const RATE_FUNCTION = `
local function rate(key, limit)
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('PEXPIRE', key, 1000) end
  if n > tonumber(limit) then
    local ttl = redis.call('PTTL', key)
    if ttl < 1 then ttl = 1 end
    return ttl
  end
  return 0
end
`;

/** KEYS: counter.  ARGV: limit per second.  Returns 0 or the ms until the window resets. */
export const RATE = `${RATE_FUNCTION}
return rate(KEYS[1], ARGV[1])
`;

/**
 * A room message counted against its sender's rate, then appended, in one call (single Redis and Sentinel; under
 * Cluster the counter is in the user's slot and RATE runs first). KEYS: meta, history, dedup, the user's counter.
 * ARGV: limit per second, then APPEND_FUNCTION's 14 arguments. Over the rate it stores nothing and returns
 * {-1, ms to wait}; otherwise what append returns.
 */
export const RATED_APPEND = `${APPEND_FUNCTION}${RATE_FUNCTION}
local wait = rate(KEYS[4], ARGV[1])
if wait > 0 then return {-1, wait} end
return append(KEYS[1], KEYS[2], KEYS[3], 1)
`;

/**
 * A DM in one call: KEYS: the recipient's meta, history, dedup and connections zset; then, when ARGV[2] is '1',
 * the sender's meta, history and dedup; then, when ARGV[1] is not '0', the sender's rate counter. Every key of a
 * call must share one slot under Redis Cluster, so there it is called with the recipient's keys alone.
 * ARGV: rate limit per second ('0' = none), sender copy ('1'|'0'), the recipient copy's 14 append arguments, then
 * (with a sender copy) the sender copy's 14.
 * In order: counts the message against the rate (as RATE: over it, stores nothing and returns {-1, ms to wait});
 * appends the recipient's copy; when that was stored (not a duplicate), appends the sender's copy, which carries
 * the same id and ts; reads the recipient's connections.
 * Returns {1, offset, epoch, connections} or {0, "offset|epoch|id|ts", '', connections} for a duplicate recipient
 * copy: the sender's copy is then not written here (its dedup key is named by the first id, which the caller did
 * not know), and the caller writes it with the first id and ts.
 * connections are the zset's members, "<node>|<connection>".
 */
export const DM = `${APPEND_FUNCTION}${RATE_FUNCTION}
local sender = ARGV[2] == '1'
if ARGV[1] ~= '0' then
  local wait = rate(KEYS[sender and 8 or 5], ARGV[1])
  if wait > 0 then return {-1, wait} end
end
local r = append(KEYS[1], KEYS[2], KEYS[3], 2)
if r[1] == 1 and sender then append(KEYS[5], KEYS[6], KEYS[7], 2 + ${APPEND_ARGS}) end
local conns = redis.call('ZRANGE', KEYS[4], 0, -1)
if r[1] == 1 then return {1, r[2], r[3], conns} end
return {0, r[2], '', conns}
`;

/**
 * KEYS: meta, history.  ARGV: mode ('after'|'before'), after_or_before ('' = newest), limit.
 * Returns {epoch, top, entries}. Writes nothing: a stream with no epoch (never written, or expired) answers
 * {'', 0, {}}; its epoch is created by its first append.
 */
export const READ = `
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then return {'', '0', {}} end
local top = redis.call('HGET', KEYS[1], 'o') or '0'
local entries
if ARGV[1] == 'after' then
  local after = tonumber(ARGV[2])
  if after >= tonumber(top) then
    entries = {}
  else
    entries = redis.call('XRANGE', KEYS[2], string.format('%d-0', after + 1), '+', 'COUNT', ARGV[3])
  end
else
  local hi = '+'
  if ARGV[2] ~= '' then hi = '(' .. ARGV[2] .. '-0' end
  entries = redis.call('XREVRANGE', KEYS[2], hi, '-', 'COUNT', ARGV[3])
end
return {epoch, top, entries}
`;

/**
 * KEYS: presence zset, presence-users hash.  ARGV: mode ('add'|'remove'|'list'), bus payload, user, node, now_ms,
 * channel, publish command.
 * The bus payload is the one change this call may announce (a join for 'add', a leave for 'remove'), built by the
 * caller with protocol/frames.ts presenceEvent; the script publishes it as it is.
 * The zset holds "<user>|<node>" (score = when it was added); the hash counts, per user, the nodes that have the
 * user in the room. A user's first node publishes a join event, its last a leave event. Entries of a node that
 * died are removed by the node sweep (RedisEngine.sweep), which calls 'remove' with the dead node's id.
 * Returns {transition, users}: transition is 'occupied' when this add made the room go from no user to one,
 * 'vacated' when this remove left it without users, else ''; users are the users present ('add' and 'list').
 */
export const PRESENCE = `
local payload, user, node, channel, pub = ARGV[2], ARGV[3], ARGV[4], ARGV[6], ARGV[7]
local transition = ''
if ARGV[1] == 'add' then
  if redis.call('ZADD', KEYS[1], ARGV[5], user .. '|' .. node) == 1 then
    if redis.call('HINCRBY', KEYS[2], user, 1) == 1 then
      redis.call(pub, channel, payload)
      if redis.call('HLEN', KEYS[2]) == 1 then transition = 'occupied' end
    end
  end
elseif ARGV[1] == 'remove' then
  if redis.call('ZREM', KEYS[1], user .. '|' .. node) == 1 then
    if redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
      redis.call('HDEL', KEYS[2], user)
      redis.call(pub, channel, payload)
      if redis.call('HLEN', KEYS[2]) == 0 then transition = 'vacated' end
    end
  end
end
if ARGV[1] == 'add' or ARGV[1] == 'list' then return {transition, redis.call('HKEYS', KEYS[2])} end
return {transition, {}}
`;

/**
 * KEYS: connections zset, sessions hash.  ARGV: mode ('add'|'remove'|'reserve'), node, conn, now_ms,
 * session_json, and for 'reserve': limit, dead nodes (space-separated).
 * The zset holds "<node>|<connection>"; the hash connection -> session JSON. Returns {size, changed}: the zset's
 * size after the call, and 1 when this call added or removed the member ('reserve' adds like 'add' only while
 * fewer than `limit` entries of live nodes are held, else returns {-1, 0}). changed = 1 with size 1 after an add
 * is the user's first connection in the cluster; changed = 1 with size 0 after a remove, its last.
 */
export const CONNECTIONS = `
local member = ARGV[2] .. '|' .. ARGV[3]
local changed = 0
if ARGV[1] == 'reserve' then
  local dead = {}
  for n in string.gmatch(ARGV[7] or '', '%S+') do dead[n] = true end
  local live = 0
  for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if not dead[string.match(m, '^(.*)|')] then live = live + 1 end
  end
  if live >= tonumber(ARGV[6]) then return {-1, 0} end
  changed = redis.call('ZADD', KEYS[1], ARGV[4], member)
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[5])
elseif ARGV[1] == 'add' then
  changed = redis.call('ZADD', KEYS[1], ARGV[4], member)
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[5])
elseif ARGV[1] == 'remove' then
  changed = redis.call('ZREM', KEYS[1], member)
  redis.call('HDEL', KEYS[2], ARGV[3])
end
return {redis.call('ZCARD', KEYS[1]), changed}
`;

/**
 * KEYS: revoked expiry zset, revoked users hash.  ARGV: member ('j:<jti>' | 'u:<user>'), expires_at_ms,
 * issued_before_s ('' for a jti), now_ms, channel, publish command, payload.
 * Merges the entry (the later expiry and the later issued_before win), forgets up to 1000 expired entries, keeps
 * both keys only as long as their last entry, and publishes the payload to every node. Returns 1.
 */
export const REVOKE = `
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[4], 'LIMIT', 0, 1000)
if #old > 0 then
  redis.call('ZREM', KEYS[1], unpack(old))
  redis.call('HDEL', KEYS[2], unpack(old))
end
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not cur or tonumber(cur) < tonumber(ARGV[2]) then redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1]) end
if ARGV[3] ~= '' then
  local prev = redis.call('HGET', KEYS[2], ARGV[1])
  if not prev or tonumber(prev) < tonumber(ARGV[3]) then redis.call('HSET', KEYS[2], ARGV[1], ARGV[3]) end
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIREAT', KEYS[2], last[2]) end
redis.call(ARGV[6], ARGV[5], ARGV[7])
return 1
`;
