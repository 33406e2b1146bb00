package effects

import "strconv"

// parseInt parses s as Redis parses a 64-bit integer (string2ll): an
// optional '-', then "0" alone or digits without a leading zero, nothing
// else (no '+', no spaces, no "-0"), within the 64-bit range. Go's
// strconv is looser ("+5", "007" and "-0" pass it), which is why it is
// not enough alone.
func parseInt(s string) (int64, bool) {
	if s == "0" {
		return 0, true
	}
	digits := s
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || digits[0] < '1' || digits[0] > '9' {
		return 0, false
	}
	for _, c := range []byte(digits) {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false // out of range
	}
	return n, true
}

// addInt returns a+b, or false when the sum leaves the 64-bit range, as
// Redis refuses an increment that would overflow.
func addInt(a, b int64) (int64, bool) {
	sum := a + b
	if (b > 0 && sum < a) || (b < 0 && sum > a) {
		return 0, false
	}
	return sum, true
}
