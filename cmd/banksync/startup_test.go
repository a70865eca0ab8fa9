package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"banksync/postgres/pgtest"
)

// startupEnv is what core and channel need besides the flags under test.
var startupEnv = []string{"BANKSYNC_SERVICE_TOKEN=svc", "BANKSYNC_JWT_SECRET=0123456789abcdef0123456789abcdef", "BANKSYNC_LOG_FORMAT=json"}

// startupTimeout bounds one failing start: the longest is the wait for an
// unreachable Kafka (10 s).
const startupTimeout = 60 * time.Second

// failStart runs `banksync args…`, which must fail to start, and returns
// the line it printed about why. It checks the promise of every startup
// failure: exit status 1, no panic, and one line, the last on stderr, that
// starts "banksync COMMAND: " and contains each of want; any line before it
// is a JSON log line.
func failStart(t *testing.T, want []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startupTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(cmd.Environ(), startupEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("banksync %s exited with %v after %v, want exit status 1; stderr:\n%s", args[0], err, time.Since(start), stderr.String())
	}
	for _, out := range []string{stdout.String(), stderr.String()} {
		if strings.Contains(out, "panic") || strings.Contains(out, "goroutine") {
			t.Fatalf("banksync %s panicked:\n%s", args[0], out)
		}
	}
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	got := lines[len(lines)-1]
	for _, l := range lines[:len(lines)-1] {
		if !json.Valid([]byte(l)) {
			t.Errorf("stderr line %q is neither a log line nor the last; want the failure on one line, last", l)
		}
	}
	if prefix := "banksync " + args[0] + ": "; !strings.HasPrefix(got, prefix) {
		t.Fatalf("last line of stderr = %q, want it to start %q; stderr:\n%s", got, prefix, stderr.String())
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("failure line = %q, want it to contain %q", got, w)
		}
	}
	t.Logf("exit 1 after %v: %s", time.Since(start).Round(time.Millisecond), got)
	return got
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// boundAddr is a loopback address the test holds a listener on.
func boundAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// withDSN returns the PostgreSQL URL dsn changed by edit.
func withDSN(t *testing.T, dsn string, edit func(*url.URL)) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("%s is not a URL: %v", pgtest.DSNEnv, err)
	}
	edit(u)
	return u.String()
}

func TestStartupFailsOnWrongPostgresPort(t *testing.T) {
	t.Parallel()
	const password = "not-to-be-printed"
	testDSN := pgtest.Database(t)
	for _, tc := range []struct {
		name  string
		hosts int
	}{
		{"one host", 1},
		// pgx reports each host it tried on a line of its own.
		{"two hosts", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var hosts []string
			for range tc.hosts {
				hosts = append(hosts, closedAddr(t))
			}
			dsn := withDSN(t, testDSN, func(u *url.URL) {
				u.Host = strings.Join(hosts, ",")
				u.User = url.UserPassword(u.User.Username(), password)
			})
			want := []string{"open ledger database postgres://"}
			for _, h := range hosts {
				want = append(want, "dial tcp "+h+": connect: connection refused")
			}
			line := failStart(t, want, "core", "--db", dsn, "--kafka", "none", "--listen", "127.0.0.1:0")
			if strings.Contains(line, password) {
				t.Errorf("failure line %q shows the DSN's password", line)
			}
		})
	}
}

func TestStartupFailsOnMissingPostgresDatabase(t *testing.T) {
	t.Parallel()
	// The fresh database's name with a suffix: unique, so on no server.
	dsn := withDSN(t, pgtest.Database(t), func(u *url.URL) { u.Path += "_missing" })
	failStart(t, []string{"open ledger database", "_missing", "does not exist"},
		"core", "--db", dsn, "--kafka", "none", "--listen", "127.0.0.1:0")
}

func TestStartupFailsOnSecondCoreSQLite(t *testing.T) {
	t.Parallel()
	db := "sqlite:" + filepath.Join(t.TempDir(), "core.db")
	startProc(t, startupEnv, "core listening", "addr", "core", "--db", db, "--kafka", "none", "--listen", "127.0.0.1:0")
	failStart(t, []string{"open ledger database " + db, "another core process holds"},
		"core", "--db", db, "--kafka", "none", "--listen", "127.0.0.1:0")
}

func TestStartupFailsOnSecondCorePostgres(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	startProc(t, startupEnv, "core listening", "addr", "core", "--db", dsn, "--kafka", "none", "--listen", "127.0.0.1:0")
	failStart(t, []string{"open ledger database", "locked by another ledger process"},
		"core", "--db", dsn, "--kafka", "none", "--listen", "127.0.0.1:0")
}

func TestStartupFailsOnUnreachableChannelDatabase(t *testing.T) {
	t.Parallel()
	dsn := withDSN(t, pgtest.Database(t), func(u *url.URL) { u.Host = closedAddr(t) })
	failStart(t, []string{"open channel database postgres://", "connection refused"},
		"channel", "--db", dsn, "--listen", "127.0.0.1:0", "--core-url", "http://"+closedAddr(t))
}

func TestStartupFailsOnUnreachableKafka(t *testing.T) {
	t.Parallel()
	t.Run("core", func(t *testing.T) {
		t.Parallel()
		brokers := closedAddr(t)
		failStart(t, []string{"reach kafka [" + brokers + "]", "connection refused"},
			"core", "--db", "sqlite:"+filepath.Join(t.TempDir(), "core.db"), "--kafka", brokers, "--listen", "127.0.0.1:0")
	})
	t.Run("channel", func(t *testing.T) {
		t.Parallel()
		brokers := closedAddr(t)
		failStart(t, []string{"reach kafka [" + brokers + "]", "connection refused"},
			"channel", "--db", "sqlite:"+filepath.Join(t.TempDir(), "channel.db"), "--kafka", brokers,
			"--listen", "127.0.0.1:0", "--core-url", "http://"+closedAddr(t))
	})
}

func TestStartupFailsOnBoundPort(t *testing.T) {
	t.Parallel()
	addr := boundAddr(t)
	for _, tc := range []struct {
		name string
		want []string
		args []string
	}{
		{"core", []string{"serve core: listen tcp " + addr, "address already in use"},
			[]string{"core", "--kafka", "none", "--listen", addr}},
		{"core ops", []string{"serve core ops: listen tcp " + addr, "address already in use"},
			[]string{"core", "--kafka", "none", "--listen", "127.0.0.1:0", "--ops-listen", addr}},
		{"channel", []string{"serve channel: listen tcp " + addr, "address already in use"},
			[]string{"channel", "--listen", addr, "--core-url", "http://" + closedAddr(t)}},
		{"kafka", []string{"start kafka cluster on " + addr, "address already in use"},
			[]string{"kafka", "--listen", addr, "--data", ""}},
		{"demo", []string{"serve core: listen tcp " + addr, "address already in use"},
			[]string{"demo", "--listen", "127.0.0.1:0", "--core-listen", addr, "--kafka-listen", "127.0.0.1:0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			args := tc.args
			switch args[0] {
			case "core":
				args = append(args, "--db", "sqlite:"+filepath.Join(dir, "core.db"))
			case "channel":
				args = append(args, "--db", "sqlite:"+filepath.Join(dir, "channel.db"))
			case "demo":
				args = append(args, "--data", dir)
			}
			failStart(t, tc.want, args...)
		})
	}
}

// The binary a bank builds has no chaos switches: only a build with -tags
// chaos (the deployed chaos run's) can skew a clock or switch a protection
// off.
func TestChaosSwitchesAreNotInTheBinary(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"core", "--kafka", "none", "--chaos-clock-skew", "1s"},
		{"channel", "--chaos-unsafe", "no-fence"},
		{"channel", "--chaos-unsafe", "commit-before-apply"},
	} {
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "flag provided but not defined: -chaos-") {
			t.Errorf("banksync %s: %v\n%s\nwant it refused: the flag must not exist outside chaos builds", strings.Join(args, " "), err, out)
		}
	}
}

// The binary links no test helper: package testing registers its flags
// (-test.v, …) and brings test-only code onto the money path.
func TestBinaryDoesNotLinkTesting(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "banksync/cmd/banksync").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "testing" {
			t.Fatal("banksync/cmd/banksync depends on package testing (see go list -deps): move the test helper that imports it out of the binary's packages")
		}
	}
}
