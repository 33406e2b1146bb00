package dedupe

// The gates' scripts (docs/ordering.md, "The scripts"). KEYS[1] is the gate,
// KEYS[2] its queue; Park also takes KEYS[3], the follower's record. Each
// is safe to run twice with the same arguments. Gate fields: h head, s state
// (p parked, r released, a running, x held), t gated at (ms, Redis clock),
// rg, rt, rp, rk the group, topic, partition and key the gate is for,
// b the head whose end released this one, m and mf the released head's
// queue element and fingerprint, u the held head an unblock released, n
// followers queued, bytes their elements' length, q:<identity> each queued
// follower's fingerprint.

// luaOrderEnd is the end of a head, shared by the scripts that end one:
// end(gate, queue, head) returns the released follower's queue element, or
// false when nothing was released, and then true when the gate was deleted
// (its entry in the index of gates is the caller's to remove).
const luaOrderEnd = `
local function gateEnd(gate, queue, head, by)
  local g = redis.call('HMGET', gate, 'h', 's', 'b', 'm')
  if not g[1] then return false end
  if g[1] ~= head then
    if g[3] == head and g[2] == 'r' then return g[4] end
    return false
  end
  -- Read and parse before popping: a script is not rolled back.
  local nxt = redis.call('LINDEX', queue, 0)
  if not nxt then
    redis.call('DEL', gate, queue)
    return false, true
  end
  local id = string.sub(nxt, 1, 22)
  local nl = string.find(nxt, '\n', 1, true)
  if not nl or nl < 24 then return redis.error_reply('queued follower is not fleet\'s') end
  local fp = string.sub(nxt, 24, nl - 1)
  redis.call('LPOP', queue)
  redis.call('HDEL', gate, 'q:' .. id)
  redis.call('HINCRBY', gate, 'n', -1)
  redis.call('HINCRBY', gate, 'bytes', -#nxt)
  redis.call('HDEL', gate, 'u')
  redis.call('HSET', gate, 'h', id, 's', 'r', 'b', by or head, 'm', nxt, 'mf', fp)
  return nxt
end
`

// luaOrderHold is the hold of a head, shared by the scripts that hold one:
// hold(gate, head, state, group, topic, partition, key) makes head the
// head of the gate in state (p or x), creating the gate with what it is
// for; it returns false, and changes nothing, when the gate names another
// head.
const luaOrderHold = `
local function gateHold(gate, head, state, group, topic, partition, key)
  local h = redis.call('HGET', gate, 'h')
  if h and h ~= head then return false end
  if not h then
    local t = redis.call('TIME')
    redis.call('HSET', gate, 't', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), 'n', 0, 'bytes', 0,
      'rg', group, 'rt', topic, 'rp', partition, 'rk', key)
  end
  redis.call('HSET', gate, 'h', head, 's', state)
  redis.call('HDEL', gate, 'b', 'm', 'mf', 'u')
  return true
end
`

// holdScript: ARGV head, '1' when held, then the group, topic, partition
// and key the gate is for (kept for listing). Replies 1, or 0 when the gate
// names another head.
const holdScript = luaOrderHold + `
local state = 'p'
if ARGV[2] == '1' then state = 'x' end
if gateHold(KEYS[1], ARGV[1], state, ARGV[3], ARGV[4], ARGV[5], ARGV[6]) then return 1 end
return 0
`

// releaseGateScript is the release script (a run that failed; KEYS[1] the
// record, ARGV owner, fence, retention ms) followed, only when the release
// succeeds, by a step on the gate (KEYS[2], its queue KEYS[3]): ARGV[4] 'p'
// hold the event as the parked head, 'x' as the held head (then ARGV[5..8]
// group, topic, partition, key), 'e' end it if it is the head. Replies 1
// released | 0 lost | -1 invalid | {1, element} released, and the end
// released that follower | 2 released, and the end deleted the gate | 3
// released, and the hold refused: the gate names another head.
//
// Safe to repeat: a record released at this fence is released again
// without a write, and the step is redone; nothing claimed the record
// since (a claim moves the fence), so its tier copy has not run.
const releaseGateScript = luaMS + luaOrderEnd + luaOrderHold + `
if not ms(ARGV[3]) then return -1 end
local r = redis.call('HMGET', KEYS[1], 's', 'o', 'f')
if not (r[1] == 'r' and r[3] == ARGV[2]) then
  if r[1] ~= 'p' or r[2] ~= ARGV[1] or r[3] ~= ARGV[2] then return 0 end
  redis.call('HSET', KEYS[1], 's', 'r', 'lo', ARGV[1])
  redis.call('HDEL', KEYS[1], 'o', 'l')
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
local id = string.sub(KEYS[1], -22)
if ARGV[4] == 'e' then
  local f, gone = gateEnd(KEYS[2], KEYS[3], id)
  if f then return {1, f} end
  if gone then return 2 end
elseif ARGV[4] == 'p' or ARGV[4] == 'x' then
  if not gateHold(KEYS[2], id, ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]) then return 3 end
end
return 1
`

// Park replies.
const (
	replyParkParked   = 1
	replyParkFree     = 2
	replyParkHead     = 3
	replyParkDup      = 4
	replyParkConflict = 5
	replyParkOverflow = 6
	replyParkBefore   = 7
)

// parkScript: ARGV identity, fingerprint, queue element, most followers (0:
// no bound), retention and slice of packed records (ms).
const parkScript = luaClock + luaPacked + `
local rec = redis.call('HMGET', KEYS[3], 's', 'p')
if not rec[1] then
  local slice = packedSlice(ARGV[6])
  local base, id = packedBase(KEYS[3], slice)
  if base then
    local v, _, err = packedFind(base, id, clock(), tonumber(ARGV[5]), slice)
    if err then return redis.error_reply(err) end
    if v then
      local _, _, fp = packedFields(v)
      rec = {'d', fp}
    end
  end
end
-- The first payload stands for the life of the record, whatever its state.
if rec[2] and rec[2] ~= ARGV[2] then return 5 end
if rec[1] == 'd' then return 4 end
local g = redis.call('HMGET', KEYS[1], 'h', 'n', 'q:' .. ARGV[1], 's', 'mf')
if not g[1] then return 2 end
if g[1] == ARGV[1] then
  -- Released and not started: the released copy holds its place.
  if g[4] == 'r' then
    if g[5] ~= ARGV[2] then return 5 end
    return 7
  end
  return 3
end
if g[3] then
  if g[3] ~= ARGV[2] then return 5 end
  return 7
end
local most = tonumber(ARGV[4])
if most > 0 and (tonumber(g[2]) or 0) >= most then return 6 end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], 'q:' .. ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HINCRBY', KEYS[1], 'bytes', #ARGV[3])
return 1
`

// endScript: ARGV head, and (Skip) the head to remember as the one whose
// end released the next. Replies the released element, 0 when the gate was
// deleted, or false.
const endScript = luaOrderEnd + `
local f, gone = gateEnd(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
if f then return f end
if gone then return 0 end
return false
`

// unblockScript replies the released element, 2 when nothing was queued
// (the gate was deleted), or 0 when the gate is not held (nor being
// unblocked).
const unblockScript = luaOrderEnd + `
local g = redis.call('HMGET', KEYS[1], 'h', 's', 'b', 'm')
if not g[1] then return 0 end
if g[2] == 'x' then
  local r, gone = gateEnd(KEYS[1], KEYS[2], g[1])
  if r then redis.call('HSET', KEYS[1], 'u', g[1]) end
  if gone then return 2 end
  return r
end
if g[2] == 'r' and g[3] and redis.call('HGET', KEYS[1], 'u') == g[3] then return g[4] end
return 0
`
