package modernc_test

import (
	"testing"

	"banksync/bench/sqlitedriver/ledgerbench"

	_ "modernc.org/sqlite" // registers "sqlite"
)

func TestInfo(t *testing.T) { ledgerbench.Info(t, "sqlite") }

func BenchmarkLedger(b *testing.B) { ledgerbench.Run(b, "sqlite") }
