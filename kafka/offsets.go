package kafka

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
)

// inFlightPerPartitionMax bounds how many records of one partition the
// consumer holds past the partition's commit point: dispatched, and either not
// yet applied or applied behind one that is not. It bounds memory, and it
// bounds how much a crash re-delivers; one slow account stalls its partition
// once this many records have piled up behind it, never the process.
const inFlightPerPartitionMax = 1 << 14

// ringLenMin is the first allocation of a partition's ring; it doubles up to
// the in-flight maximum, so an idle partition costs little.
const ringLenMin = 64

// errInFlightFull is returned (wrapped) by offsetTracker.Dispatch when a partition
// already holds its maximum of in-flight records. Nothing is recorded; the
// caller waits with offsetTracker.WaitRoom and dispatches the record again.
var errInFlightFull = errors.New("kafka: partition has too many records in flight")

// offsetTracker tracks, per partition, which consumed records have been fully
// applied, and so which offset is safe to commit: the lowest offset dispatched
// and not yet completed, or the last dispatched + 1 once all are complete
// (Kafka commits the next offset to read). Committing no further than that is
// what makes a crash re-deliver, never skip, a record that was not applied.
//
// Records are dispatched in offset order (with gaps: compaction and
// transaction markers take offsets) and completed in any order. The zero value
// is ready to use, and it is safe for concurrent use: the poll loop dispatches
// and commits while lanes complete.
type offsetTracker struct {
	mu         sync.Mutex
	partitions map[int32]*partitionOffsets

	// inFlightMax overrides inFlightPerPartitionMax when positive (tests).
	inFlightMax int
}

// partitionOffsets holds the records of one partition from its commit point
// on, in dispatch (so offset) order, as a ring. The record at head is never
// complete: completing it pops it and every complete record behind it.
type partitionOffsets struct {
	ring []pendingRecord
	head int   // index in ring of the oldest held record
	n    int   // records held
	next int64 // last dispatched offset + 1

	// room, when not nil, is closed as soon as a slot frees (or the partition
	// is revoked) to wake the callers of WaitRoom.
	room chan struct{}
}

type pendingRecord struct {
	offset int64
	done   bool
}

func (o *offsetTracker) limit() int {
	if o.inFlightMax > 0 {
		return o.inFlightMax
	}
	return inFlightPerPartitionMax
}

// Dispatch records that the record at offset of partition has been handed
// out for applying. Offsets must be strictly increasing per partition since
// the partition was last revoked; anything else is a bug and is refused. When
// the partition already holds its maximum of records, Dispatch records
// nothing and returns an error wrapping errInFlightFull.
func (o *offsetTracker) Dispatch(partition int32, offset int64) error {
	if offset < 0 {
		return fmt.Errorf("kafka: dispatch partition %d offset %d: negative offset", partition, offset)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.partitions == nil {
		o.partitions = make(map[int32]*partitionOffsets)
	}
	p := o.partitions[partition]
	if p == nil {
		p = &partitionOffsets{next: offset}
		o.partitions[partition] = p
	}
	if offset < p.next {
		return fmt.Errorf("kafka: dispatch partition %d offset %d: not after the last dispatched offset %d",
			partition, offset, p.next-1)
	}
	limit := o.limit()
	if p.n >= limit {
		return fmt.Errorf("kafka: dispatch partition %d offset %d: %w (%d)", partition, offset, errInFlightFull, limit)
	}
	if p.n == len(p.ring) {
		p.grow(limit)
	}
	p.ring[(p.head+p.n)%len(p.ring)] = pendingRecord{offset: offset}
	p.n++
	p.next = offset + 1
	return nil
}

// grow doubles the ring, up to limit, keeping the held records in order.
func (p *partitionOffsets) grow(limit int) {
	size := min(max(ringLenMin, 2*len(p.ring)), limit)
	ring := make([]pendingRecord, size)
	for i := range p.n {
		ring[i] = p.ring[(p.head+i)%len(p.ring)]
	}
	p.ring, p.head = ring, 0
}

// at returns the i-th held record, 0 being the oldest.
func (p *partitionOffsets) at(i int) *pendingRecord {
	return &p.ring[(p.head+i)%len(p.ring)]
}

// Complete records that the record at offset of partition has been fully
// applied. Completing a record that is not held — never dispatched, already
// completed, or of a revoked partition — is a bug and returns an error.
//
// A partition's records must not be completed once it has been revoked: stop
// (laneSet.Abandon) the jobs that would complete them before calling Revoke,
// since after a re-delivery the same offset is held again.
func (o *offsetTracker) Complete(partition int32, offset int64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.partitions[partition]
	if p == nil {
		return fmt.Errorf("kafka: complete partition %d offset %d: partition not held", partition, offset)
	}
	// Held records are in offset order: binary search.
	i := sort.Search(p.n, func(i int) bool { return p.at(i).offset >= offset })
	if i == p.n || p.at(i).offset != offset {
		return fmt.Errorf("kafka: complete partition %d offset %d: offset not in flight", partition, offset)
	}
	r := p.at(i)
	if r.done {
		return fmt.Errorf("kafka: complete partition %d offset %d: already completed", partition, offset)
	}
	r.done = true
	if i != 0 {
		return nil
	}
	for p.n > 0 && p.at(0).done {
		p.head = (p.head + 1) % len(p.ring)
		p.n--
	}
	if p.room != nil {
		close(p.room)
		p.room = nil
	}
	return nil
}

// Committable returns, for every partition with a record dispatched since it
// was last revoked, the offset to commit: the lowest offset not yet completed,
// or the last dispatched + 1 when all are complete. Partitions with nothing
// dispatched are absent. Per partition the offset never decreases until the
// partition is revoked.
func (o *offsetTracker) Committable() map[int32]int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[int32]int64, len(o.partitions))
	for partition, p := range o.partitions {
		if p.n > 0 {
			out[partition] = p.at(0).offset
		} else {
			out[partition] = p.next
		}
	}
	return out
}

// Revoke forgets partitions lost in a rebalance: their records not yet
// committed will be re-delivered to the partition's next owner. Callers
// blocked in WaitRoom for them return.
func (o *offsetTracker) Revoke(partitions ...int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, partition := range partitions {
		p := o.partitions[partition]
		if p == nil {
			continue
		}
		if p.room != nil {
			close(p.room)
		}
		delete(o.partitions, partition)
	}
}

// InFlight returns how many records of partition are held past its commit
// point: dispatched, and either not completed or completed behind one that is
// not. A crash would re-deliver them; Dispatch refuses more than
// inFlightPerPartitionMax.
func (o *offsetTracker) InFlight(partition int32) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if p := o.partitions[partition]; p != nil {
		return p.n
	}
	return 0
}

// WaitRoom blocks until partition can take another Dispatch (or has been
// revoked) or ctx is done, in which case it returns ctx.Err().
func (o *offsetTracker) WaitRoom(ctx context.Context, partition int32) error {
	for {
		o.mu.Lock()
		p := o.partitions[partition]
		if p == nil || p.n < o.limit() {
			o.mu.Unlock()
			return nil
		}
		if p.room == nil {
			p.room = make(chan struct{})
		}
		room := p.room
		o.mu.Unlock()

		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
