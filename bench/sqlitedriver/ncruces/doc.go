// Package ncruces benchmarks the ledger workload on github.com/ncruces/go-sqlite3 (SQLite built to Wasm, translated to Go by wasm2go).
package ncruces
