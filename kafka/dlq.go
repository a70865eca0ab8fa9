package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"banksync"
)

// ReplayGroup is the consumer group whose committed offsets on the
// dead-letter topic mark what has been replayed.
const ReplayGroup = "banksync-dlq-replay"

// replayAttemptsMax bounds the tries of one dead letter during a replay.
const replayAttemptsMax = 3

// DeadLetter is a record of the dead-letter topic.
type DeadLetter struct {
	Event         banksync.LedgerEvent
	Reason        string
	Attempts      int
	FromPartition int32 // where it was in the ledger topic
	FromOffset    int64
	At            time.Time // when it was dead-lettered
	Partition     int32     // where it is in the dead-letter topic
	Offset        int64
}

func deadLetterOf(r *kgo.Record) (DeadLetter, error) {
	d := DeadLetter{Partition: r.Partition, Offset: r.Offset}
	ev, err := banksync.DecodeLedgerEvent(r.Value)
	if err != nil {
		return d, err
	}
	d.Event = ev
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
	return d, nil
}

// deadLettersReadMax bounds what ReadDeadLetters returns: the newest
// letters of each partition.
const deadLettersReadMax = 1000

// ReadDeadLetters returns the records of the dead-letter topic, up to its
// end when called — at most the newest deadLettersReadMax of each partition
// — and the offsets up to which ReplayGroup has replayed them.
func ReadDeadLetters(ctx context.Context, brokers []string, topic string) (letters []DeadLetter, replayed map[int32]int64, err error) {
	replayed = map[int32]int64{}
	err = scanDeadLetters(ctx, brokers, topic, false, func(r *kgo.Record) (bool, error) {
		d, err := deadLetterOf(r)
		if err != nil {
			return false, fmt.Errorf("dead letter %d/%d: %w", r.Partition, r.Offset, err)
		}
		letters = append(letters, d)
		return true, nil
	}, func(starts map[int32]int64) { replayed = starts })
	return letters, replayed, err
}

// ReplayResult says what a replay did.
type ReplayResult struct {
	Applied, Skipped int
}

// ReplayDeadLetters re-applies dead letters not yet replayed through apply
// (the sync engine), in dead-letter order: every one (match nil) or those
// match accepts. It commits ReplayGroup's offsets past the letters applied,
// on each partition only up to its first letter match passed over, so a
// later replay still sees that one (re-applying is harmless: the sync
// engine skips what it has). It stops at the first letter that still fails.
// Each letter applied is logged once to log (nil: not logged), with the
// reason it was dead-lettered.
func ReplayDeadLetters(ctx context.Context, brokers []string, topic string, match func(banksync.LedgerEvent) bool, apply Applier, log *slog.Logger) (ReplayResult, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var res ReplayResult
	err := scanDeadLetters(ctx, brokers, topic, true, func(r *kgo.Record) (bool, error) {
		d, err := deadLetterOf(r)
		if err != nil {
			return false, fmt.Errorf("dead letter %d/%d cannot be replayed: %w", r.Partition, r.Offset, err)
		}
		if match != nil && !match(d.Event) {
			res.Skipped++
			return false, nil
		}
		for attempt := 1; ; attempt++ {
			err := apply.ApplyEntry(ctx, d.Event.Entry())
			if err == nil {
				res.Applied++
				log.InfoContext(ctx, "dead letter replayed", "account", d.Event.AccountID, "seq", d.Event.Seq,
					"dlq_partition", r.Partition, "dlq_offset", r.Offset, "reason", d.Reason)
				return true, nil
			}
			if attempt >= replayAttemptsMax || ctx.Err() != nil {
				return false, fmt.Errorf("replay %s seq %d: %w", d.Event.AccountID, d.Event.Seq, err)
			}
			time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
		}
	}, nil)
	return res, err
}

// scanDeadLetters calls fn for each record of topic from ReplayGroup's
// committed offsets (fromGroup) or the start, up to the end offsets as of
// the call. With fromGroup, it commits, also when it stops at an error, past
// the records fn accepted (done true) on each partition up to the first it
// did not.
func scanDeadLetters(ctx context.Context, brokers []string, topic string, fromGroup bool, fn func(*kgo.Record) (done bool, err error), onStarts func(map[int32]int64)) (err error) {
	admCl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	ends, starts, err := replayPositions(ctx, adm, topic)
	if err != nil {
		return err
	}
	if onStarts != nil {
		onStarts(starts)
	}
	from := map[int32]kgo.Offset{}
	next := map[int32]int64{} // the offset to commit, per partition
	held := map[int32]bool{}  // a record was passed over: commit no further
	for p, end := range ends {
		start := max(0, end-deadLettersReadMax)
		if fromGroup {
			start = starts[p]
		}
		if start < end {
			from[p] = kgo.NewOffset().At(start)
			next[p] = start
		}
	}
	if len(from) == 0 {
		return nil
	}
	if fromGroup {
		defer func() {
			offsets := kadm.Offsets{}
			for p, at := range next {
				if at > starts[p] {
					offsets.Add(kadm.Offset{Topic: topic, Partition: p, At: at, LeaderEpoch: -1})
				}
			}
			if len(offsets) > 0 {
				if _, cerr := adm.CommitOffsets(context.WithoutCancel(ctx), ReplayGroup, offsets); cerr != nil && err == nil {
					err = fmt.Errorf("commit replayed offsets: %w", cerr)
				}
			}
		}()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}))
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
		for _, r := range fetches.Records() {
			if _, open := from[r.Partition]; !open || r.Offset >= ends[r.Partition] {
				continue
			}
			done, err := fn(r)
			if err != nil {
				return err
			}
			if done && !held[r.Partition] {
				next[r.Partition] = r.Offset + 1
			}
			held[r.Partition] = held[r.Partition] || !done
			if r.Offset+1 >= ends[r.Partition] {
				delete(from, r.Partition)
			}
		}
	}
	return nil
}

// DeadLetterDepth returns how many dead letters ReplayGroup has not yet
// replayed: per partition, the end offset less the group's committed one.
func DeadLetterDepth(ctx context.Context, brokers []string, topic string) (int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	ends, starts, err := replayPositions(ctx, kadm.NewClient(cl), topic)
	if err != nil {
		return 0, err
	}
	var depth int64
	for p, end := range ends {
		depth += max(0, end-starts[p])
	}
	return depth, nil
}

// replayPositions reads, per partition of topic, its end offset and the
// offset ReplayGroup has replayed up to (absent when it never committed).
func replayPositions(ctx context.Context, adm *kadm.Client, topic string) (ends, starts map[int32]int64, err error) {
	listed, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	ends, starts = map[int32]int64{}, map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	committed, err := adm.FetchOffsets(ctx, ReplayGroup)
	if errors.Is(err, kerr.GroupIDNotFound) {
		err = nil // never committed: nothing replayed yet
	}
	if err != nil {
		return nil, nil, fmt.Errorf("replayed offsets of %s: %w", topic, err)
	}
	for p := range ends {
		if o, ok := committed.Lookup(topic, p); ok && o.Err == nil && o.At > 0 {
			starts[p] = o.At
		}
	}
	return ends, starts, nil
}
