// Package modernc benchmarks the ledger workload on modernc.org/sqlite (SQLite transpiled from C to Go).
package modernc
