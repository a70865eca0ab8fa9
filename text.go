package banksync

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Limits on the text people type or read: a depositor's name and a memo.
// Both count characters, meaning Unicode code points of the NFC form, not
// bytes: "김철수" is 3 characters (9 bytes), so a Korean memo gets the same
// 140 characters as a Latin one. A JavaScript client counts the same with
// [...s.normalize("NFC")].length.
const (
	SenderLengthMax = 64 // every id ValidID accepts is also a valid name
	MemoLengthMax   = 140
)

// senderPunctuation is what a depositor's name may hold besides letters,
// digits and single spaces: what other banks send in names such as
// "(주)토스 급여", "O’Brien & Co." or "kb-bank" (the old id-like senders).
const senderPunctuation = "()[].,-_&'’/:+·㈜"

// NormalizeSender returns the depositor's name s, as another bank sends it
// with a deposit (입금자명), in NFC: the form that is stored, hashed for the
// deposit's idempotency and published. It refuses (EINVALID) a name that
// is not valid UTF-8; is empty or longer than SenderLengthMax characters;
// begins or ends with a space or holds two in a row; or holds anything but
// letters of any script (with their combining marks), decimal digits,
// spaces and senderPunctuation. So control, format (zero-width, bidi
// override, BOM), private-use and other invisible characters, such as the
// Hangul filler, are refused, and so are emoji: a name is printed on
// statements and compared by people, and an invisible character would make
// two names that look alike differ.
func NormalizeSender(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", Errorf(EINVALID, "sender is not valid UTF-8")
	}
	s = norm.NFC.String(s)
	switch n := utf8.RuneCountInString(s); {
	case n == 0:
		return "", Errorf(EINVALID, "sender must not be empty")
	case n > SenderLengthMax:
		return "", Errorf(EINVALID, "sender is %d characters long; at most %d are allowed", n, SenderLengthMax)
	case s[0] == ' ' || s[len(s)-1] == ' ' || strings.Contains(s, "  "):
		return "", Errorf(EINVALID, "sender must not begin or end with a space or hold two spaces in a row")
	}
	prev, i := rune(-1), 0
	for _, r := range s {
		i++
		switch {
		case invisible(r):
			return "", invisibleError("sender", r, i)
		case !senderRune(prev, r):
			return "", Errorf(EINVALID, "sender may hold letters, digits, single spaces and %s only; %q (%U) at character %d is not one of them",
				strings.Join(strings.Split(senderPunctuation, ""), " "), r, r, i)
		}
		prev = r
	}
	return s, nil
}

// senderRune reports whether r may follow prev (-1 at the start) in a
// depositor's name. A combining mark must follow a letter, digit or mark,
// never stand alone or sit on a space or punctuation.
func senderRune(prev, r rune) bool {
	switch {
	case unicode.IsLetter(r), unicode.Is(unicode.Nd, r), r == ' ', strings.ContainsRune(senderPunctuation, r):
		return true
	case unicode.In(r, unicode.Mn, unicode.Mc):
		return prev >= 0 && (unicode.IsLetter(prev) || unicode.Is(unicode.Nd, prev) || unicode.In(prev, unicode.Mn, unicode.Mc))
	}
	return false
}

// NormalizeMemo returns the customer's memo in NFC, the form that is stored,
// hashed for the transfer's idempotency and published. A memo may be empty
// and may hold any visible text, emoji included; it refuses (EINVALID) one
// that is not valid UTF-8, is longer than MemoLengthMax characters, or holds
// a control, format, private-use, line- or paragraph-separator or other
// invisible character, or U+FFFD (what a JSON decoder makes of broken
// UTF-8). Two invisible characters are part of emoji and allowed there
// only: U+200D (zero-width joiner) between two emoji, as in "🧑‍💻", and a
// variation selector after a visible character, as in "❤️".
func NormalizeMemo(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", Errorf(EINVALID, "memo is not valid UTF-8")
	}
	s = norm.NFC.String(s)
	if n := utf8.RuneCountInString(s); n > MemoLengthMax {
		return "", Errorf(EINVALID, "memo is %d characters long; at most %d are allowed", n, MemoLengthMax)
	}
	rs := []rune(s)
	for i, r := range rs {
		if !invisible(r) {
			continue
		}
		prev, next := rune(-1), rune(-1)
		if i > 0 {
			prev = rs[i-1]
		}
		if i+1 < len(rs) {
			next = rs[i+1]
		}
		if !emojiPart(prev, r, next) {
			return "", invisibleError("memo", r, i+1)
		}
	}
	return s, nil
}

// emojiPart reports whether the invisible r, between prev and next (-1 at
// either end), is part of an emoji: a zero-width joiner from an emoji, its
// skin tone or its variation selector to another emoji, or a variation
// selector choosing how the visible character before it is drawn.
func emojiPart(prev, r, next rune) bool {
	switch {
	case r == '\u200D':
		return prev >= 0 && next >= 0 && (unicode.In(prev, unicode.So, unicode.Sk) || prev == '\uFE0F') && unicode.Is(unicode.So, next)
	case unicode.Is(unicode.Variation_Selector, r):
		return prev >= 0 && unicode.In(prev, unicode.L, unicode.N, unicode.P, unicode.S)
	}
	return false
}

// invisibleError refuses field for the invisible r, its i-th character.
func invisibleError(field string, r rune, i int) error {
	if r == utf8.RuneError {
		// JSON decoders put U+FFFD where a request's UTF-8 was broken.
		return Errorf(EINVALID, "%s holds U+FFFD, the mark of broken UTF-8, at character %d", field, i)
	}
	return Errorf(EINVALID, "%s holds %U, a control or invisible character, at character %d", field, r, i)
}

// invisible reports whether r is a character people cannot see or that
// changes how the text around it reads: controls (C0, DEL, C1), format
// characters (zero-width space and joiners, bidi overrides and isolates,
// BOM, soft hyphen, tags), private use, line and paragraph separators,
// other default-ignorable code points (Hangul fillers, variation
// selectors), noncharacters and U+FFFD.
func invisible(r rune) bool {
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs, unicode.Zl, unicode.Zp,
		unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector) ||
		r == utf8.RuneError || (0xFDD0 <= r && r <= 0xFDEF) || r&0xFFFE == 0xFFFE
}
