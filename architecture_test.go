package banksync_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// rooms is which of the project's packages each package may import, outside
// its tests: the rules of docs/ARCHITECTURE.md. The domain (ledger,
// channel) and Kafka know only the root; the stores know the domain they
// store; node wires everything; the commands, benchmarks, demo and chaos
// runs build on node.
var rooms = map[string][]string{
	"banksync":                              nil,
	"banksync/ledger":                       {"banksync", "banksync/internal/recent"},
	"banksync/channel":                      {"banksync", "banksync/internal/recent"},
	"banksync/kafka":                        {"banksync"},
	"banksync/sqlite":                       {"banksync", "banksync/channel", "banksync/ledger"},
	"banksync/postgres":                     {"banksync", "banksync/channel", "banksync/ledger"},
	"banksync/metrics":                      {"banksync/channel", "banksync/kafka"},
	"banksync/http":                         {"banksync", "banksync/channel", "banksync/kafka", "banksync/ledger"},
	"banksync/web":                          nil,
	"banksync/node":                         {"banksync", "banksync/channel", "banksync/http", "banksync/kafka", "banksync/ledger", "banksync/metrics", "banksync/postgres", "banksync/sqlite", "banksync/web"},
	"banksync/demo":                         {"banksync", "banksync/channel", "banksync/http", "banksync/kafka", "banksync/ledger", "banksync/node"},
	"banksync/bench":                        {"banksync", "banksync/channel", "banksync/http", "banksync/internal/progress", "banksync/kafka", "banksync/ledger", "banksync/node", "banksync/postgres"},
	"banksync/chaos":                        {"banksync", "banksync/channel", "banksync/http", "banksync/internal/progress", "banksync/kafka", "banksync/ledger", "banksync/node"},
	"banksync/cmd/banksync":                 {"banksync", "banksync/bench", "banksync/channel", "banksync/chaos", "banksync/demo", "banksync/http", "banksync/kafka", "banksync/ledger", "banksync/node"},
	"banksync/deploy":                       nil,
	"banksync/chaos/deployed":               nil, // tests only
	"banksync/storetest":                    {"banksync", "banksync/channel", "banksync/ledger"},
	"banksync/internal/testkit":             nil,
	"banksync/internal/progress":            nil,
	"banksync/internal/recent":              nil,
	"banksync/kafka/kafkatest":              nil,
	"banksync/postgres/pgtest":              {"banksync/postgres"},
	"banksync/scripts/kafka-broker/cluster": {"banksync/kafka/kafkatest"},
}

// TestPackagesKeepToTheirRooms fails when a package imports one of the
// project's packages its room does not allow, or when a package is not in
// the table (a new room needs its rules written down).
func TestPackagesKeepToTheirRooms(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		allowed, known := rooms[pkg]
		if !known {
			t.Errorf("%s is in no room: add it to rooms and to docs/ARCHITECTURE.md", pkg)
			continue
		}
		for _, imp := range imports {
			if (imp == "banksync" || strings.HasPrefix(imp, "banksync/")) && !slices.Contains(allowed, imp) {
				t.Errorf("%s imports %s, which its room does not allow", pkg, imp)
			}
		}
	}
}

// funcLinesMax is the longest a function outside tests may be without its
// doc comment saying why it must be long (the word "long" in it).
const funcLinesMax = 70

// saysWhyLong finds the word "long" (not "belong", "longer") in a doc
// comment.
var saysWhyLong = regexp.MustCompile(`\blong\b`)

// testOnly are the folders that hold test code outside _test.go files, and
// the driver study, a module of its own.
var testOnly = []string{"storetest", "internal/testkit", "postgres/pgtest", "kafka/kafkatest", "chaos/deployed", "bench/sqlitedriver", ".cache", "testdata"}

// TestFunctionsAreShortOrSayWhy fails on a function over funcLinesMax
// lines whose doc comment does not say why it is long.
func TestFunctionsAreShortOrSayWhy(t *testing.T) {
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if slices.Contains(testOnly, path) || strings.HasSuffix(path, "/testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			lines := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1
			if lines > funcLinesMax && !saysWhyLong.MatchString(fn.Doc.Text()) {
				t.Errorf("%s: %s is %d lines (over %d) and its comment does not say why it must be long", fset.Position(fn.Pos()), fn.Name.Name, lines, funcLinesMax)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
