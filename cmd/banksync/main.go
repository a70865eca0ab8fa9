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
	"slices"
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
	status := run(ctx, os.Args[1:])
	stop()
	os.Exit(status)
}

// run runs the command args name and returns the exit status: 0 when it
// succeeded or printed the usage asked for (-h), 2 when it was called wrong
// (a usageError, the flag package's status for one), 1 when it failed.
func run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help":
		fmt.Print(usage)
		return 0
	case "help": // "banksync help bench core" is "banksync bench core -h"
		if len(args) == 1 {
			fmt.Print(usage)
			return 0
		}
		return run(ctx, append(args[1:], "-h"))
	}
	newCmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "banksync: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	err := newCmd().Run(ctx, args[1:])
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(os.Stderr, "banksync %s: %s\n", args[0], errorLine(err))
	if errors.As(err, new(usageError)) {
		return 2
	}
	return 1
}

// subcommand picks the subcommand args[0] of group among names, returning
// it and the arguments after it. -h prints usage to stdout and returns
// flag.ErrHelp; no subcommand or another one is a usageError.
func subcommand(group, usage string, args []string, names ...string) (string, []string, error) {
	want := strings.Join(names, " or ")
	if len(args) == 0 {
		return "", nil, usagef("want a subcommand, %s (see banksync %s -h)", want, group)
	}
	switch a := args[0]; {
	case a == "-h" || a == "-help" || a == "--help" || a == "help":
		fmt.Print(usage)
		return "", nil, flag.ErrHelp
	case slices.Contains(names, a):
		return a, args[1:], nil
	}
	return "", nil, usagef("unknown subcommand %q: want %s (see banksync %s -h)", args[0], want, group)
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
