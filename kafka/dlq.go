package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"banksync"
)

// ReplayGroup is the consumer group whose committed offsets on the
// dead-letter topic, with the replay mark committed beside them, record
// what has been replayed.
const ReplayGroup = "banksync-dlq-replay"

// Limits of a replay.
const (
	// replayAttemptsMax bounds the tries of one dead letter in one replay,
	// replayBackoff × the try number apart.
	replayAttemptsMax = 3
	replayBackoff     = 100 * time.Millisecond
	// replayFailuresInARowMax ends a replay: that many letters failing one
	// after another (letters not held before) means the history database
	// or core is down, and trying every letter behind them would only take
	// longer to fail.
	replayFailuresInARowMax = 3
	// replayHeldMax bounds, per partition, the letters a replay passed
	// over or could not apply that it remembers so as to move on past
	// them. It keeps the mark within the broker's limit on commit
	// metadata (offset.metadata.max.bytes, 4 KiB by default).
	replayHeldMax = 64
	// replayBatchTimeout bounds the one transaction a batch of letters
	// goes in, and replayLetterTimeout each try of one letter, so a
	// history database that hangs delays a replay, never freezes it.
	replayBatchTimeout  = 30 * time.Second
	replayLetterTimeout = 10 * time.Second
	// replayCommitTimeout bounds recording how far a replay got.
	replayCommitTimeout = 10 * time.Second
)

// Letter states, as listed.
const (
	LetterWaiting  = "waiting"  // not replayed yet
	LetterHeld     = "held"     // a replay tried it and could not apply it (or passed it over): it is tried again
	LetterReplayed = "replayed" // applied by a replay
	LetterParked   = "parked"   // cannot be decoded: its account, if its key names one, was synced from core instead
)

// DeadLetter is a record of the dead-letter topic.
type DeadLetter struct {
	Event banksync.LedgerEvent // zero when Undecodable is set
	// Undecodable says why the value is not a ledger event this version
	// reads (a newer schema, a broken record); "" for a good letter.
	Undecodable   string
	Key           string // the record's key: the account, for a letter the consumer wrote
	Headers       []kgo.RecordHeader
	Reason        string
	Attempts      int
	FromPartition int32 // where it was in the ledger topic
	FromOffset    int64
	At            time.Time // when it was dead-lettered
	Partition     int32     // where it is in the dead-letter topic
	Offset        int64
	State         string // LetterWaiting, LetterHeld, LetterReplayed or LetterParked
}

// Account is the account the letter is of: its event's, or for a letter
// that cannot be decoded, its key when that is a valid account id.
func (d DeadLetter) Account() string {
	if d.Undecodable == "" {
		return d.Event.AccountID
	}
	if banksync.ValidID(d.Key) {
		return d.Key
	}
	return ""
}

// deadLetterOf reads a record of the dead-letter topic by the consumer's
// rule (decode). It never fails: a value that is no ledger event of the
// record's key gives a letter with Undecodable set, so listing and replay
// go on past it.
func deadLetterOf(r *kgo.Record) DeadLetter {
	d := DeadLetter{Key: string(r.Key), Headers: r.Headers, Partition: r.Partition, Offset: r.Offset}
	ev, err := decode(r)
	if err != nil {
		d.Undecodable = err.Error()
	} else {
		d.Event = ev
	}
	for _, h := range r.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderDLQReason:
			d.Reason = v
		case HeaderDLQAttempts:
			d.Attempts, _ = strconv.Atoi(v)
		case HeaderDLQPartition:
			p, _ := strconv.ParseInt(v, 10, 32)
			d.FromPartition = int32(p)
		case HeaderDLQOffset:
			d.FromOffset, _ = strconv.ParseInt(v, 10, 64)
		case HeaderDLQAt:
			d.At, _ = time.Parse(time.RFC3339Nano, v)
		}
	}
	return d
}

// replayMark is how far ReplayGroup has replayed one partition of the
// dead-letter topic, committed as the metadata of its offset. Every letter
// below Through was tried and is done with (applied or parked) unless it is
// in Held; the committed offset is the first held letter, or Through. So
// one letter that cannot be applied holds back neither the letters behind
// it nor the commit of their progress, and a reader of the group's offsets
// alone (a stock Kafka tool) still sees a safe place to start again.
type replayMark struct {
	Through int64   `json:"through"`
	Held    []int64 `json:"held,omitempty"` // ascending, all below Through
	Parked  int64   `json:"parked"`         // letters below Through parked, counted for the depth
}

// commitAt is the offset the mark commits: its first held letter, else Through.
func (m replayMark) commitAt() int64 {
	if len(m.Held) > 0 {
		return m.Held[0]
	}
	return m.Through
}

// equal tells whether two marks say the same.
func (m replayMark) equal(o replayMark) bool {
	return m.Through == o.Through && m.Parked == o.Parked && slices.Equal(m.Held, o.Held)
}

// done tells whether the letter at offset has been dealt with.
func (m replayMark) done(offset int64) bool {
	return offset < m.Through && !slices.Contains(m.Held, offset)
}

// markOf reads a mark from a committed offset. A commit without one (made
// by an older version, or a stock tool moving the group) means every
// letter below it is done.
func markOf(o kadm.OffsetResponse) replayMark {
	var m replayMark
	ok := o.Metadata != "" && json.Unmarshal([]byte(o.Metadata), &m) == nil && m.commitAt() == o.At &&
		m.Parked >= 0 && slices.IsSorted(m.Held) && (len(m.Held) == 0 || m.Held[len(m.Held)-1] < m.Through)
	if ok {
		return m
	}
	return replayMark{Through: max(0, o.At)}
}

// deadLettersReadMax bounds what ReadDeadLetters returns: the newest
// letters of each partition.
const deadLettersReadMax = 1000

// ReadDeadLetters returns the records of the dead-letter topic, up to its
// end when called — at most the newest deadLettersReadMax of each
// partition — each with its state. A letter that cannot be decoded is
// listed like any other, with why.
func ReadDeadLetters(ctx context.Context, conn Conn, topic string) ([]DeadLetter, error) {
	var letters []DeadLetter
	var marks map[int32]replayMark
	err := scanDeadLetters(ctx, conn, topic, false, func(m map[int32]replayMark) { marks = m },
		func(recs []*kgo.Record, _ []bool) []letterOutcome {
			for _, r := range recs {
				letters = append(letters, deadLetterOf(r))
			}
			return make([]letterOutcome, len(recs)) // letterDone
		})
	for i, d := range letters {
		m := marks[d.Partition]
		switch {
		case !m.done(d.Offset) && d.Offset < m.Through:
			letters[i].State = LetterHeld
		case !m.done(d.Offset):
			letters[i].State = LetterWaiting
		case d.Undecodable != "":
			letters[i].State = LetterParked
		default:
			letters[i].State = LetterReplayed
		}
	}
	return letters, err
}

// Syncer is the sync engine as the dead-letter replay drives it.
type Syncer interface {
	Applier
	// SyncAccount brings an account's history up to core's head: the
	// repair of a letter that cannot be decoded.
	SyncAccount(ctx context.Context, account string) error
}

// ReplayResult says what a replay did.
type ReplayResult struct {
	Applied int // letters whose entry the sync engine applied
	Parked  int // letters that cannot be decoded, moved past (their account synced from core)
	Held    int // letters that still failed: a later replay tries them again
	Skipped int // letters of other accounts, passed over: held for a later replay too
}

// ReplayDeadLetters re-applies, through the sync engine, the dead letters
// not yet replayed — every one (match nil) or those whose event match
// accepts — in dead-letter order, and commits how far it got. A letter
// that cannot be decoded is parked: its account (when its key names one)
// is synced from core, and the replay moves past it. A letter that still
// fails, or that match passes over, is held: the replay goes on with the
// letters behind it and a later one tries it again. The replay ends early,
// with an error, when replayFailuresInARowMax letters fail in a row (the
// history database or core is down); what it did is committed all the
// same. Re-applying is harmless: the sync engine skips what it has. Each
// letter applied or parked is logged once to log (nil: not logged).
func ReplayDeadLetters(ctx context.Context, conn Conn, topic string, match func(banksync.LedgerEvent) bool, sync Syncer, log *slog.Logger) (ReplayResult, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var res ReplayResult
	var last error
	inARow := 0
	err := scanDeadLetters(ctx, conn, topic, true, nil, func(recs []*kgo.Record, held []bool) []letterOutcome {
		letters := make([]DeadLetter, len(recs))
		skipped := make([]bool, len(recs)) // another account's, for an account's replay
		for i, r := range recs {
			letters[i] = deadLetterOf(r)
			skipped[i] = match != nil && (letters[i].Undecodable != "" || !match(letters[i].Event))
		}
		applied := applyTogether(ctx, letters, skipped, sync)
		outs := make([]letterOutcome, len(recs))
		for i, d := range letters {
			switch {
			case inARow >= replayFailuresInARowMax:
				outs[i] = letterStop
				continue
			case skipped[i]:
				res.Skipped++
				outs[i] = letterHeld
				continue
			case !applied[i]:
				// A held letter gets one try a replay, and its failure says
				// nothing new about the history database: one that always
				// fails must not end every replay before the letters
				// behind it.
				attempts := replayAttemptsMax
				if held[i] {
					attempts = 1
				}
				if err := replayLetter(ctx, d, sync, attempts); err != nil {
					last = err
					if !held[i] {
						inARow++
					}
					res.Held++
					outs[i] = letterHeld
					log.WarnContext(ctx, "dead letter not replayed; held for the next replay", "account", d.Account(),
						"seq", d.Event.Seq, "dlq_partition", d.Partition, "dlq_offset", d.Offset, "err", err)
					continue
				}
			}
			inARow = 0
			if d.Undecodable != "" {
				res.Parked++
				outs[i] = letterParked
				log.WarnContext(ctx, "dead letter parked: it cannot be decoded", "account", d.Account(), "key", d.Key,
					"dlq_partition", d.Partition, "dlq_offset", d.Offset, "undecodable", d.Undecodable, "reason", d.Reason)
				continue
			}
			res.Applied++
			log.InfoContext(ctx, "dead letter replayed", "account", d.Event.AccountID, "seq", d.Event.Seq,
				"dlq_partition", d.Partition, "dlq_offset", d.Offset, "reason", d.Reason)
		}
		return outs
	})
	if err == nil && inARow >= replayFailuresInARowMax {
		err = fmt.Errorf("replay stopped after %d letters failed in a row: %w", inARow, last)
	}
	return res, err
}

// applyTogether applies the entries of the letters not skipped in one
// ApplyBatch, the consumer's group-committed path, so a backlog of
// thousands of letters after an outage is a few transactions, not
// thousands; applied[i] tells whether letter i's entry is in. What did not
// go in is then tried letter by letter, with retries. During an outage the
// batch fails at once, so it costs little to try.
func applyTogether(ctx context.Context, letters []DeadLetter, skipped []bool, sync Syncer) (applied []bool) {
	applied = make([]bool, len(letters))
	var accounts []string
	groups := map[string][]int{} // account -> its letters, in order
	for i, d := range letters {
		if d.Undecodable != "" || skipped[i] {
			continue
		}
		a := d.Event.AccountID
		if groups[a] == nil {
			accounts = append(accounts, a)
		}
		groups[a] = append(groups[a], i)
	}
	if len(accounts) == 0 {
		return applied
	}
	entries := make([][]banksync.Entry, len(accounts))
	for j, a := range accounts {
		for _, i := range groups[a] {
			entries[j] = append(entries[j], letters[i].Event.Entry())
		}
	}
	bctx, cancel := context.WithTimeout(ctx, replayBatchTimeout)
	defer cancel()
	for j, err := range sync.ApplyBatch(bctx, entries) {
		if err == nil {
			for _, i := range groups[accounts[j]] {
				applied[i] = true
			}
		}
	}
	return applied
}

// replayLetter applies a letter's entry, or for a letter that cannot be
// decoded syncs its account from core, trying up to attempts times.
func replayLetter(ctx context.Context, d DeadLetter, sync Syncer, attempts int) error {
	for attempt := 1; ; attempt++ {
		var err error
		actx, cancel := context.WithTimeout(ctx, replayLetterTimeout)
		switch account := d.Account(); {
		case d.Undecodable == "":
			err = applyOne(actx, sync, d.Event.Entry())
		case account != "":
			err = sync.SyncAccount(actx, account)
		}
		cancel()
		if err == nil {
			return nil
		}
		if attempt >= attempts || ctx.Err() != nil {
			return fmt.Errorf("replay %s seq %d: %w", d.Account(), d.Event.Seq, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt) * replayBackoff):
		}
	}
}

// letterOutcome is what a scan's visitor did with a letter.
type letterOutcome int

const (
	letterDone   letterOutcome = iota // applied (or only read)
	letterParked                      // moved past without applying
	letterHeld                        // not done: to be tried again
	letterStop                        // not looked at: the scan ends here, before this letter
)

// scanDeadLetters calls visit with the records of topic, a partition's
// run at a time, in offset order, up to the end
// offsets as of the call: from the start (the newest deadLettersReadMax of
// each partition) or, replaying, from ReplayGroup's marks, skipping
// letters done. Replaying, it then commits the marks the outcomes give,
// also when it stops early or at an error. onMarks, if set, is given the
// marks read.
func scanDeadLetters(ctx context.Context, conn Conn, topic string, replay bool, onMarks func(map[int32]replayMark), visit func(recs []*kgo.Record, held []bool) []letterOutcome) (err error) {
	admCl, err := conn.NewClient()
	if err != nil {
		return err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	firsts, ends, marks, err := replayPositions(ctx, adm, topic)
	if err != nil {
		return err
	}
	if onMarks != nil {
		onMarks(marks)
	}
	from := map[int32]kgo.Offset{}
	scans := map[int32]*markScan{}
	for p, end := range ends {
		start := max(firsts[p], end-deadLettersReadMax)
		if replay {
			start = marks[p].commitAt()
			scans[p] = newMarkScan(marks[p])
		}
		if start < end {
			from[p] = kgo.NewOffset().At(start)
		}
	}
	if len(from) == 0 {
		return nil
	}
	if replay {
		defer func() {
			offsets := kadm.Offsets{}
			for p, sc := range scans {
				if next := sc.finish(); !next.equal(marks[p]) {
					meta, _ := json.Marshal(next)
					offsets.Add(kadm.Offset{Topic: topic, Partition: p, At: next.commitAt(), LeaderEpoch: -1, Metadata: string(meta)})
				}
			}
			if len(offsets) > 0 {
				// Also when ctx ended: what the replay did is recorded.
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), replayCommitTimeout)
				defer cancel()
				cerr := whileCoordinatorMoves(cctx, func() error {
					resp, err := adm.CommitOffsets(cctx, ReplayGroup, offsets)
					if err == nil {
						err = resp.Error()
					}
					return err
				})
				if cerr != nil && err == nil {
					err = fmt.Errorf("commit replayed offsets: %w", cerr)
				}
			}
		}()
	}
	cl, err := conn.NewClient(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}))
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(from) > 0 {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ferr error
		fetches.EachError(func(_ string, p int32, err error) { ferr = fmt.Errorf("fetch %s/%d: %w", topic, p, err) })
		if ferr != nil {
			return ferr
		}
		stop := false
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if stop {
				return
			}
			p := fp.Partition
			var recs []*kgo.Record
			var held []bool // the record is a held letter, tried before
			for _, r := range fp.Records {
				if _, open := from[p]; !open || r.Offset >= ends[p] {
					break
				}
				if r.Offset+1 >= ends[p] {
					delete(from, p)
				}
				if sc := scans[p]; sc == nil || !sc.read.done(r.Offset) {
					recs = append(recs, r)
					held = append(held, sc != nil && r.Offset < sc.read.Through)
				}
			}
			if len(recs) == 0 {
				return
			}
			for i, out := range visit(recs, held) {
				if out == letterStop {
					stop = true
					return
				}
				if sc := scans[p]; sc != nil {
					sc.record(recs[i].Offset, out)
				}
			}
		})
		if stop {
			return nil
		}
	}
	return nil
}

// markScan builds a partition's next mark from the outcomes of a replay,
// letter by letter in offset order.
type markScan struct {
	read   replayMark // as committed when the replay began
	next   replayMark
	tried  int64 // the offset after the last letter recorded
	frozen bool  // Held is full: Through moves no further this replay
}

func newMarkScan(m replayMark) *markScan {
	return &markScan{read: m, next: replayMark{Through: m.Through, Parked: m.Parked}, tried: m.commitAt()}
}

// record notes the outcome of the letter at offset, one the read mark does
// not count as done.
func (s *markScan) record(offset int64, out letterOutcome) {
	s.tried = offset + 1
	if offset < s.read.Through {
		// A held letter tried again: it is still held, or done now.
		switch out {
		case letterHeld:
			s.next.Held = append(s.next.Held, offset)
		case letterParked:
			s.next.Parked++
		}
		return
	}
	if s.frozen {
		return // a later replay tries it again
	}
	if out == letterHeld {
		if len(s.next.Held) >= replayHeldMax {
			s.frozen = true
			return
		}
		s.next.Held = append(s.next.Held, offset)
	}
	if out == letterParked {
		s.next.Parked++
	}
	s.next.Through = offset + 1
}

// finish returns the next mark: held letters of the read mark the replay
// did not reach are still held.
func (s *markScan) finish() replayMark {
	next := s.next
	for _, o := range s.read.Held {
		if o >= s.tried {
			next.Held = append(next.Held, o)
		}
	}
	slices.Sort(next.Held)
	return next
}

// DeadLetterDepth counts the dead letters that need an operator or a
// replay: those not yet replayed (waiting or held) and those parked.
func DeadLetterDepth(ctx context.Context, conn Conn, topic string) (Depth, error) {
	cl, err := conn.NewClient()
	if err != nil {
		return Depth{}, err
	}
	defer cl.Close()
	_, ends, marks, err := replayPositions(ctx, kadm.NewClient(cl), topic)
	if err != nil {
		return Depth{}, err
	}
	var d Depth
	for p, end := range ends {
		m := marks[p]
		d.Waiting += max(0, end-m.Through) + int64(len(m.Held))
		d.Parked += m.Parked
	}
	return d, nil
}

// Depth is how many dead letters are not replayed (Waiting, held ones
// included) and how many are parked.
type Depth struct {
	Waiting, Parked int64
}

// Total is every letter an operator may have to look at.
func (d Depth) Total() int64 { return d.Waiting + d.Parked }

// replayPositions reads, per partition of topic, the offsets its letters
// span — from the log start (letters below it are gone: retention deleted
// them) to the end — and ReplayGroup's mark (the zero mark when it never
// committed), with what retention deleted taken out: a mark's held
// letters below the log start can no longer be replayed, and its Through
// is at least the log start, so neither a replay nor the depth waits for
// letters that are not there.
func replayPositions(ctx context.Context, adm *kadm.Client, topic string) (starts, ends map[int32]int64, marks map[int32]replayMark, err error) {
	listed, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	first, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = first.Error()
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	starts, ends, marks = map[int32]int64{}, map[int32]int64{}, map[int32]replayMark{}
	listed.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	first.Each(func(o kadm.ListedOffset) { starts[o.Partition] = max(0, o.Offset) })
	var committed kadm.OffsetResponses
	err = whileCoordinatorMoves(ctx, func() (err error) {
		committed, err = adm.FetchOffsets(ctx, ReplayGroup)
		return err
	})
	if errors.Is(err, kerr.GroupIDNotFound) {
		err = nil // never committed: nothing replayed yet
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("replayed offsets of %s: %w", topic, err)
	}
	for p := range ends {
		var m replayMark
		if o, ok := committed.Lookup(topic, p); ok && o.Err == nil && o.At >= 0 {
			m = markOf(o)
		}
		marks[p] = m.after(starts[p])
	}
	return starts, ends, marks, nil
}

// after is the mark with the letters below start gone: held ones dropped,
// Through at least start.
func (m replayMark) after(start int64) replayMark {
	if m.Through >= start && (len(m.Held) == 0 || m.Held[0] >= start) {
		return m
	}
	kept := []int64(nil)
	for _, o := range m.Held {
		if o >= start {
			kept = append(kept, o)
		}
	}
	return replayMark{Through: max(m.Through, start), Held: kept, Parked: m.Parked}
}

// coordinatorRetryBackoff spaces the tries of a group request while the
// group's coordinator is loading or moving (a broker restarted, the
// offsets topic still being created on a new cluster): errors Kafka says
// are retriable and that pass within a few seconds.
const coordinatorRetryBackoff = 250 * time.Millisecond

// whileCoordinatorMoves runs fn until it succeeds, fails for good, or ctx
// ends, retrying the errors Kafka marks retriable.
func whileCoordinatorMoves(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		var ke *kerr.Error
		if err == nil || !errors.As(err, &ke) || !ke.Retriable {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(coordinatorRetryBackoff):
		}
	}
}
