package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// channelProcessStopTimeout is how long a channel process has to stop after
// SIGTERM before it is killed.
const channelProcessStopTimeout = 30 * time.Second

// drainByProcess drains phase 2's events once more, into a fresh database,
// by a `banksync channel` process of its own: the channel as it is
// deployed, alone in its process, so its peak resident set is the
// channel's and nothing else's. It is done when the process's consumer
// group has committed every partition's end offset, which it does only
// past applied records; the time includes the process's start and its
// joining the group.
func (rig *paydayRig) drainByProcess(ctx context.Context, res *PaydayResult) error {
	end := rig.step("phase 2 again: a `banksync channel` process drains the events into a fresh database", nil)
	defer end()
	conn := rig.core.Conn()
	if conn.TLS != nil || conn.SASL != nil {
		return errors.New("the channel process drain needs plain connections to Kafka")
	}
	// The same history as the rig's channel, so the process appends to as
	// deep a table as the in-process drain did.
	_, chTemplate, err := rig.templates(ctx)
	if err != nil {
		return err
	}
	dsn, err := rig.scratch(ctx, "process", chTemplate)
	if err != nil {
		return err
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	group := "payday-process-" + rig.name + "." + rig.topic
	cmd := exec.CommandContext(ctx, rig.cfg.ChannelBinary, "channel", "--listen", "127.0.0.1:0", "--db", dsn,
		"--core-url", "http://"+rig.core.Addr(), "--service-token", paydayToken, "--jwt-secret", hex.EncodeToString(secret),
		"--kafka", strings.Join(conn.Brokers, ","), "--topic", rig.topic, "--group", group,
		"--lanes", strconv.Itoa(rig.cfg.Lanes), "--log-level", "warn")
	cmd.Env = channelProcessEnv()
	if rig.cfg.ChannelMemoryLimit != "" {
		cmd.Env = append(cmd.Env, "GOMEMLIMIT="+rig.cfg.ChannelMemoryLimit)
	}
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the channel process: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() error {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(channelProcessStopTimeout):
			cmd.Process.Kill()
			return fmt.Errorf("the channel process did not stop within %s of SIGTERM", channelProcessStopTimeout)
		}
	}
	took, err := rig.waitGroupAtEnd(ctx, group, start, exited)
	rssMiB := float64(vmHWMOf(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))) / (1 << 20)
	stopErr := stop()
	if err != nil {
		return fmt.Errorf("%w; its output:\n%s", err, log.String())
	}
	if stopErr != nil {
		return fmt.Errorf("stop the channel process: %w; its output:\n%s", stopErr, log.String())
	}
	end()
	res.ProcessEventsPerS = float64(rig.cfg.Deposits) / took.Seconds()
	res.ProcessRSSPeakMiB = rssMiB
	limit := ""
	if rig.cfg.ChannelMemoryLimit != "" {
		limit = ", GOMEMLIMIT=" + rig.cfg.ChannelMemoryLimit
	}
	fmt.Fprintf(rig.cfg.Out, "phase 2, again by a `banksync channel` process of its own, into a fresh database%s:\n", limit)
	fmt.Fprintf(rig.cfg.Out, "                     %9d events   in %6.1f s = %7.0f events/s (its start and group join included); its peak resident set %.0f MiB\n",
		rig.cfg.Deposits, took.Seconds(), res.ProcessEventsPerS, rssMiB)
	return nil
}

// channelProcessEnv is this process's environment without the BANKSYNC_
// settings, which would otherwise fill the channel's flags the command line
// leaves unset.
func channelProcessEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BANKSYNC_") {
			env = append(env, kv)
		}
	}
	return env
}

// waitGroupAtEnd waits until group has committed the end offset of every
// partition of the rig's topic, and returns how long after start that was.
func (rig *paydayRig) waitGroupAtEnd(ctx context.Context, group string, start time.Time, exited <-chan error) (time.Duration, error) {
	cl, err := rig.core.Conn().NewClient()
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, rig.topic)
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		select {
		case err := <-exited:
			return 0, fmt.Errorf("the channel process exited before it drained the topic: %v", err)
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return 0, errors.New("the channel process did not drain the topic within 10 minutes")
		}
		committed, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			continue // the group may not exist yet
		}
		done := true
		ends.Each(func(end kadm.ListedOffset) {
			c, ok := committed.Lookup(end.Topic, end.Partition)
			done = done && ok && c.At >= end.Offset
		})
		if done {
			return time.Since(start), nil
		}
	}
}
