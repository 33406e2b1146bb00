package cli

import "testing"

func TestPrintable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"evt-1", "evt-1"},
		{"", ""},
		{"payments-api:eu/7", "payments-api:eu/7"},
		{"\x1b[2J", `\u001b[2J`},
		{"id\n2024  forged row", `id\u000a2024  forged row`},
		{"a\tb", `a\u0009b`},
		{`back\slash`, `back\\slash`},
		{"é 日本 ✓", "é 日本 ✓"},
		{"\xff\xfe", `\xff\xfe`},
		{"abc\u202egnp.exe", `abc\u202egnp.exe`},
		{"\u0085next", `\u0085next`},
		{"\x7f", `\u007f`},
	}
	for _, tt := range tests {
		if got := printable(tt.in); got != tt.want {
			t.Errorf("printable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
