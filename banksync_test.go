package banksync_test

import (
	"regexp"
	"strings"
	"testing"

	"banksync"
)

// FuzzValidID: ValidID accepts exactly what the documented pattern does —
// 1-64 letters, digits or ._:-, starting with a letter or digit.
func FuzzValidID(f *testing.F) {
	for _, s := range []string{"", "a", "acct-1", "-a", ".a", "a.b_c:d-e", "a b", "ü", "a\n", strings.Repeat("x", 64), strings.Repeat("x", 65), "0", "_x"} {
		f.Add(s)
	}
	pattern := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$`)
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := banksync.ValidID(s), pattern.MatchString(s); got != want {
			t.Fatalf("ValidID(%q) = %v, want %v", s, got, want)
		}
	})
}
