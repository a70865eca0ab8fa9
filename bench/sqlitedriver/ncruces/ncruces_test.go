package ncruces_test

import (
	"testing"

	"banksync/bench/sqlitedriver/ledgerbench"

	_ "github.com/ncruces/go-sqlite3/driver" // registers "sqlite3"
)

func TestInfo(t *testing.T) { ledgerbench.Info(t, "sqlite3") }

func BenchmarkLedger(b *testing.B) { ledgerbench.Run(b, "sqlite3") }
