package channel

import (
	"math"
	"testing"
)

// FuzzCursors feeds history cursors a customer could send back. A cursor
// is a seq bound to an account by a MAC, so:
//   - decoding any string never panics, and accepts only a cursor the key
//     made, for that account, of a seq of at least 1;
//   - a cursor made for seq ≥ 1 decodes to that seq, and for no other
//     account;
//   - changing any one byte of a cursor makes it refused.
func FuzzCursors(f *testing.F) {
	cs := NewCursors([]byte("fuzz cursor secret"))
	valid := cs.encode("a1", 42)
	f.Add("a1", valid, int64(42), uint8(3), byte('A'))
	f.Add("a1", cs.encode("a1", 1), int64(1), uint8(0), byte('B'))
	f.Add("a1", cs.encode("a3", 42), int64(math.MaxInt64), uint8(31), byte('_'))
	f.Add("a1", cs.encode("a1", 0), int64(0), uint8(7), byte('-'))
	f.Add("a1", cs.encode("a1", -1), int64(-1), uint8(255), byte('='))
	f.Add("a1", "not-a-cursor", int64(2), uint8(10), byte('\n'))
	f.Add("a1", valid+"=", int64(3), uint8(31), byte(0))
	f.Add("a1", valid[:31], int64(4), uint8(30), byte('+'))
	f.Add("", "", int64(5), uint8(0), byte('/'))
	f.Fuzz(func(t *testing.T, account, cursor string, seq int64, at uint8, b byte) {
		if got, err := cs.decode(account, cursor); err == nil {
			if got < 1 {
				t.Fatalf("decode(%q, %q) = seq %d, want a refusal", account, cursor, got)
			}
			if want := cs.encode(account, got); cursor != want {
				t.Fatalf("decode(%q, %q) = seq %d, but the cursor for it is %q", account, cursor, got, want)
			}
		}

		made := cs.encode(account, seq)
		got, err := cs.decode(account, made)
		switch {
		case seq >= 1 && (err != nil || got != seq):
			t.Fatalf("cursor %q of %q seq %d decodes to %d, %v", made, account, seq, got, err)
		case seq < 1 && err == nil:
			t.Fatalf("cursor %q of %q seq %d decodes to %d, want a refusal", made, account, seq, got)
		}
		if other := account + "x"; err == nil {
			if got, err := cs.decode(other, made); err == nil {
				t.Fatalf("cursor %q of %q decodes for %q to seq %d", made, account, other, got)
			}
		}

		i := int(at) % len(made)
		if made[i] == b {
			return
		}
		tampered := made[:i] + string(b) + made[i+1:]
		if got, err := cs.decode(account, tampered); err == nil {
			t.Fatalf("cursor %q of %q seq %d with byte %d changed to %q, %q, decodes to seq %d", made, account, seq, i, b, tampered, got)
		}
	})
}
