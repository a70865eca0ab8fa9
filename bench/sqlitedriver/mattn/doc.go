// Package mattn benchmarks the ledger workload on github.com/mattn/go-sqlite3 (cgo, the C amalgamation), a reference point.
package mattn
