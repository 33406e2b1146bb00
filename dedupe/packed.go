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
// the completion that marks a record done moves it into a bucket: a small
// hash of its aggregate, in the aggregate's slot, that Redis keeps as a
// listpack:
//
//	fleet:idem:{<aggregate>}:~<slice>            field <identity>
//	fleet:idem:{<aggregate>}:~<slice>.<path>     value "<fence> <attempts> <fingerprint>[ <result>]"
//
// A slice is a stretch of the dedupe window (SliceKey): every record done
// in it goes to its buckets, and they all expire together, a retention after
// the slice ends. So a done record is kept at least a retention and at most
// a retention and a slice after it was done, and a lookup reads the
// buckets of the slices a retention back.
//
// A bucket holds at most packedCap entries (Redis's default
// hash-max-listpack-entries): packedCap-1 records and, once it has them,
// the field "+" that marks it full. A full bucket takes no new record: the
// next goes one level down, into the bucket whose path is the next bit of
// its identity (0 or 1), and so on. A lookup reads each bucket on the path
// with one HMGET (the record and the mark) and stops at the first that is
// not full. Buckets never shrink: a forgotten record is overwritten with
// an empty value (a tombstone), which lookups step over. The last level
// (packedDepth) has no mark and grows as it must. An aggregate with a handful of events in a slice has
// one bucket; one with a million, about 2^13 on 13 levels.
//
// Records that cannot be packed stay hashes of their own, done in place as
// before: a result too long for a listpack value (packedMaxValue) or a key
// that is no record key of the current layout.

// SliceKey holds the length of a slice, in milliseconds: set by the first
// store that loads (half its retention), read by every other one, and never
// changed, so that stores with another retention (a setting changed
// between restarts) still find the buckets of the slices before. Deleting
// it while records live loses them, unless the retention is the same.
const SliceKey = "fleet:idem:slice"

// The bucket bounds: packedCap is Redis's default hash-max-listpack-entries
// and packedMaxValue its hash-max-listpack-value; past either, Redis turns
// a bucket into a hash table, which costs twice the memory.
const (
	packedCap      = 128
	packedMaxValue = 64
	packedDepth    = 20
)

// luaPacked holds the bucket functions, shared by the scripts that read or
// write done records; its first line is the bounds above (a test keeps
// them the same).
const luaPacked = `
local PACKED_CAP, PACKED_MAX, PACKED_DEPTH = 128, 64, 20
local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
-- packedBase returns the prefix of rec's buckets and rec's identity, or
-- nil when rec is not a record key of the current layout.
local function packedBase(rec)
  local n = #rec
  -- The bucket shares rec's hash tag only when the tag is not empty.
  if n < 37 or string.sub(rec, 1, 12) ~= 'fleet:idem:{' or string.sub(rec, 13, 13) == '}' or string.sub(rec, n - 23, n - 22) ~= '}:' then
    return nil
  end
  local id = string.sub(rec, n - 21)
  if not string.match(id, '^[%w_%-]+$') then return nil end
  return string.sub(rec, 1, n - 22) .. '~', id
end
-- pathBit is bit d (from 1) of the identity's base64url digits.
local function pathBit(id, d)
  local c = math.floor((d - 1) / 6) + 1
  local v = string.find(B64, string.sub(id, c, c), 1, true) - 1
  return math.floor(v / 2 ^ (5 - (d - 1) % 6)) % 2
end
-- packedFind returns the packed value of id and its bucket, or nil: one
-- HMGET per bucket on its path (its record and the full mark), newest
-- slice first, and one EXISTS for all the older slices.
local function packedFind(base, id, now, retention, slice)
  local newest = math.floor(now / slice)
  local oldest = math.floor((now - retention) / slice)
  for s = newest, oldest, -1 do
    if s == newest - 1 then
      local older = {}
      for o = s, oldest, -1 do older[#older + 1] = base .. o end
      if redis.call('EXISTS', unpack(older)) == 0 then return nil end
    end
    local key, path = base .. s, ''
    for d = 0, PACKED_DEPTH do
      local r = redis.call('HMGET', key, id, '+')
      if r[1] and r[1] ~= '' then return r[1], key end
      if not r[2] then break end
      path = path .. pathBit(id, d + 1)
      key = base .. s .. '.' .. path
    end
  end
  return nil
end
-- packedPut writes id's packed value into the current slice: into the
-- first bucket on its path that is not full, marking it full when it
-- reaches PACKED_CAP - 1 records (the mark, '+', is the last field), and
-- keeping the full ones above it alive as long.
local function packedPut(base, id, v, now, retention, slice)
  local s = math.floor(now / slice)
  local deadline = (s + 1) * slice + retention
  local key, path = base .. s, ''
  for d = 0, PACKED_DEPTH do
    local n = redis.call('HLEN', key)
    if n < PACKED_CAP or d == PACKED_DEPTH then
      if redis.call('HSET', key, id, v) == 1 and n + 1 == PACKED_CAP - 1 and d < PACKED_DEPTH then
        redis.call('HSET', key, '+', '')
      end
      redis.call('PEXPIREAT', key, deadline)
      return
    end
    redis.call('PEXPIREAT', key, deadline)
    path = path .. pathBit(id, d + 1)
    key = base .. s .. '.' .. path
  end
end
-- packedValue is the packed form of a done record, or nil when it cannot
-- be packed (too long for a listpack value, a fingerprint with a space, a
-- fence or an attempt count that is no number).
local function packedValue(fence, attempts, fp, result)
  if not string.match(fence or '', '^%d+$') or not string.match(attempts or '', '^%d+$') or string.find(fp, ' ', 1, true) then
    return nil
  end
  local v = fence .. ' ' .. attempts .. ' ' .. fp
  if result and result ~= '' then v = v .. ' ' .. result end
  if #v > PACKED_MAX then return nil end
  return v
end
-- packedFields returns fence, attempts, fingerprint and result of a
-- packed value.
local function packedFields(v)
  local f, a, rest = string.match(v, '^(%d+) (%d+) (.*)$')
  local sp = string.find(rest or '', ' ', 1, true)
  if not sp then return f, a, rest, '' end
  return f, a, string.sub(rest, 1, sp - 1), string.sub(rest, sp + 1)
end
`

// defaultSliceMS is the slice a store sets when there is none yet: half
// its retention, so that a lookup reads three slices and a done record
// is kept between one and one and a half retentions (1.25 on average).
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
