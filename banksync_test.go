package banksync_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"banksync"
)

// FuzzValidID: ValidID accepts exactly what the documented pattern does —
// 1-64 letters, digits or ._:-, starting with a letter or digit; and every
// id is also a depositor's name, unchanged, as senders were ids before
// names.
func FuzzValidID(f *testing.F) {
	for _, s := range []string{"", "a", "acct-1", "-a", ".a", "a.b_c:d-e", "a b", "ü", "a\n", strings.Repeat("x", 64), strings.Repeat("x", 65), "0", "_x"} {
		f.Add(s)
	}
	pattern := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$`)
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := banksync.ValidID(s), pattern.MatchString(s); got != want {
			t.Fatalf("ValidID(%q) = %v, want %v", s, got, want)
		}
		if name, err := banksync.NormalizeSender(s); banksync.ValidID(s) && (err != nil || name != s) {
			t.Fatalf("id %q as a sender = %q, %v; want it unchanged", s, name, err)
		}
	})
}

// nfd is s in NFD, the form macOS file names and some keyboards give:
// "é" as "e" and U+0301, "김" as three Hangul jamo.
func nfd(s string) string { return norm.NFD.String(s) }

func TestNormalizeSender(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"korean", "김철수", "김철수"},
		{"korean in NFD comes out NFC", nfd("김철수"), "김철수"},
		{"company with parentheses", "(주)토스 급여", "(주)토스 급여"},
		{"bank and name", "KB국민 홍길동", "KB국민 홍길동"},
		{"parenthesised ju", "㈜토스", "㈜토스"},
		{"latin with accents in NFD", nfd("José Müller-Lüdenscheidt"), "José Müller-Lüdenscheidt"},
		{"punctuation", "O’Brien & Sons, Ltd. [UK] / 2+1 · a_b:c'd", "O’Brien & Sons, Ltd. [UK] / 2+1 · a_b:c'd"},
		{"old id-like sender", "kb-bank", "kb-bank"},
		{"longest id", strings.Repeat("x", 64), strings.Repeat("x", 64)},
		{"exactly 64 korean characters", strings.Repeat("김", 64), strings.Repeat("김", 64)},
		{"64 characters once NFC, 192 in NFD", nfd(strings.Repeat("김", 64)), strings.Repeat("김", 64)},
		{"greek, cyrillic, arabic, devanagari", "Αθηνά Ирина محمد देवनागरी", "Αθηνά Ирина محمد देवनागरी"},
		{"digits of another script", "٣ Thai ๓", "٣ Thai ๓"},
		{"one letter", "A", "A"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := banksync.NormalizeSender(tc.in)
			if err != nil || got != tc.want {
				t.Fatalf("NormalizeSender(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name, in, msg string
	}{
		{"empty", "", "must not be empty"},
		{"65 characters", strings.Repeat("x", 65), "65 characters long; at most 64"},
		{"65 korean characters", strings.Repeat("김", 65), "65 characters long; at most 64"},
		{"leading space", " 김철수", "begin or end with a space"},
		{"trailing space", "김철수 ", "begin or end with a space"},
		{"double space", "김 \u0020철수", "two spaces in a row"},
		{"only a space", " ", "begin or end with a space"},
		{"tab", "김\t철수", "U+0009, a control or invisible character, at character 2"},
		{"newline", "김철수\n", "U+000A"},
		{"NUL", "a\x00b", "U+0000"},
		{"DEL", "a\x7fb", "U+007F"},
		{"C1 control", "a\u0085b", "U+0085"},
		{"zero-width space", "김\u200B철수", "U+200B, a control or invisible character, at character 2"},
		{"zero-width joiner", "김\u200D철수", "U+200D"},
		{"BOM", "\uFEFF김철수", "U+FEFF"},
		{"right-to-left override", "kb\u202Eknab", "U+202E"},
		{"right-to-left isolate", "kb\u2067x\u2069", "U+2067"},
		{"left-to-right mark", "\u200Ekb", "U+200E"},
		{"soft hyphen", "kb\u00ADbank", "U+00AD"},
		{"hangul filler", "\u3164", "U+3164"},
		{"halfwidth hangul filler", "김\uFFA0", "U+FFA0"},
		{"private use", "kb\uE000", "U+E000"},
		{"variation selector", "김\uFE0F", "U+FE0F"},
		{"replacement character", "kb\uFFFD", "U+FFFD, the mark of broken UTF-8, at character 3"},
		{"line separator", "kb\u2028bank", "U+2028"},
		{"invalid UTF-8", "kb\xffbank", "not valid UTF-8"},
		{"emoji", "김철수 🎉", `'🎉' (U+1F389) at character 5 is not one of them`},
		{"no-break space", "김\u00A0철수", "U+00A0"},
		{"ideographic space", "김\u3000철수", "U+3000"},
		{"quote", `kb"bank`, `'"' (U+0022)`},
		{"angle bracket", "<script>", "U+003C"},
		{"combining mark alone", "\u0301abc", "U+0301"},
		{"combining mark on a space", "a \u0301b", "U+0301"},
		{"superscript digit", "x²", "U+00B2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := banksync.NormalizeSender(tc.in)
			if err == nil {
				t.Fatalf("NormalizeSender(%q) = %q, want refused", tc.in, got)
			}
			if code, msg := banksync.ErrorCode(err), banksync.ErrorMessage(err); code != banksync.EINVALID || !strings.Contains(msg, tc.msg) {
				t.Fatalf("NormalizeSender(%q) refused with %s %q, want %s with %q", tc.in, code, msg, banksync.EINVALID, tc.msg)
			}
		})
	}
}

func TestNormalizeMemo(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"plain", "lunch", "lunch"},
		{"50 korean characters, 150 bytes", strings.Repeat("점심값", 16) + "감사", strings.Repeat("점심값", 16) + "감사"},
		{"exactly 140 korean characters", strings.Repeat("가", 140), strings.Repeat("가", 140)},
		{"140 characters once NFC, 420 in NFD", nfd(strings.Repeat("가", 140)), strings.Repeat("가", 140)},
		{"latin in NFD comes out NFC", nfd("café crème"), "café crème"},
		{"spaces as typed", "  two  spaces  ", "  two  spaces  "},
		{"no-break and ideographic spaces", "a\u00A0b\u3000c", "a\u00A0b\u3000c"},
		{"emoji", "생일 축하 🎉🎂", "생일 축하 🎉🎂"},
		{"emoji with a variation selector", "❤️ 고마워", "❤️ 고마워"},
		{"emoji joined", "🧑‍💻 월급", "🧑‍💻 월급"},
		{"emoji with skin tone joined", "👩🏽‍💻", "👩🏽‍💻"},
		{"emoji flag of two regional indicators", "🇰🇷", "🇰🇷"},
		{"keycap", "1️⃣", "1️⃣"},
		{"html and quotes", `<b>"rent"</b> & \ 'x'`, `<b>"rent"</b> & \ 'x'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := banksync.NormalizeMemo(tc.in)
			if err != nil || got != tc.want {
				t.Fatalf("NormalizeMemo(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name, in, msg string
	}{
		{"141 characters", strings.Repeat("m", 141), "141 characters long; at most 140"},
		{"141 korean characters", strings.Repeat("가", 141), "141 characters long; at most 140"},
		{"tab", "a\tb", "U+0009, a control or invisible character, at character 2"},
		{"newline", "rent\n", "U+000A"},
		{"NUL", "\x00", "U+0000"},
		{"DEL", "a\x7f", "U+007F"},
		{"C1 control", "a\u009Bb", "U+009B"},
		{"zero-width space", "점\u200B심", "U+200B"},
		{"zero-width joiner between letters", "점\u200D심", "U+200D"},
		{"zero-width joiner at the end", "🧑\u200D", "U+200D"},
		{"zero-width non-joiner", "a\u200Cb", "U+200C"},
		{"BOM", "\uFEFFrent", "U+FEFF"},
		{"right-to-left override", "rent \u202Etxt.exe", "U+202E"},
		{"pop directional isolate", "a\u2069", "U+2069"},
		{"hangul filler", "\u3164\u3164", "U+3164"},
		{"private use", "\uF8FF", "U+F8FF"},
		{"supplementary private use", "\U000F0000", "U+F0000"},
		{"variation selector alone", "\uFE0F", "U+FE0F"},
		{"variation selector after a space", "a \uFE0F", "U+FE0F"},
		{"tag character", "\U0001F3F4\U000E0067\U000E007F", "U+E0067"},
		{"line separator", "a\u2028b", "U+2028"},
		{"paragraph separator", "a\u2029b", "U+2029"},
		{"replacement character", "a\uFFFDb", "U+FFFD, the mark of broken UTF-8, at character 2"},
		{"noncharacter", "a\uFFFEb", "U+FFFE"},
		{"invalid UTF-8", "a\xffb", "not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := banksync.NormalizeMemo(tc.in)
			if err == nil {
				t.Fatalf("NormalizeMemo(%q) = %q, want refused", tc.in, got)
			}
			if code, msg := banksync.ErrorCode(err), banksync.ErrorMessage(err); code != banksync.EINVALID || !strings.Contains(msg, tc.msg) {
				t.Fatalf("NormalizeMemo(%q) refused with %s %q, want %s with %q", tc.in, code, msg, banksync.EINVALID, tc.msg)
			}
		})
	}
}

// textSeeds are names and memos where the rules are easy to get wrong.
var textSeeds = []string{
	"", "김철수", nfd("김철수"), "(주)토스 급여", "KB국민 홍길동", "kb-bank", nfd("José"), "a  b", " a", "a ",
	"김\u200B철수", "kb\u202Eknab", "\uFEFF", "\u3164", "a\tb", "🎉", "🧑‍💻", "❤️", "\u0301a", "a\u0301",
	"\u0958", "\u2000", "Å", "\u212B", strings.Repeat("김", 64), strings.Repeat("김", 65), nfd(strings.Repeat("가", 140)),
	strings.Repeat("가", 141), "a\xffb", "\xed\xa0\x80", "\U000F0000", "a\u2028b",
}

// FuzzNormalizeSender: a name NormalizeSender accepts comes out valid
// UTF-8, in NFC, 1-64 characters, of the allowed characters only, and
// accepted again unchanged; it is accepted as well in any canonically
// equivalent form; and it crosses Kafka unchanged: an event carrying it
// encodes and decodes back to the same name.
func FuzzNormalizeSender(f *testing.F) {
	for _, s := range textSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := banksync.NormalizeSender(s)
		if err != nil {
			if code := banksync.ErrorCode(err); code != banksync.EINVALID {
				t.Fatalf("NormalizeSender(%q) refused with code %s, want %s", s, code, banksync.EINVALID)
			}
			if utf8.ValidString(s) {
				if _, err := banksync.NormalizeSender(norm.NFD.String(s)); err == nil {
					t.Fatalf("NormalizeSender refused %q (%v) but accepts its NFD form", s, err)
				}
			}
			return
		}
		checkAcceptedText(t, "NormalizeSender", s, got, 1, banksync.SenderLengthMax, banksync.NormalizeSender)
		for i, r := range []rune(got) {
			switch {
			case unicode.IsLetter(r), unicode.Is(unicode.Nd, r), unicode.In(r, unicode.Mn, unicode.Mc) && i > 0,
				strings.ContainsRune(" ()[].,-_&'’/:+·㈜", r):
			default:
				t.Fatalf("NormalizeSender(%q) = %q, holding %U", s, got, r)
			}
			if unicode.In(r, unicode.Cf, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector) {
				t.Fatalf("NormalizeSender(%q) = %q, holding the invisible %U", s, got, r)
			}
		}
		if strings.HasPrefix(got, " ") || strings.HasSuffix(got, " ") || strings.Contains(got, "  ") {
			t.Fatalf("NormalizeSender(%q) = %q, with a space first, last or doubled", s, got)
		}
		checkCrossesKafka(t, banksync.Entry{Counterparty: got})
	})
}

// FuzzNormalizeMemo: a memo NormalizeMemo accepts comes out valid UTF-8,
// in NFC, at most 140 characters, free of controls and invisible
// characters (but for those emoji are made of), and accepted again
// unchanged; and an event carrying it crosses Kafka unchanged.
func FuzzNormalizeMemo(f *testing.F) {
	for _, s := range textSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := banksync.NormalizeMemo(s)
		if err != nil {
			if code := banksync.ErrorCode(err); code != banksync.EINVALID {
				t.Fatalf("NormalizeMemo(%q) refused with code %s, want %s", s, code, banksync.EINVALID)
			}
			return
		}
		checkAcceptedText(t, "NormalizeMemo", s, got, 0, banksync.MemoLengthMax, banksync.NormalizeMemo)
		rs := []rune(got)
		for i, r := range rs {
			if unicode.In(r, unicode.Cc, unicode.Co, unicode.Zl, unicode.Zp) || r == utf8.RuneError {
				t.Fatalf("NormalizeMemo(%q) = %q, holding %U", s, got, r)
			}
			emoji := r == '\u200D' && i > 0 && i+1 < len(rs) && unicode.Is(unicode.So, rs[i+1])
			if unicode.Is(unicode.Cf, r) && !emoji {
				t.Fatalf("NormalizeMemo(%q) = %q, holding the invisible %U", s, got, r)
			}
		}
		checkCrossesKafka(t, banksync.Entry{Memo: got, Counterparty: "kb-bank"})
	})
}

// checkAcceptedText fails t unless got, what normalize made of in, is
// valid UTF-8 in NFC of lengthMin-lengthMax characters, accepted again
// unchanged, and what normalize makes of in's NFD form too.
func checkAcceptedText(t *testing.T, fn, in, got string, lengthMin, lengthMax int, normalize func(string) (string, error)) {
	t.Helper()
	if !utf8.ValidString(got) || !norm.NFC.IsNormalString(got) {
		t.Fatalf("%s(%q) = %q: not valid UTF-8 in NFC", fn, in, got)
	}
	if n := utf8.RuneCountInString(got); n < lengthMin || n > lengthMax {
		t.Fatalf("%s(%q) = %q, %d characters, want %d-%d", fn, in, got, n, lengthMin, lengthMax)
	}
	if again, err := normalize(got); err != nil || again != got {
		t.Fatalf("%s(%q) = %q, then %q, %v", fn, in, got, again, err)
	}
	if fromNFD, err := normalize(norm.NFD.String(in)); err != nil || fromNFD != got {
		t.Fatalf("%s(%q) = %q, but of its NFD form %q, %v", fn, in, got, fromNFD, err)
	}
}

// checkCrossesKafka fails t unless an event announcing e, encoded as the
// relay does, decodes to the same counterparty and memo.
func checkCrossesKafka(t *testing.T, e banksync.Entry) {
	t.Helper()
	e.AccountID, e.Seq, e.Position, e.Kind = "a1", 1, 1, banksync.KindDeposit
	value, err := json.Marshal(banksync.EventOf(e))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := banksync.DecodeLedgerEvent(value)
	if err != nil {
		t.Fatalf("event with counterparty %q and memo %q does not decode: %v", e.Counterparty, e.Memo, err)
	}
	if got := ev.Entry(); got.Counterparty != e.Counterparty || got.Memo != e.Memo {
		t.Fatalf("counterparty %q and memo %q crossed Kafka as %q and %q", e.Counterparty, e.Memo, got.Counterparty, got.Memo)
	}
}
