package node

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzSQLitePath feeds --db values. sqlitePath must never panic; a
// sqlite: DSN yields its path, whose directory then exists; a postgres
// DSN yields no path; anything else is refused.
func FuzzSQLitePath(f *testing.F) {
	for _, dsn := range []string{
		"sqlite:data/core.db",
		"sqlite:core.db",
		"sqlite:",
		"sqlite:a/b/../c/ch.db",
		"sqlite:/var/lib/banksync/core.db",
		"sqlite:file:core.db?mode=ro",
		"sqlite:bad\x00name/core.db",
		"SQLITE:core.db",
		"postgres://user:pw@db:5432/core?sslmode=require",
		"postgresql://",
		"mysql://core",
		"",
	} {
		f.Add(dsn)
	}
	f.Fuzz(func(t *testing.T, dsn string) {
		rest, isSQLite := strings.CutPrefix(dsn, "sqlite:")
		if isSQLite && rest != "" && !filepath.IsLocal(rest) {
			// sqlitePath creates the file's directory: only paths inside
			// the test's own directory are tried.
			return
		}
		t.Chdir(t.TempDir())
		path, err := sqlitePath(dsn)
		switch {
		case isSQLite && rest == "":
			if path != "" || err == nil {
				t.Fatalf("sqlitePath(%q) = %q, %v; want an error", dsn, path, err)
			}
		case isSQLite:
			if path != rest {
				t.Fatalf("sqlitePath(%q) = %q, want %q", dsn, path, rest)
			}
			if pathErr := (*fs.PathError)(nil); err != nil && !errors.As(err, &pathErr) {
				t.Fatalf("sqlitePath(%q): %v, want no error or a file system one", dsn, err)
			}
			if fi, statErr := os.Stat(filepath.Dir(path)); err == nil && (statErr != nil || !fi.IsDir()) {
				t.Fatalf("sqlitePath(%q) = %q, but its directory is not there: %v", dsn, path, statErr)
			}
		case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
			if path != "" || err != nil {
				t.Fatalf("sqlitePath(%q) = %q, %v; want no path, no error", dsn, path, err)
			}
		default:
			if path != "" || err == nil {
				t.Fatalf("sqlitePath(%q) = %q, %v; want an error", dsn, path, err)
			}
		}
	})
}
