package dedupe

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Packed done records (doc.go, "Record layout"). A done record is the bill:
// Redis holds events/s × retention of them, and a hash of its own costs
// about 230 bytes of used_memory, most of it the key's own overhead (the
// key, its entries in the keyspace and the expiry tables, the object). So
// the completion that marks a record done moves it into a bucket: a hash
// of its aggregate, in the aggregate's slot, one field per record:
//
//	fleet:idem:{<aggregate>}:~<slice>   field <identity>   value <packed record>
//
// A slice is a stretch of the dedupe window (SliceKey): every record done
// in it goes to its aggregate's bucket of that slice, which expires a
// retention (and a second) after the slice ends. So a done record is kept at least a
// retention and at most a retention and a slice after it was done, and a
// lookup reads the buckets of the slices a retention back: the newest with
// one HGET, the older ones (most aggregates have none) with one EXISTS
// first, which for a claim also asks after the record key and the gate.
//
// Redis keeps a bucket of up to 512 records of up to 64 bytes as a
// listpack, about 40 bytes a record, and a larger one as a hash table,
// about 90 bytes a record with values of at most 12 bytes, which is why a
// packed record is binary where it can be:
//
//	'#' <fingerprint, 8 bytes> <fence> ' ' <attempts> [' ' <result>]
//	<fence> ' ' <attempts> ' ' <fingerprint> [' ' <result>]
//
// the first when the fingerprint is 16 lowercase hex digits (every
// fingerprint fleet makes), the second otherwise. A record whose packed
// value would pass packedMaxValue (a long result), whose fingerprint has a
// space, or whose key is no record key of the current layout stays a hash
// of its own, done in place as before.
//
// On a Redis Cluster no record is packed (the scripts get slice 0): while
// a slot migrates, Redis keeps a script's view whole only for the keys it
// declares, and a record's buckets depend on the Redis clock, which the
// caller does not read. Declaring them is the next step.
//
// The checks that keep a bucket whole: a completion's first write is its
// packed record (HSETNX, which a key of another type refuses; a script is
// not rolled back), taken out again if its effects then fail; a
// bucket's time to live only ever grows, so that a store with a shorter
// retention does not cut the records of one with a longer one; a lookup
// also reads the next slice's bucket, in case the Redis clock stepped back
// over a slice's end; and an operator's tools never set the slice.

// SliceKey holds the length of a slice, in milliseconds: set by the first
// store that loads (half its retention), read by every other one, and never
// changed, so that stores with another retention (a setting changed
// between restarts) still find the buckets of the slices before. Deleting
// it while records live loses them, unless the retention is the same.
const SliceKey = "fleet:idem:slice"

// packedMaxValue is Redis's default hash-max-listpack-value: a longer value
// would turn its whole bucket into a hash table.
const packedMaxValue = 64

// luaPacked holds the bucket functions, shared by the scripts that read or
// write done records; its first line is the bound above (a test keeps them
// the same).
const luaPacked = `
local PACKED_MAX = 64
-- packedSlice turns a script's slice argument into the slice: 0 when
-- nothing is packed ('off': a Redis Cluster; '0' with no SliceKey set), the
-- slice set in SliceKey for '0' (a store that does not pack still finds
-- the records others packed), else the argument.
local function packedSlice(arg)
  if arg == 'off' then return 0 end
  if arg == '0' then
    local v = redis.call('GET', 'fleet:idem:slice')
    if type(v) == 'string' and #v <= 16 and string.match(v, '^[1-9]%d*$') then return tonumber(v) end
    return 0
  end
  return tonumber(arg)
end
-- packedBase returns the prefix of rec's buckets and rec's identity, or
-- nil when rec is not a record key of the current layout, or when records
-- are not packed (slice 0: a Redis Cluster, see packed.go).
local function packedBase(rec, slice)
  local n = #rec
  -- The bucket shares rec's hash tag only when the tag is not empty (byte
  -- 13 is no '}'). Bytes are compared, not substrings: a Lua string is
  -- made (hashed and interned) for each.
  if slice == 0 or n < 37 or string.byte(rec, n - 23) ~= 125 or string.byte(rec, n - 22) ~= 58 or
      string.byte(rec, 13) == 125 or string.find(rec, 'fleet:idem:{', 1, true) ~= 1 or string.find(rec, '[^%w_%-]', n - 21) then
    return nil
  end
  return string.sub(rec, 1, n - 22) .. '~', string.sub(rec, n - 21)
end
-- The slices of this call, computed once from its window (the retention;
-- an operator's lookback): the current one's suffix, the others' a lookup
-- reads (the next one, in case the clock stepped back, and those back a
-- window), and the current one's deadline, a window after its end.
local sliceNewest, sliceOthers, sliceDeadline
local function slices(now, window, slice)
  if not sliceNewest then
    local s = math.floor(now / slice)
    sliceNewest, sliceOthers, sliceDeadline = tostring(s), {tostring(s + 1)}, (s + 1) * slice + window + 1000
    for o = s - 1, math.max(math.floor((now - window) / slice), s - 4096), -1 do sliceOthers[#sliceOthers + 1] = tostring(o) end
  end
end
-- packedGet reads id's field of bucket: its packed value or nil, and the
-- error when bucket holds something other than a hash (an operator's
-- mistake: it fails the lookups of its aggregate, not a whole batch).
local function packedGet(bucket, id)
  local v = redis.pcall('HGET', bucket, id)
  if type(v) == 'table' then return nil, bucket .. ': ' .. tostring(v.err) end
  return v
end
-- packedFind returns the packed value of id and its bucket, or nil (and
-- the error of a bucket that is no hash): one HGET of the current slice's
-- bucket, then one EXISTS of the others' (most aggregates have none) and
-- an HGET of each that exists.
local function packedFind(base, id, now, lookback, slice)
  slices(now, lookback, slice)
  local key = base .. sliceNewest
  local v, err = packedGet(key, id)
  if v or err then return v, key, err end
  local others = {}
  for i = 1, #sliceOthers do others[i] = base .. sliceOthers[i] end
  if redis.call('EXISTS', unpack(others)) == 0 then return nil end
  for i = 1, #others do
    v, err = packedGet(others[i], id)
    if v or err then return v, others[i], err end
  end
  return nil
end
-- packedStage writes id's packed value v into the current slice's bucket
-- of base, as a completion's first write (a script is not rolled back, and
-- a bucket may hold something other than a hash): it answers the bucket
-- and whether the field is new (a completion that then fails takes it out
-- again: packedUnstage), or nil, false and the reason nothing was
-- written. Without v (a record done in place) it writes nothing and
-- answers nil, false. A field already there (an operator's tool, a
-- repeat) is left for packedPut.
local function packedStage(base, id, v)
  if not v then return nil, false end
  local bucket = base .. sliceNewest
  local r = redis.pcall('HSETNX', bucket, id, v)
  if type(r) == 'table' then
    if string.sub(tostring(r.err), 1, 10) == 'WRONGTYPE ' then
      return nil, false, bucket .. ' holds something other than a bucket of done records'
    end
    -- Any other refusal (OOM, READONLY) fails the call: sent again
    -- with redis.call, it raises.
    r = redis.call('HSETNX', bucket, id, v)
  end
  return bucket, r == 1
end
local function packedUnstage(bucket, id, staged)
  if staged then redis.call('HDEL', bucket, id) end
end
-- packedPut writes id's packed value into bucket unless packedStage did,
-- and makes the bucket live until the current slice's deadline, never
-- shorter: a store with a shorter retention must not cut the records of
-- one with a longer one. The deadline has a second to spare, so that the
-- time the script has run since it read the clock (PTTL counts from
-- later) does not make every completion set it again.
local function packedPut(bucket, id, v, staged, now)
  if not staged then redis.call('HSET', bucket, id, v) end
  local ttl = redis.call('PTTL', bucket)
  if ttl < 0 or now + ttl < sliceDeadline - 1000 then redis.call('PEXPIREAT', bucket, sliceDeadline) end
end
-- packedValue is the packed form of a done record, or nil when it cannot
-- be packed.
local function packedValue(fence, attempts, fp, result)
  if not fence or fence == '' or string.find(fence, '%D') or not attempts or attempts == '' or string.find(attempts, '%D') or
      string.find(fp, ' ', 1, true) then
    return nil
  end
  local v
  if #fp == 16 and not string.find(fp, '[^0-9a-f]') then
    local floor, hi, lo = math.floor, tonumber(string.sub(fp, 1, 8), 16), tonumber(string.sub(fp, 9), 16)
    v = string.char(35, floor(hi / 16777216), floor(hi / 65536) % 256, floor(hi / 256) % 256, hi % 256,
      floor(lo / 16777216), floor(lo / 65536) % 256, floor(lo / 256) % 256, lo % 256) .. fence .. ' ' .. attempts
  else
    v = fence .. ' ' .. attempts .. ' ' .. fp
  end
  if result and result ~= '' then v = v .. ' ' .. result end
  if #v > PACKED_MAX then return nil end
  return v
end
-- packedFields returns fence, attempts, fingerprint and result of a
-- packed value.
local function packedFields(v)
  if string.sub(v, 1, 1) == '#' then
    local fp = string.format('%02x%02x%02x%02x%02x%02x%02x%02x', string.byte(v, 2, 9))
    local f, a, rest = string.match(v, '^(%d+) (%d+)(.*)$', 10)
    return f, a, fp, string.sub(rest or '', 2)
  end
  local f, a, rest = string.match(v, '^(%d+) (%d+) (.*)$')
  local sp = string.find(rest or '', ' ', 1, true)
  if not sp then return f, a, rest, '' end
  return f, a, string.sub(rest, 1, sp - 1), string.sub(rest, sp + 1)
end
`

// defaultSliceMS is the slice a store sets when there is none yet: half
// its retention, so that a lookup reads at most three buckets and a done
// record is kept between one and one and a half retentions (1.25 on
// average).
func defaultSliceMS(cfg Config) int64 { return max(cfg.Retention.Milliseconds()/2, 1) }

// sliceScript: SET KEYS[1] to ARGV[1] unless it is set; reply its value.
const sliceScript = `
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
`

// maxSlicesPerRetention bounds the slices a lookup reads: a slice set by a
// first worker with a much shorter retention (a trial) would make every
// claim read thousands of buckets.
const maxSlicesPerRetention = 32

// The slice as the scripts take it: sliceOff, never packed (a Redis
// Cluster); sliceLook, this store does not pack, and a script reads
// SliceKey itself to find the records other stores packed; or the slice in
// milliseconds, this store packs.
const (
	sliceOff  = -1
	sliceLook = -2
)

// readSlice reads SliceKey, and sets it when the store packs. On a Redis
// Cluster records are not packed: a script may only touch the keys it
// declares while a slot migrates, and a record's buckets depend on the
// Redis clock.
func (s *Redis) readSlice(ctx context.Context) error {
	if _, cluster := s.c.(*redis.ClusterClient); cluster {
		s.sliceMS.Store(sliceOff)
		return nil
	}
	script := sliceReadLua
	if s.cfg.PackDoneRecords {
		script = s.sliceLua
	}
	v, err := script.Run(ctx, s.c, []string{SliceKey}, defaultSliceMS(s.cfg)).Text()
	if errors.Is(err, redis.Nil) {
		s.sliceMS.Store(sliceLook)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", SliceKey, err)
	}
	ms, err := parseSlice(v)
	if err != nil {
		return err
	}
	if n := s.cfg.Retention.Milliseconds() / ms; n > maxSlicesPerRetention {
		return fmt.Errorf("%s is %v, set by the first worker that packed records on this Redis (half its retention): a retention of %v spans %d slices, and a claim would read a bucket of each (at most %d); if the records of that first retention no longer matter, delete %s and start again",
			SliceKey, time.Duration(ms)*time.Millisecond, s.cfg.Retention, n, maxSlicesPerRetention, SliceKey)
	}
	if !s.cfg.PackDoneRecords {
		ms = sliceLook
	}
	s.sliceMS.Store(ms)
	return nil
}

// sliceReadLua reads SliceKey (a script, so that a store that does not
// pack reads it the way one that packs does).
var sliceReadLua = redis.NewScript(`return redis.call('GET', KEYS[1])`)

// parseSlice reads the value of SliceKey: a positive number of
// milliseconds, as the scripts accept it (at most 16 digits).
func parseSlice(v string) (int64, error) {
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms <= 0 || len(v) > 16 || strconv.FormatInt(ms, 10) != v {
		return 0, fmt.Errorf("%s holds %q, not a positive number of milliseconds", SliceKey, v)
	}
	return ms, nil
}

// slice returns the slice as a script argument ("off", "0" for a store
// that does not pack, or the slice in milliseconds), reading SliceKey
// first if no Load has.
func (s *Redis) slice(ctx context.Context) (any, error) {
	if s.sliceMS.Load() == 0 {
		if err := s.readSlice(ctx); err != nil {
			return nil, err
		}
	}
	switch ms := s.sliceMS.Load(); ms {
	case sliceOff:
		return "off", nil
	case sliceLook:
		return "0", nil
	default:
		return ms, nil
	}
}

// isBucketKey reports whether key is a bucket of packed records:
// fleet:idem:{<aggregate>}:~<slice>.
func isBucketKey(key string) bool {
	i := strings.LastIndex(key, "}:~")
	if !strings.HasPrefix(key, recordPrefix) || i <= len(recordPrefix) || i+3 == len(key) {
		return false
	}
	for _, c := range []byte(key[i+3:]) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
