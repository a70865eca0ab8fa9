package kafka

import (
	"context"
	"fmt"
	"sort"

	"github.com/twmb/franz-go/pkg/kadm"
)

// GroupLag is how far a consumer group is behind the end of its topic.
type GroupLag struct {
	Group      string         `json:"group"`
	Topic      string         `json:"topic"`
	Lag        int64          `json:"lag"` // records not yet committed, over every partition
	Partitions []PartitionLag `json:"partitions"`
}

// PartitionLag is one partition of GroupLag.
type PartitionLag struct {
	Partition int32  `json:"partition"`
	Committed int64  `json:"committed"` // the next offset the group reads; -1 before its first commit
	End       int64  `json:"end"`       // the offset the next record will get
	Lag       int64  `json:"lag"`       // -1 when it could not be read (Error says why)
	Error     string `json:"error,omitempty"`
}

// Lag reads the group's committed offsets and the topic's end offsets from
// the cluster: what every member of the group has committed, not only this
// one.
func (c *Consumer) Lag(ctx context.Context) (GroupLag, error) {
	lags, err := kadm.NewClient(c.cl).Lag(ctx, c.cfg.Group)
	if err != nil {
		return GroupLag{}, fmt.Errorf("kafka lag of group %s: %w", c.cfg.Group, err)
	}
	gl, ok := lags[c.cfg.Group]
	if !ok {
		return GroupLag{}, fmt.Errorf("kafka lag of group %s: not described", c.cfg.Group)
	}
	if err := gl.Error(); err != nil {
		return GroupLag{}, fmt.Errorf("kafka lag of group %s: %w", c.cfg.Group, err)
	}
	out := GroupLag{Group: c.cfg.Group, Topic: c.cfg.Topic, Partitions: []PartitionLag{}}
	for p, l := range gl.Lag[c.cfg.Topic] {
		pl := PartitionLag{Partition: p, Committed: l.Commit.At, End: l.End.Offset, Lag: l.Lag}
		if l.Err != nil {
			pl.Lag, pl.Error = -1, l.Err.Error()
		} else {
			out.Lag += l.Lag
		}
		out.Partitions = append(out.Partitions, pl)
	}
	sort.Slice(out.Partitions, func(i, j int) bool { return out.Partitions[i].Partition < out.Partitions[j].Partition })
	return out, nil
}
