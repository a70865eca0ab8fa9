package http

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // statements name their customer's time zone; a container may have no zoneinfo

	"banksync"
)

// HeaderSyncedSeq answers a statement with the seq through which the
// channel's history was in step with core when the statement was read.
const HeaderSyncedSeq = "Banksync-Synced-Through-Seq"

// statementColumns is a statement's header row.
var statementColumns = []string{"seq", "booked_at", "kind", "amount", "balance_after", "counterparty", "memo", "reference"}

// statement streams a statement (거래내역서) of one account as CSV:
// GET /v1/accounts/{id}/statement?from=2026-01-01&to=2026-01-31&tz=Asia/Seoul,
// the days from and to both included, in the time zone tz (UTC unless
// given). The file starts with a UTF-8 byte order mark, which spreadsheet
// programs need to read Korean text as UTF-8.
func (s *ChannelServer) statement(w http.ResponseWriter, r *http.Request) {
	from, to, zone, err := statementRange(r)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	account := r.PathValue("id")
	addLog(r.Context(), LogAccount, account)
	st, err := s.ch.Statement(r.Context(), customerOf(r), account, from, to)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	name := fmt.Sprintf("statement-%s-%s-%s.csv", strings.ReplaceAll(account, ":", "-"),
		from.Format(time.DateOnly), to.AddDate(0, 0, -1).Format(time.DateOnly))
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set(HeaderSyncedSeq, strconv.FormatInt(st.Account.SyncedSeq, 10))
	w.WriteHeader(http.StatusOK)
	w.Write([]byte("\uFEFF"))
	out := csv.NewWriter(w)
	out.Write(statementColumns)
	for e, err := range st.Entries {
		if err != nil {
			// The status is sent: end the response unfinished, so the
			// client sees a failed download, never a short statement.
			if r.Context().Err() == nil { // not the client leaving
				s.log.ErrorContext(r.Context(), "statement failed while streaming", "account", account, "err", err)
			}
			out.Flush()
			panic(http.ErrAbortHandler)
		}
		out.Write(statementRow(e, zone))
	}
	out.Flush()
}

// statementRange reads a statement's from, to and tz, and returns the range
// [first day's start, the day after the last's start) in that zone.
func statementRange(r *http.Request) (from, to time.Time, zone *time.Location, err error) {
	q := r.URL.Query()
	for _, k := range []string{"from", "to", "tz"} {
		if len(q[k]) > 1 {
			return from, to, nil, banksync.Errorf(banksync.EINVALID, "%s may be given once", k)
		}
	}
	zone = time.UTC
	if tz := q.Get("tz"); tz != "" {
		if zone, err = time.LoadLocation(tz); err != nil || tz == "Local" {
			return from, to, nil, banksync.Errorf(banksync.EINVALID, "tz must be a time zone name such as Asia/Seoul")
		}
	}
	day := func(k string) (time.Time, error) {
		t, err := time.ParseInLocation(time.DateOnly, q.Get(k), zone)
		if err != nil {
			return t, banksync.Errorf(banksync.EINVALID, "%s must be a date such as 2026-01-31", k)
		}
		return t, nil
	}
	if from, err = day("from"); err != nil {
		return from, to, nil, err
	}
	if to, err = day("to"); err != nil {
		return from, to, nil, err
	}
	if to.Before(from) {
		return from, to, nil, banksync.Errorf(banksync.EINVALID, "to must not be before from")
	}
	return from, to.AddDate(0, 0, 1), zone, nil
}

// statementRow is one entry as a statement's row, its booking time in zone.
func statementRow(e banksync.Entry, zone *time.Location) []string {
	ref := e.TransferID
	if ref == "" {
		ref = e.ExternalRef
	}
	return []string{strconv.FormatInt(e.Seq, 10), e.BookedAt.In(zone).Format(time.RFC3339), string(e.Kind),
		strconv.FormatInt(e.Amount, 10), strconv.FormatInt(e.BalanceAfter, 10),
		spreadsheetText(e.Counterparty), spreadsheetText(e.Memo), spreadsheetText(ref)}
}

// spreadsheetText keeps a text cell from being read as a formula by a
// spreadsheet program: a depositor's name or a memo comes from outside the
// bank, and one that starts with =, +, -, @, a tab or a carriage return
// gets a leading apostrophe, which spreadsheets show as text.
func spreadsheetText(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
