// Command banksync runs the parts of banksync: core, the embedded Kafka
// cluster, the demo and the benchmarks. Every flag can also be set by a
// BANKSYNC_* environment variable, named in -h.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// command is one subcommand.
type command interface {
	Run(ctx context.Context, args []string) error
}

var commands = map[string]func() command{
	"core":    func() command { return &coreCommand{} },
	"channel": func() command { return channelCommand{} },
	"token":   func() command { return tokenCommand{} },
	"dlq":     func() command { return dlqCommand{} },
	"kafka":   func() command { return &kafkaCommand{} },
	"demo":    func() command { return &demoCommand{} },
	"bench":   func() command { return &benchCommand{} },
	"chaos":   func() command { return chaosCommand{} },
}

const usage = `banksync keeps a bank app's transaction history in step with the core ledger.

Usage:
  banksync demo      run core, the channel and an embedded Kafka cluster in one process, on SQLite
  banksync core      run the core ledger (계정계) API and its outbox relay
  banksync channel   run the channel tier's transfer server (채널계)
  banksync token     print a customer's bearer token for the channel API
  banksync dlq       list or replay the dead-letter topic (banksync dlq list -h)
  banksync kafka     run the embedded Kafka-protocol cluster as its own process
  banksync bench     run a benchmark (banksync bench core -h, banksync bench payday -h)
  banksync chaos     run everything under injected faults and check every promise

Run "banksync COMMAND -h" for a command's flags and environment variables.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	newCmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "banksync: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	err := newCmd().Run(ctx, os.Args[2:])
	switch {
	case err == nil, errors.Is(err, context.Canceled):
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "banksync %s: %s\n", os.Args[1], errorLine(err))
		os.Exit(1)
	}
}

// errorLine is err's message on one line, so that a failure is one line a
// supervisor's log keeps whole and a reader finds last: the lines of a
// multi-line message (errors.Join, pgx's error per address tried) are
// joined with "; ".
func errorLine(err error) string {
	var b strings.Builder
	for line := range strings.Lines(err.Error()) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if b.Len() > 0 {
			if strings.HasSuffix(b.String(), ":") {
				b.WriteString(" ")
			} else {
				b.WriteString("; ")
			}
		}
		b.WriteString(line)
	}
	return b.String()
}
