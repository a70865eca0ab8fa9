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

// DeadLetters is the dead-letter topic as the operator's tools and the
// repair list, replay and count it. It keeps one client for its lifetime
// for the topic's offsets and ReplayGroup's marks, so the repair's look
// every few seconds, the depth gauge and the admin API reuse its
// connections rather than dialling the cluster, TLS and SASL included, on
// every call. That client joins no group and holds no position: a mark or
// an offset is read afresh on each call, and only the topic's partition
// map is cached (for kgo's MetadataMinAge, refreshed when a leader moves).
// A DeadLetters is safe for concurrent use: a channel replica's repair,
// admin API and depth gauge share one.
type DeadLetters struct {
	conn  Conn
	topic string
	opts  []kgo.Opt // the caller's for every client it makes; clipped, so appending copies
	adm   *kadm.Client
}

// DLQTopicOf is the dead-letter topic beside a ledger topic: the default
// pair's, banksync.TopicLedgerEntriesDLQ, for "" and the default topic,
// else topic+".dlq". The publisher creates it and the consumer writes to
// it unless told another.
func DLQTopicOf(topic string) string {
	if topic == "" || topic == banksync.TopicLedgerEntries {
		return banksync.TopicLedgerEntriesDLQ
	}
	return topic + ".dlq"
}

// NewDeadLetters is the dead-letter topic named (banksync.TopicLedgerEntriesDLQ
// when topic is "") on the cluster conn reaches. opts are added to every
// client it makes (a client id, a logger, hooks for metrics); what a
// client reads and from where is its own. Close it when done with it.
func NewDeadLetters(conn Conn, topic string, opts ...kgo.Opt) (*DeadLetters, error) {
	if topic == "" {
		topic = banksync.TopicLedgerEntriesDLQ
	}
	opts = slices.Clip(slices.Clone(opts))
	cl, err := conn.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("client for %s on %s: %w", topic, conn, err)
	}
	return &DeadLetters{conn: conn, topic: topic, opts: opts, adm: kadm.NewClient(cl)}, nil
}

// Topic is the dead-letter topic's name.
func (q *DeadLetters) Topic() string { return q.topic }

// Close closes the client; a call still running fails.
func (q *DeadLetters) Close() { q.adm.Close() }

// deadLettersReadMax bounds what List returns: the newest letters of each
// partition.
const deadLettersReadMax = 1000

// List returns the records of the dead-letter topic, up to its end when
// called — at most the newest deadLettersReadMax of each partition — each
// with its state. A letter that cannot be decoded is listed like any
// other, with why.
func (q *DeadLetters) List(ctx context.Context) ([]DeadLetter, error) {
	starts, ends, marks, err := q.positions(ctx)
	if err != nil {
		return nil, err
	}
	from := map[int32]int64{}
	for p, end := range ends {
		if start := max(starts[p], end-deadLettersReadMax); start < end {
			from[p] = start
		}
	}
	letters, err := q.read(ctx, from, ends)
	for i, d := range letters {
		letters[i].State = marks[d.Partition].stateOf(d)
	}
	return letters, err
}

// read returns the letters from each partition's offset in from up to its
// end in ends; on an error, with those read before it.
func (q *DeadLetters) read(ctx context.Context, from, ends map[int32]int64) ([]DeadLetter, error) {
	if len(from) == 0 {
		return nil, nil
	}
	rd, err := q.newReader(from, ends)
	if err != nil {
		return nil, err
	}
	defer rd.close()
	var letters []DeadLetter
	for {
		recs, err := rd.next(ctx)
		if err != nil || recs == nil {
			return letters, err
		}
		for _, r := range recs {
			letters = append(letters, deadLetterOf(r))
		}
	}
}

// stateOf is the state m gives a letter of its partition.
func (m replayMark) stateOf(d DeadLetter) string {
	switch {
	case !m.done(d.Offset) && d.Offset < m.Through:
		return LetterHeld
	case !m.done(d.Offset):
		return LetterWaiting
	case d.Undecodable != "":
		return LetterParked
	}
	return LetterReplayed
}

// Depth counts the dead letters that need an operator or a replay: those
// not yet replayed (waiting or held) and those parked.
func (q *DeadLetters) Depth(ctx context.Context) (Depth, error) {
	_, ends, marks, err := q.positions(ctx)
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

// positions reads, per partition of the topic, the offsets its letters
// span — from the log start (letters below it are gone: retention deleted
// them) to the end — and ReplayGroup's mark (the zero mark when it never
// committed), with what retention deleted taken out: a mark's held
// letters below the log start can no longer be replayed, and its Through
// is at least the log start, so neither a replay nor the depth waits for
// letters that are not there.
func (q *DeadLetters) positions(ctx context.Context) (starts, ends map[int32]int64, marks map[int32]replayMark, err error) {
	listed, err := q.adm.ListEndOffsets(ctx, q.topic)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("end offsets of %s: %w", q.topic, err)
	}
	first, err := q.adm.ListStartOffsets(ctx, q.topic)
	if err == nil {
		err = first.Error()
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("start offsets of %s: %w", q.topic, err)
	}
	starts, ends, marks = map[int32]int64{}, map[int32]int64{}, map[int32]replayMark{}
	listed.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	first.Each(func(o kadm.ListedOffset) { starts[o.Partition] = max(0, o.Offset) })
	var committed kadm.OffsetResponses
	err = whileCoordinatorMoves(ctx, func() (err error) {
		committed, err = q.adm.FetchOffsets(ctx, ReplayGroup)
		return err
	})
	if errors.Is(err, kerr.GroupIDNotFound) {
		err = nil // never committed: nothing replayed yet
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("replayed offsets of %s: %w", q.topic, err)
	}
	for p := range ends {
		var m replayMark
		if o, ok := committed.Lookup(q.topic, p); ok && o.Err == nil && o.At >= 0 {
			m = markOf(o)
		}
		marks[p] = m.after(starts[p])
	}
	return starts, ends, marks, nil
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

// Replay re-applies, through the sync engine, the dead letters not yet
// replayed — every one (match nil) or those whose event match accepts —
// in dead-letter order, and commits how far it got. A letter that cannot
// be decoded is parked: its account (when its key names one) is synced
// from core, and the replay moves past it. A letter that still fails, or
// that match passes over, is held: the replay goes on with the letters
// behind it and a later one tries it again. The replay ends early, with an
// error, when replayFailuresInARowMax letters fail in a row (the history
// database or core is down); what it did is committed all the same.
// Re-applying is harmless: the sync engine skips what it has. Each letter
// applied or parked is logged once to log (nil: not logged).
func (q *DeadLetters) Replay(ctx context.Context, match func(banksync.LedgerEvent) bool, sync Syncer, log *slog.Logger) (ReplayResult, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rp := &replay{match: match, sync: sync, log: log}
	err := q.replayFromMarks(ctx, rp)
	if err == nil && rp.inARow >= replayFailuresInARowMax {
		err = fmt.Errorf("replay stopped after %d letters failed in a row: %w", rp.inARow, rp.last)
	}
	return rp.res, err
}

// replayFromMarks gives rp the letters ReplayGroup's marks do not count as
// done, a partition's run at a time in offset order, up to the topic's end
// as of the call, until rp stops. It then commits the marks rp's outcomes
// give — also when rp stopped early, ctx ended or a fetch failed, so what
// the replay did is recorded.
func (q *DeadLetters) replayFromMarks(ctx context.Context, rp *replay) (err error) {
	_, ends, marks, err := q.positions(ctx)
	if err != nil {
		return err
	}
	from := map[int32]int64{}
	scans := map[int32]*markScan{}
	for p, end := range ends {
		scans[p] = newMarkScan(marks[p])
		if start := marks[p].commitAt(); start < end {
			from[p] = start
		}
	}
	if len(from) == 0 {
		return nil
	}
	defer func() {
		if cerr := q.commitMarks(ctx, scans); cerr != nil && err == nil {
			err = fmt.Errorf("commit replayed offsets: %w", cerr)
		}
	}()
	rd, err := q.newReader(from, ends)
	if err != nil {
		return err
	}
	defer rd.close()
	for {
		recs, rerr := rd.next(ctx)
		if rerr != nil || recs == nil {
			return rerr
		}
		sc := scans[recs[0].Partition]
		var todo []*kgo.Record
		var held []bool // the letter is held: a replay tried it before
		for _, r := range recs {
			if !sc.read.done(r.Offset) {
				todo = append(todo, r)
				held = append(held, r.Offset < sc.read.Through)
			}
		}
		if len(todo) == 0 {
			continue
		}
		for i, out := range rp.letters(ctx, todo, held) {
			if out == letterStop {
				return nil
			}
			sc.record(todo[i].Offset, out)
		}
	}
}

// commitMarks commits, as ReplayGroup's offsets, the next mark of each
// partition whose mark changed. It does so also when ctx has ended: what a
// replay did is recorded.
func (q *DeadLetters) commitMarks(ctx context.Context, scans map[int32]*markScan) error {
	offsets := kadm.Offsets{}
	for p, sc := range scans {
		if next := sc.finish(); !next.equal(sc.read) {
			meta, _ := json.Marshal(next)
			offsets.Add(kadm.Offset{Topic: q.topic, Partition: p, At: next.commitAt(), LeaderEpoch: -1, Metadata: string(meta)})
		}
	}
	if len(offsets) == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), replayCommitTimeout)
	defer cancel()
	return whileCoordinatorMoves(cctx, func() error {
		resp, err := q.adm.CommitOffsets(cctx, ReplayGroup, offsets)
		if err == nil {
			err = resp.Error()
		}
		return err
	})
}

// replay is one replay: what it is to apply, through what, and what it
// has done so far.
type replay struct {
	match func(banksync.LedgerEvent) bool // nil: every letter
	sync  Syncer
	log   *slog.Logger

	res    ReplayResult
	inARow int   // letters not held before that failed one after another
	last   error // the latest letter's failure
}

// letters replays a run of one partition's letters, in offset order
// (held[i]: letter i was held by an earlier replay), and returns what it
// did with each; letterStop, for the letters after replayFailuresInARowMax
// failed in a row, means it did not look at them.
func (rp *replay) letters(ctx context.Context, recs []*kgo.Record, held []bool) []letterOutcome {
	letters := make([]DeadLetter, len(recs))
	skipped := make([]bool, len(recs)) // another account's, for an account's replay
	for i, r := range recs {
		letters[i] = deadLetterOf(r)
		skipped[i] = rp.match != nil && (letters[i].Undecodable != "" || !rp.match(letters[i].Event))
	}
	applied := applyTogether(ctx, letters, skipped, rp.sync)
	outs := make([]letterOutcome, len(recs))
	for i, d := range letters {
		switch {
		case rp.inARow >= replayFailuresInARowMax:
			outs[i] = letterStop
			continue
		case skipped[i]:
			rp.res.Skipped++
			outs[i] = letterHeld
			continue
		case !applied[i]:
			// A held letter gets one try a replay, and its failure says
			// nothing new about the history database: one that always
			// fails must not end every replay before the letters behind
			// it.
			attempts := replayAttemptsMax
			if held[i] {
				attempts = 1
			}
			if err := replayLetter(ctx, d, rp.sync, attempts); err != nil {
				rp.last = err
				if !held[i] {
					rp.inARow++
				}
				rp.res.Held++
				outs[i] = letterHeld
				rp.log.WarnContext(ctx, "dead letter not replayed; held for the next replay", "account", d.Account(),
					"seq", d.Event.Seq, "dlq_partition", d.Partition, "dlq_offset", d.Offset, "err", err)
				continue
			}
		}
		rp.inARow = 0
		outs[i] = rp.done(ctx, d)
	}
	return outs
}

// done counts and logs a letter the replay applied or parked.
func (rp *replay) done(ctx context.Context, d DeadLetter) letterOutcome {
	if d.Undecodable != "" {
		rp.res.Parked++
		rp.log.WarnContext(ctx, "dead letter parked: it cannot be decoded", "account", d.Account(), "key", d.Key,
			"dlq_partition", d.Partition, "dlq_offset", d.Offset, "undecodable", d.Undecodable, "reason", d.Reason)
		return letterParked
	}
	rp.res.Applied++
	rp.log.InfoContext(ctx, "dead letter replayed", "account", d.Event.AccountID, "seq", d.Event.Seq,
		"dlq_partition", d.Partition, "dlq_offset", d.Offset, "reason", d.Reason)
	return letterDone
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

// letterOutcome is what a replay did with a letter.
type letterOutcome int

const (
	letterDone   letterOutcome = iota // applied
	letterParked                      // moved past without applying
	letterHeld                        // not done: to be tried again
	letterStop                        // not looked at: the replay ends here, before this letter
)

// letterReader reads partitions of the dead-letter topic from given
// offsets up to given ends (the ends as of a look at the topic), one
// partition's run of records at a time, in offset order.
//
// Each list or replay makes its own consumer client and closes it at its
// end, where the DeadLetters keeps its other client: where a read starts
// is its own (the newest letters for a list, the replay marks for a
// replay), and a consumer kept across reads would carry the positions and
// buffered fetches of the last one into the next — a list after a replay
// would start where the replay ended. It also lets a list and a replay of
// one DeadLetters run at once. A look that finds nothing to read (the
// repair, most rounds) makes none.
type letterReader struct {
	cl   *kgo.Client
	ends map[int32]int64
	open map[int32]bool            // partitions not read to their end yet
	runs []kgo.FetchTopicPartition // fetched, not yet returned
}

// newReader reads each partition in from, from its offset there up to its
// end in ends; from names only partitions with letters to read.
func (q *DeadLetters) newReader(from, ends map[int32]int64) (*letterReader, error) {
	offsets := map[int32]kgo.Offset{}
	open := map[int32]bool{}
	for p, o := range from {
		offsets[p] = kgo.NewOffset().At(o)
		open[p] = true
	}
	cl, err := q.conn.NewClient(append(q.opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{q.topic: offsets}))...)
	if err != nil {
		return nil, err
	}
	return &letterReader{cl: cl, ends: ends, open: open}, nil
}

func (r *letterReader) close() { r.cl.Close() }

// next returns the next run of one partition's records, or nil once every
// partition is read to its end.
func (r *letterReader) next(ctx context.Context) ([]*kgo.Record, error) {
	for {
		for len(r.runs) > 0 {
			fp := r.runs[0]
			r.runs = r.runs[1:]
			if recs := r.take(fp); len(recs) > 0 {
				return recs, nil
			}
		}
		if len(r.open) == 0 {
			return nil, nil
		}
		fetches := r.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) { ferr = fmt.Errorf("fetch %s/%d: %w", t, p, err) })
		if ferr != nil {
			return nil, ferr
		}
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) { r.runs = append(r.runs, fp) })
	}
}

// take is the records of a fetched run that are the read's: those below
// their partition's end, of a partition not yet read to it.
func (r *letterReader) take(fp kgo.FetchTopicPartition) []*kgo.Record {
	p := fp.Partition
	var recs []*kgo.Record
	for _, rec := range fp.Records {
		if !r.open[p] || rec.Offset >= r.ends[p] {
			break
		}
		if rec.Offset+1 >= r.ends[p] {
			delete(r.open, p)
		}
		recs = append(recs, rec)
	}
	return recs
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
