package dedupe

import (
	"context"
	"fmt"
	"strconv"
	"strings"
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
// retention after the slice ends. So a done record is kept at least a
// retention and at most a retention and a slice after it was done, and a
// lookup reads the buckets of the slices a retention back: the newest with
// one HGET, the older ones (most aggregates have none) with one EXISTS
// first.
//
// Redis keeps a bucket of up to 128 records of up to 64 bytes as a
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
-- packedBase returns the prefix of rec's buckets and rec's identity, or
-- nil when rec is not a record key of the current layout.
local function packedBase(rec)
  local n = #rec
  -- The bucket shares rec's hash tag only when the tag is not empty.
  if n < 37 or string.sub(rec, n - 23, n - 22) ~= '}:' or string.sub(rec, 1, 13) == 'fleet:idem:{}' or string.sub(rec, 1, 12) ~= 'fleet:idem:{' then
    return nil
  end
  local id = string.sub(rec, n - 21)
  if string.find(id, '[^%w_%-]') then return nil end
  return string.sub(rec, 1, n - 22) .. '~', id
end
-- The slices of this call, computed once: the newest's suffix, the older
-- ones' (back a retention), and the newest's deadline.
local sliceNewest, sliceOlder, sliceDeadline
local function slices(now, retention, slice)
  if not sliceNewest then
    local s = math.floor(now / slice)
    sliceNewest, sliceOlder, sliceDeadline = tostring(s), {}, (s + 1) * slice + retention
    for o = s - 1, math.floor((now - retention) / slice), -1 do sliceOlder[#sliceOlder + 1] = tostring(o) end
  end
end
-- packedFind returns the packed value of id and its bucket, or nil.
local function packedFind(base, id, now, retention, slice)
  slices(now, retention, slice)
  local key = base .. sliceNewest
  local v = redis.call('HGET', key, id)
  if v then return v, key end
  local n = #sliceOlder
  if n == 0 then return nil end
  local older = {}
  for i = 1, n do older[i] = base .. sliceOlder[i] end
  if redis.call('EXISTS', unpack(older)) == 0 then return nil end
  for i = 1, n do
    v = redis.call('HGET', older[i], id)
    if v then return v, older[i] end
  end
  return nil
end
-- packedPut writes id's packed value into the current slice's bucket.
local function packedPut(base, id, v, now, retention, slice)
  slices(now, retention, slice)
  local key = base .. sliceNewest
  redis.call('HSET', key, id, v)
  redis.call('PEXPIREAT', key, sliceDeadline)
end
-- packedValue is the packed form of a done record, or nil when it cannot
-- be packed.
local function packedValue(fence, attempts, fp, result)
  if not string.match(fence or '', '^%d+$') or not string.match(attempts or '', '^%d+$') or string.find(fp, ' ', 1, true) then
    return nil
  end
  local v
  if #fp == 16 and not string.find(fp, '[^0-9a-f]') then
    local hi, lo = tonumber(string.sub(fp, 1, 8), 16), tonumber(string.sub(fp, 9), 16)
    v = '#' .. string.char(math.floor(hi / 16777216), math.floor(hi / 65536) % 256, math.floor(hi / 256) % 256, hi % 256,
      math.floor(lo / 16777216), math.floor(lo / 65536) % 256, math.floor(lo / 256) % 256, lo % 256) .. fence .. ' ' .. attempts
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

// readSlice reads (or sets) SliceKey.
func (s *Redis) readSlice(ctx context.Context) error {
	v, err := s.sliceLua.Run(ctx, s.c, []string{SliceKey}, defaultSliceMS(s.cfg)).Text()
	if err != nil {
		return fmt.Errorf("read %s: %w", SliceKey, err)
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms <= 0 {
		return fmt.Errorf("read %s: %q is not a positive number of milliseconds", SliceKey, v)
	}
	s.sliceMS.Store(ms)
	return nil
}

// slice returns the slice as a script argument, reading it first if no
// Load has.
func (s *Redis) slice(ctx context.Context) (int64, error) {
	if ms := s.sliceMS.Load(); ms > 0 {
		return ms, nil
	}
	if err := s.readSlice(ctx); err != nil {
		return 0, err
	}
	return s.sliceMS.Load(), nil
}

// isBucketKey reports whether key is a bucket of packed records.
func isBucketKey(key string) bool {
	i := strings.LastIndex(key, "}:~")
	return strings.HasPrefix(key, recordPrefix) && i > len(recordPrefix)
}
