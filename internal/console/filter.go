package console

import (
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// pageSize is how many dead letters a page lists.
const pageSize = 50

// filterFields are the query parameters of a dead-letter filter.
var filterFields = []string{"type", "key", "source", "id", "reason", "group", "since", "until"}

// parseFilter reads a filter from a query or form: since and until are an
// RFC 3339 time, a time as a browser's datetime-local field sends it (UTC),
// or a duration before now (90m); page counts from 1.
func parseFilter(v url.Values, now time.Time) (Filter, error) {
	f := Filter{Type: v.Get("type"), Key: v.Get("key"), Source: v.Get("source"), ID: v.Get("id"),
		Reason: v.Get("reason"), Group: v.Get("group"), Limit: pageSize}
	var err error
	if f.Since, err = ParseWhen(v.Get("since"), now); err != nil {
		return f, fmt.Errorf("since: %w", err)
	}
	if f.Until, err = ParseWhen(v.Get("until"), now); err != nil {
		return f, fmt.Errorf("until: %w", err)
	}
	if p := v.Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 1_000_000 {
			return f, fmt.Errorf("page %q: want a number from 1", p)
		}
		f.Skip = (n - 1) * pageSize
	}
	return f, nil
}

// ParseWhen reads a time a person gives: an RFC 3339 time, a time as a
// browser's datetime-local field sends it (UTC), or a duration before now
// (90m); "" is the zero time. fleet dlq's --since and --until read it too.
func ParseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither a time (2006-01-02T15:04, RFC 3339) nor a duration ago (90m)", s)
}

// filterQuery is the query of the filter's fields in v (no page).
func filterQuery(v url.Values) url.Values {
	q := url.Values{}
	for _, k := range filterFields {
		if x := v.Get(k); x != "" {
			q.Set(k, x)
		}
	}
	return q
}

// filterValues is f as a query or form that parseFilter reads back, its
// times as RFC 3339 (no page).
func filterValues(f Filter) url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"type": f.Type, "key": f.Key, "source": f.Source, "id": f.ID, "reason": f.Reason, "group": f.Group} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		q.Set("until", f.Until.UTC().Format(time.RFC3339Nano))
	}
	return q
}

// parseRef reads a dead letter's place.
func parseRef(topic, partition, offset string) (LetterRef, error) {
	p, err := strconv.Atoi(partition)
	if err != nil || p < 0 {
		return LetterRef{}, fmt.Errorf("partition %q is not a partition", partition)
	}
	o, err := strconv.ParseInt(offset, 10, 64)
	if err != nil || o < 0 {
		return LetterRef{}, fmt.Errorf("offset %q is not an offset", offset)
	}
	if topic == "" {
		return LetterRef{}, fmt.Errorf("no topic")
	}
	return LetterRef{Topic: topic, Partition: p, Offset: o}, nil
}
