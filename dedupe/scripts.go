package dedupe

// The Lua scripts of the protocol (Lua 5.1; they also run under miniredis's
// gopher-lua, the embedded Redis of fleet dev). Each touches the record and,
// for completion, the effect keys: all of one slot when the effect keys carry
// the record's hash tag.
//
// Each script is safe to run twice with the same arguments, because go-redis
// resends a command whose reply timed out (a timeout means "outcome
// unknown"), and a caller retries a batch that failed as a whole:
//
//   - claim: the owner token is unique per claim attempt, so a re-sent claim
//     finds its own token on the record and answers Acquired with the same
//     fence and attempts, without counting another attempt;
//   - extend: moving the deadline again is harmless;
//   - complete: a re-sent completion finds the record done at its own fence
//     and answers ok without applying the effects again;
//   - release: a re-sent release finds the record released at its own fence
//     and answers ok.
//
// A Redis script is not rolled back when a command inside it fails, so a
// script checks everything that could make a write fail before its first
// write, and answers {-1, reason} (invalid: nothing written) instead. Under
// maxmemory, Redis refuses a script's first write, never a later one, so an
// OOM cannot split a script either.
//
// Times come from the Redis clock (TIME), never from the worker's.
//
// Record fields (see doc.go): s state (p processing, d done, r released),
// f fence, o owner, l lease deadline in ms, a attempts, p fingerprint,
// r result.

// Reply codes shared by the scripts.
const (
	replyInvalid  = -1
	replyLost     = 0
	replyOK       = 1
	replyAcquired = 1
	replyDup      = 2
	replyConflict = 3
	replyBusy     = 4
	replyParked   = 5
	replyError    = -2
)

// luaMS accepts a positive integer number of milliseconds as Go formats it.
const luaMS = `
local function ms(v) return type(v) == 'string' and #v <= 16 and string.match(v, '^[1-9]%d*$') ~= nil end
`

// luaClock is the Redis clock in milliseconds, read once per script call
// (TIME), when first needed.
const luaClock = `
local now
local function clock()
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now
end
`

// claimScript claims a batch: one script call for many records, so that the
// per-call cost of a script is paid once per batch. KEYS[3i-2] record i,
// KEYS[3i-1] its record in the previous layout (the record key again when
// there is none to consult), KEYS[3i] its key's gate (docs/ordering.md; the
// record key again when the event cannot be gated); ARGV[1] lease ms,
// ARGV[2] retention ms, ARGV[3] '1' when a duplicate must write (see
// below), ARGV[4] the slice of packed records (packed.go: 'off', '0' or
// ms), then owner,
// fingerprint and previous fingerprint of each record (ARGV[3i+2],
// ARGV[3i+3], ARGV[3i+4]).
// Claims of one key in one batch run in order.
// Reply: one item per record, {1, fence, attempts, takenover, head}
// acquired, or the bare integer 1 for a new record (fence 1, first attempt,
// no gate) | {2, result, head} duplicate | {3} conflict | {4, ms left} busy
// | {5} parked | {-1, reason} invalid | {-2, error} the key holds something
// other than a record. head is 1 when the gate names this event as its head
// (or, for a duplicate, as the head whose end released the current one):
// its end is the caller's to run.
//
// A claim parked behind a gate that finds the record's lease expired fences
// it off (the fence grows, the record is released): its owner, a worker
// paused past its lease that claimed before the gate was made, cannot
// complete it. So the completion need not look at the gate.
//
// A claim sent again (its owner's) that finds a gate naming another event
// gives its claim back and answers parked: it acquired before the gate was
// made, and nothing has run under it (its answer was lost).
//
// A claim that would acquire first looks at the gate: a gate that names
// another event answers parked, and nothing is written, unless this event's
// end (its dead letter) released that head and it has not started: then
// the answer is a duplicate with head 1, so that the end is redone (a crash
// may have lost the released follower's write). A gate that names this
// event, released and not started, is marked running (a), after checking
// the payload is the one queued. When nothing is parked this costs one
// HMGET of a missing key.
//
// The fingerprint of the first claim stands for the life of the record: a
// claim with another one is a conflict, whatever the state.
//
// A claim that finds no record of its own looks for it packed (done, in
// its aggregate's buckets; packed.go) before anything else.
//
// A new record first honours the event's record of the previous layout, if
// there is one with the same payload: done is a duplicate, a live lease is
// busy; otherwise the new record continues its fence and attempt count and
// the previous record is deleted (its owner, if any, has lost it). See
// doc.go, "Upgrades".
//
// A duplicate answer lets the caller commit the event's offset. When the
// caller waits for replicas (WAIT counts the writes of its own connection),
// the record it found done may not have reached them yet, so with ARGV[3]
// '1' a duplicate answer writes (the state it already holds), and the WAIT
// that follows covers the completion too.
//
// Safe to repeat: the owner token identifies the call. A re-sent takeover
// answers TakenOver 0, since the record does not remember how it was taken.
// A copy that arrives after its owner let go (the record keeps the last
// owner that released it or was taken over, lo) answers busy and takes
// nothing.
const claimScript = luaMS + luaClock + luaPacked + `
local n = #KEYS / 3
if not ms(ARGV[1]) or not ms(ARGV[2]) or not (ARGV[4] == 'off' or ARGV[4] == '0' or ms(ARGV[4])) or #KEYS % 3 ~= 0 or
    #ARGV ~= 4 + 3 * n then
  return redis.error_reply('ERR fleet claim: malformed batch')
end
local lease, retention, touch, slice = tonumber(ARGV[1]), ARGV[2], ARGV[3] == '1', packedSlice(ARGV[4])
-- gateOf reads the gate's head, state, releasing head and queued
-- fingerprint; nil when the event cannot be gated (gate is its record) or
-- has no gate (one EXISTS: an integer reply, the cheapest probe).
local function gateOf(gate, key)
  if gate == key or redis.call('EXISTS', gate) == 0 then return nil end
  return redis.call('HMGET', gate, 'h', 's', 'b', 'mf')
end
-- duplicate answers a done record; write is its touch (a write, for
-- replicas: see below).
local function duplicate(key, result, gate, write)
  if touch then write() end
  local head = 0
  local g = gateOf(gate, key)
  if g and g[1] then
    local id = string.sub(key, -22)
    if g[1] == id or (g[3] == id and g[2] == 'r') then head = 1 end
  end
  return {2, result or '', head}
end
-- admit decides a claim that would acquire by the gate: a reply that
-- decides it (parked, conflict), else nil and whether the gate names it.
local function admit(gate, key, fp)
  local g = gateOf(gate, key)
  if not g or not g[1] then return nil, 0 end
  local id = string.sub(key, -22)
  if g[1] ~= id then
    -- A copy of the head whose end (its dead letter) released the current
    -- head, not started yet: the end is being redone.
    if g[3] == id and g[2] == 'r' then return {2, '', 1} end
    return {5}
  end
  if g[2] == 'r' then
    if g[4] ~= fp then return {3} end
    redis.call('HSET', gate, 's', 'a')
    redis.call('HDEL', gate, 'm', 'mf')
  end
  return nil, 1
end
-- leaseEnd is the deadline of this call's leases, formatted once: Redis
-- formats a number argument with %.17g, for each command.
local leaseEnd
local function deadline()
  if not leaseEnd then leaseEnd = string.format('%.0f', clock() + lease) end
  return leaseEnd
end
local function create(key, owner, fp, fence, attempts)
  redis.call('HSET', key, 's', 'p', 'f', fence, 'o', owner, 'l', deadline(), 'a', attempts, 'p', fp)
  redis.call('PEXPIRE', key, retention)
end
-- absent reports whether none of the keys that could decide a claim
-- exists but the current slice's bucket: the record, its record of the
-- previous layout, its gate and its buckets of the other slices. One
-- EXISTS tells most new events apart.
local probe = {}
local function absent(key, prev, gate, base)
  local k = 1
  probe[1] = key
  if prev ~= key then k = k + 1; probe[k] = prev end
  if gate ~= key then k = k + 1; probe[k] = gate end
  if base then
    slices(clock(), tonumber(retention), slice)
    for i = 1, #sliceOthers do k = k + 1; probe[k] = base .. sliceOthers[i] end
  end
  return redis.call('EXISTS', unpack(probe, 1, k)) == 0
end
-- packedDuplicate answers a claim that found its record packed: v in
-- bucket.
local function packedDuplicate(key, gate, fp, id, v, bucket)
  local _, _, pfp, result = packedFields(v)
  if pfp ~= fp then return {3} end
  return duplicate(key, result, gate, function() redis.call('HSET', bucket, id, v) end)
end
-- previous answers for a record of the previous layout: a reply when it
-- decides the claim, else whether there is one to continue, and its fence,
-- attempts and whether its lease had expired.
local function previous(prev, fp)
  local state = redis.pcall('HGET', prev, 's')
  if type(state) ~= 'string' then return nil, false end
  local r = redis.call('HMGET', prev, 'f', 'l', 'a', 'p', 'r')
  if r[4] ~= fp then return {3} end
  if state == 'd' then return duplicate(prev, r[5], prev, function() redis.call('HSET', prev, 's', 'd') end) end
  local took = 0
  if state == 'p' then
    local left = (tonumber(r[2]) or 0) - clock()
    if left > 0 then return {4, left} end
    took = 1
  elseif state ~= 'r' then
    return {-1, 'previous record in unknown state ' .. tostring(state)}
  end
  return nil, true, math.floor(tonumber(r[1]) or 0), math.floor(tonumber(r[3]) or 0), took
end
local function claim(key, prev, gate, owner, fp, prevfp)
  local base, id = packedBase(key, slice)
  -- Most claims are of new events, which one EXISTS tells apart.
  if absent(key, prev, gate, base) then
    if base then
      local bucket = base .. sliceNewest
      local v, err = packedGet(bucket, id)
      if err then return {-2, err} end
      if v then return packedDuplicate(key, gate, fp, id, v, bucket) end
    end
    create(key, owner, fp, '1', '1')
    return 1
  end
  local state = redis.pcall('HGET', key, 's')
  if type(state) == 'table' then return {-2, state.err} end
  if not state then
    if base then
      local v, bucket, err = packedFind(base, id, clock(), tonumber(retention), slice)
      if err then return {-2, err} end
      if v then return packedDuplicate(key, gate, fp, id, v, bucket) end
    end
    local found, f, a, took = false, 0, 0, 0
    if prev ~= key then
      local reply
      reply, found, f, a, took = previous(prev, prevfp)
      if reply then return reply end
    end
    local stop, head = admit(gate, key, fp)
    if stop then return stop end
    if found then
      create(key, owner, fp, f + 1, a + 1)
      redis.call('DEL', prev)
      return {1, f + 1, a + 1, took, head}
    end
    create(key, owner, fp, 1, 1)
    if head == 1 then return {1, 1, 1, 0, 1} end
    return 1
  end
  local r = redis.call('HMGET', key, 'f', 'o', 'l', 'a', 'p', 'r', 'lo')
  if r[5] ~= fp then return {3} end
  if state == 'd' then return duplicate(key, r[6], gate, function() redis.call('HSET', key, 's', 'd') end) end
  if state == 'p' and r[2] == owner then
    local head = 0
    local g = gateOf(gate, key)
    if g and g[1] then
      if g[1] ~= string.sub(key, -22) then
        -- The claim acquired before the gate was made, and its answer
        -- was lost: give it back (no attempt spent), and park.
        redis.call('HSET', key, 's', 'r', 'lo', owner)
        redis.call('HDEL', key, 'o', 'l')
        if (tonumber(r[4]) or 0) > 0 then redis.call('HINCRBY', key, 'a', -1) end
        return {5}
      end
      head = 1
    end
    return {1, tonumber(r[1]), tonumber(r[4]), 0, head}
  end
  -- A late copy of a claim whose owner has since let go (released, or was
  -- taken over): nobody waits for its answer, and it must take nothing.
  if r[7] == owner then return {4, 0} end
  local took = 0
  if state == 'p' then
    local left = (tonumber(r[3]) or 0) - clock()
    if left > 0 then return {4, left} end
    took = 1
  elseif state ~= 'r' then
    return {-1, 'record in unknown state ' .. tostring(state)}
  end
  if not string.match(r[1] or '', '^%d+$') or not string.match(r[4] or '', '^%d+$') then
    return {-1, 'record has a corrupt fence or attempt count'}
  end
  local stop, head = admit(gate, key, fp)
  if stop then
    if stop[1] == 5 and state == 'p' then
      -- Behind a gate, an expired lease is fenced off: its owner (a worker
      -- paused past it, which claimed before the gate) must not complete.
      redis.call('HINCRBY', key, 'f', 1)
      redis.call('HSET', key, 's', 'r', 'lo', r[2] or '')
      redis.call('HDEL', key, 'o', 'l')
    end
    return stop
  end
  local fence = redis.call('HINCRBY', key, 'f', 1)
  local attempts = redis.call('HINCRBY', key, 'a', 1)
  if state == 'p' then redis.call('HSET', key, 'lo', r[2] or '') end
  redis.call('HSET', key, 's', 'p', 'o', owner, 'l', deadline())
  redis.call('PEXPIRE', key, retention)
  return {1, fence, attempts, took, head}
end
local out = {}
for i = 1, n do
  out[i] = claim(KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i], ARGV[3 * i + 2], ARGV[3 * i + 3], ARGV[3 * i + 4])
end
return out
`

// extendScript: KEYS[1] record; ARGV owner, fence, lease ms, retention ms.
// Reply 1 extended | 0 lost | -1 invalid.
// Safe to repeat: it only moves the deadline of a lease that is still ours.
// An expired lease that nobody took over is still ours.
const extendScript = luaMS + `
if not ms(ARGV[3]) or not ms(ARGV[4]) then return -1 end
local r = redis.call('HMGET', KEYS[1], 's', 'o', 'f')
if r[1] ~= 'p' or r[2] ~= ARGV[1] or r[3] ~= ARGV[2] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'l', now + tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
`

// completeScript completes a batch, each completion atomically with its
// effects, in one script call. ARGV[1] retention ms, ARGV[2] the number of
// completions, ARGV[3] the slice of packed records ('off', '0' or ms:
// packed.go); then per completion a header of five (key count, owner,
// fence, result, op count) and four slots per op:
//
//	INCRBY  key  delta  ''
//	SET     key  value  ''
//	DEL     key  ''     ''
//	HSET    key  field  value
//	HINCRBY key  field  delta
//	HDEL    key  field  ''
//	PEXPIRE key  ms     ''
//
// where key indexes the completion's own keys: KEYS holds, per completion,
// its record and then its effect keys, so key 1 is the record and 2.. the
// effect keys.
//
// Reply: one item per completion, 1 done | 0 lost | {-1, reason}
// invalid (nothing of it written) | {-2, error} the record key holds
// something other than a record.
// Safe to repeat: a record done at this fence answers 1 and applies
// nothing (it renews the record's time to live: a write, so that a WAIT
// after the repeat covers the first completion too). An expired lease that nobody took over still completes: the owner
// and fence match, so nothing else can have run the event.
//
// For each completion, a first pass simulates every op on a shadow of the
// keys it touches (types, integer values, hash fields), with Redis's own
// integer rules (no '+', no leading zeros, 64-bit range, overflow), so that
// the second pass, which writes, cannot fail. Completions run one after
// another: each sees the writes of the ones before it.
const completeScript = luaMS + luaClock + luaPacked + `
local n = tonumber(ARGV[2])
if not ms(ARGV[1]) or not (ARGV[3] == 'off' or ARGV[3] == '0' or ms(ARGV[3])) or not n or n < 0 or n % 1 ~= 0 then
  return redis.error_reply('ERR fleet complete: malformed batch')
end
-- A store that does not pack ('off', '0') completes in place.
local retention, slice = ARGV[1], tonumber(ARGV[3]) or 0
-- The layout is checked whole before anything is written.
do
  local kb, a = 1, 4
  for i = 1, n do
    local nk, nops = tonumber(ARGV[a]), tonumber(ARGV[a + 4])
    if not nk or not nops or nk < 1 or nk % 1 ~= 0 or nops < 0 or nops % 1 ~= 0 then
      return redis.error_reply('ERR fleet complete: malformed batch')
    end
    kb, a = kb + nk, a + 5 + 4 * nops
  end
  if kb ~= #KEYS + 1 or a ~= #ARGV + 1 then
    return redis.error_reply('ERR fleet complete: malformed batch')
  end
end

local B = 1000000000
local ZERO = {false, 0, 0}
-- int parses v as Redis parses a 64-bit integer, into
-- {negative, digits above the last nine, last nine digits}, or nil.
local function int(v)
  if type(v) == 'table' then return v end
  if type(v) ~= 'string' then return nil end
  local neg, d = false, v
  if string.sub(v, 1, 1) == '-' then neg, d = true, string.sub(v, 2) end
  if d == '0' then
    if neg then return nil end
    return ZERO
  end
  local len = #d
  if len > 19 or not string.match(d, '^[1-9]%d*$') then return nil end
  if len == 19 and d > (neg and '9223372036854775808' or '9223372036854775807') then return nil end
  if len <= 9 then return {neg, 0, tonumber(d)} end
  return {neg, tonumber(string.sub(d, 1, len - 9)), tonumber(string.sub(d, -9))}
end
-- add returns a + b exactly, or nil when the sum leaves the 64-bit range.
local function add(a, b)
  local an, ah, al, bn, bh, bl = a[1], a[2], a[3], b[1], b[2], b[3]
  if an == bn then
    local h, l = ah + bh, al + bl
    if l >= B then h, l = h + 1, l - B end
    if h > 9223372036 or (h == 9223372036 and l > (an and 854775808 or 854775807)) then return nil end
    return {an, h, l}
  end
  if ah < bh or (ah == bh and al < bl) then an, ah, al, bh, bl = bn, bh, bl, ah, al end
  local h, l = ah - bh, al - bl
  if l < 0 then h, l = h - 1, l + B end
  return {an and (h > 0 or l > 0), h, l}
end

-- The shadow of a key: t type, v string value (loaded lazily), f hash fields
-- (false: absent), dn fields added minus removed, fresh when nothing of
-- the key in Redis is left to read.
local sim
local function fresh(t, v) return {t = t, v = v, f = {}, dn = 0, fresh = true} end
local function load(k)
  local st = sim[k]
  if st == nil then
    local t = redis.call('TYPE', k)['ok']
    st = {t = t, f = {}, dn = 0, fresh = (t == 'none')}
    sim[k] = st
  end
  return st
end
-- loadValue is load for a string op: one GET tells the type of most keys.
local function loadValue(k)
  local st = sim[k]
  if st == nil then
    local v = redis.pcall('GET', k)
    if type(v) == 'table' then return load(k) end
    if v then
      st = {t = 'string', v = v, f = {}, dn = 0, fresh = false}
    else
      st = {t = 'none', f = {}, dn = 0, fresh = true}
    end
    sim[k] = st
  end
  return st
end
local function field(st, k, f)
  local v = st.f[f]
  if v == nil then
    if st.fresh then v = false else v = redis.call('HGET', k, f) end
    st.f[f] = v
  end
  return v
end
local function bad(i, msg) return {-1, 'effect ' .. i .. ': ' .. msg} end

-- complete1 completes the record KEYS[kb] with nk keys; its owner is ARGV[a].
-- done marks the record done: packed into bucket (packed.go; staged: its
-- field already written), or, with no bucket, in place keeping only s, f,
-- a, p (and r).
local function done(rec, result, bucket, id, v, staged)
  if bucket then
    redis.call('DEL', rec)
    packedPut(bucket, id, v, staged, clock())
    return 1
  end
  redis.call('HSET', rec, 's', 'd')
  redis.call('HDEL', rec, 'o', 'l', 'lo')
  if result ~= '' then redis.call('HSET', rec, 'r', result) end
  redis.call('PEXPIRE', rec, retention)
  return 1
end

local function complete1(kb, nk, a)
  local rec = KEYS[kb]
  local owner, fence, result, n = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  -- Owner and fence both: a token sent again after its claim was released
  -- must not complete the run its copy acquired.
  local r = redis.pcall('HMGET', rec, 's', 'o', 'f', 'a', 'p')
  if r.err then return {-2, r.err} end
  if r[1] ~= 'p' or r[2] ~= owner or r[3] ~= fence then
    if r[1] == 'd' and r[3] == fence then
      -- A write, so that a WAIT on this connection also covers the first
      -- completion, which may have been sent on another one.
      redis.call('PEXPIRE', rec, retention)
      return 1
    end
    if not r[1] then
      local base, id = packedBase(rec, slice)
      local v, bucket, err
      if base then v, bucket, err = packedFind(base, id, clock(), tonumber(retention), slice) end
      if err then return {-2, err} end
      if v and packedFields(v) == fence then
        redis.call('HSET', bucket, id, v)
        return 1
      end
    end
    return 0
  end
  -- Where the record goes: packed (its bucket's slice read off the clock
  -- once per call) or in place.
  local base, id = packedBase(rec, slice)
  local v = base and packedValue(r[3], r[4], r[5] or '', result)
  if v then slices(clock(), tonumber(retention), slice) end
  -- The packed record is written first (packedStage), when there is one.
  local bucket, staged, why
  -- The common effect, a single INCRBY, needs no shadow: a command that
  -- fails writes nothing, so it is simply tried, after the packed record,
  -- which is taken out again when it fails. A wrong type, a value that is
  -- no integer or an overflow make the completion invalid; any other
  -- refusal (OOM, READONLY, NOPERM) goes on to the general path, which
  -- meets it again and fails the call.
  if n == 1 and nk == 2 and ARGV[a + 4] == 'INCRBY' and ARGV[a + 5] == '2' and KEYS[kb + 1] ~= rec then
    bucket, staged, why = packedStage(base, id, v)
    if why then return {-1, why} end
    local ir = redis.pcall('INCRBY', KEYS[kb + 1], ARGV[a + 6])
    if type(ir) ~= 'table' then return done(rec, result, bucket, id, v, staged) end
    packedUnstage(bucket, id, staged)
    bucket, staged = nil, nil
    local e = tostring(ir.err)
    if string.sub(e, 1, 10) == 'WRONGTYPE ' or string.sub(e, 1, 4) == 'ERR ' then
      return {-1, 'effect 0: INCRBY ' .. KEYS[kb + 1] .. ': ' .. e}
    end
  end
  local function key(j)
    j = tonumber(j)
    if not j or j < 2 or j > nk or j % 1 ~= 0 then return nil end
    return KEYS[kb + j - 1]
  end

  sim = {}
  for i = 0, n - 1 do
    local b = a + 4 + 4 * i
    local op, k, x, y = ARGV[b], key(ARGV[b + 1]), ARGV[b + 2], ARGV[b + 3]
    if not k then return bad(i, 'no key') end
    if k == rec then return bad(i, op .. ' on the idempotency record') end
    if op == 'SET' then
      sim[k] = fresh('string', x)
    elseif op == 'DEL' then
      sim[k] = fresh('none')
    elseif op == 'PEXPIRE' then
      local d = int(x)
      if not d or d[2] >= 9000000000 then return bad(i, 'PEXPIRE ' .. k .. ' by ' .. x .. ' ms') end
      if d[1] or d == ZERO then sim[k] = fresh('none') end
    elseif op == 'INCRBY' then
      local d = int(x)
      if not d then return bad(i, 'INCRBY ' .. k .. ' by ' .. x) end
      local st = loadValue(k)
      local cur = ZERO
      if st.t == 'string' then
        if st.v == nil then st.v = redis.call('GET', k) end
        cur = int(st.v)
        if not cur then return bad(i, 'INCRBY ' .. k .. ': value is not an integer') end
      elseif st.t ~= 'none' then
        return bad(i, 'INCRBY ' .. k .. ': key holds a ' .. st.t)
      end
      local s = add(cur, d)
      if not s then return bad(i, 'INCRBY ' .. k .. ': overflow') end
      st.t, st.v = 'string', s
    elseif op == 'HSET' or op == 'HINCRBY' or op == 'HDEL' then
      local st = load(k)
      if st.t ~= 'hash' and st.t ~= 'none' then return bad(i, op .. ' ' .. k .. ': key holds a ' .. st.t) end
      if op == 'HDEL' then
        if st.t == 'hash' and field(st, k, x) then
          st.f[x], st.dn = false, st.dn - 1
          local left = st.dn
          if not st.fresh then left = left + redis.call('HLEN', k) end
          if left == 0 then sim[k] = fresh('none') end
        end
      else
        local v = y
        local d
        if op == 'HINCRBY' then
          d = int(y)
          if not d then return bad(i, 'HINCRBY ' .. k .. ' ' .. x .. ' by ' .. y) end
        end
        st.t = 'hash'
        local old = field(st, k, x)
        if d then
          local cur = ZERO
          if old then
            cur = int(old)
            if not cur then return bad(i, 'HINCRBY ' .. k .. ' ' .. x .. ': value is not an integer') end
          end
          v = add(cur, d)
          if not v then return bad(i, 'HINCRBY ' .. k .. ' ' .. x .. ': overflow') end
        end
        if not old then st.dn = st.dn + 1 end
        st.f[x] = v
      end
    else
      return bad(i, 'unknown operation ' .. tostring(op))
    end
  end

  bucket, staged, why = packedStage(base, id, v)
  if why then return {-1, why} end
  for i = 0, n - 1 do
    local b = a + 4 + 4 * i
    local op, k, x, y = ARGV[b], key(ARGV[b + 1]), ARGV[b + 2], ARGV[b + 3]
    if op == 'INCRBY' then redis.call('INCRBY', k, x)
    elseif op == 'SET' then redis.call('SET', k, x)
    elseif op == 'DEL' then redis.call('DEL', k)
    elseif op == 'HSET' then redis.call('HSET', k, x, y)
    elseif op == 'HINCRBY' then redis.call('HINCRBY', k, x, y)
    elseif op == 'HDEL' then redis.call('HDEL', k, x)
    elseif op == 'PEXPIRE' then redis.call('PEXPIRE', k, x)
    end
  end
  return done(rec, result, bucket, id, v, staged)
end

local out = {}
local kb, a = 1, 4
for i = 1, n do
  local nk, nops = tonumber(ARGV[a]), tonumber(ARGV[a + 4])
  out[i] = complete1(kb, nk, a + 1)
  kb, a = kb + nk, a + 5 + 4 * nops
end
return out
`

// releaseScript: KEYS[1] record; ARGV owner, fence, retention ms, and '1'
// to give back the attempt the claim counted (Unclaim: the handler never
// ran). Reply 1 released | 0 lost | -1 invalid.
// Safe to repeat: a record released at this fence answers 1, and gives
// nothing back a second time.
const releaseScript = luaMS + `
if not ms(ARGV[3]) then return -1 end
local r = redis.call('HMGET', KEYS[1], 's', 'o', 'f', 'a')
if r[1] == 'r' and r[3] == ARGV[2] then return 1 end
if r[1] ~= 'p' or r[2] ~= ARGV[1] or r[3] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 's', 'r', 'lo', ARGV[1])
redis.call('HDEL', KEYS[1], 'o', 'l')
if ARGV[4] == '1' and (tonumber(r[4]) or 0) > 0 then redis.call('HINCRBY', KEYS[1], 'a', -1) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`
