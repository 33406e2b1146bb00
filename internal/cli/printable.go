package cli

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// printable returns s safe to print on an operator's terminal: every byte
// that is not valid UTF-8 as \xNN, every rune that is not graphic (control
// characters such as ESC, newlines and tabs) or that reorders text
// (bidirectional overrides and isolates) as \uNNNN, and the backslash as \\,
// so that an escape in the output is always fleet's. Event ids, sources,
// keys and error messages come from producers: printed raw, an id holding
// "\x1b[2J" clears the screen, and one holding a newline forges a row.
func printable(s string) string {
	if isPlain(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case !unicode.IsGraphic(r) || reorders(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// isPlain reports whether s is printable ASCII without a backslash: the
// common case, printed as it is.
func isPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '\\' {
			return false
		}
	}
	return true
}

// reorders reports whether r is a Unicode bidirectional control, which can
// make a terminal show text in another order than it is.
func reorders(r rune) bool {
	return r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 || r == 0x200e || r == 0x200f || r == 0x061c
}
