package mattn_test

import (
	"testing"

	"banksync/bench/sqlitedriver/ledgerbench"

	_ "github.com/mattn/go-sqlite3" // registers "sqlite3"; cgo
)

func TestInfo(t *testing.T) { ledgerbench.Info(t, "sqlite3") }

func BenchmarkLedger(b *testing.B) { ledgerbench.Run(b, "sqlite3") }
