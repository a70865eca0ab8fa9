package deployed_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"banksync/postgres"
)

// pgBinEnv names the folder of PostgreSQL's server programs (initdb,
// postgres), if not Debian's /usr/lib/postgresql/VERSION/bin.
const pgBinEnv = "BANKSYNC_TEST_PG_BIN"

// pgServer is a PostgreSQL server of the run's own, on loopback, in a
// temporary folder: the run restarts it, which it must not do to the
// server other packages' tests share. The postmaster is the test's child,
// so it dies with the test however the test ends.
type pgServer struct {
	bin, dir, data string
	port           int
	as             *syscall.Credential // running as root: the postgres user

	mu     sync.Mutex
	proc   *exec.Cmd // the postmaster
	exited chan struct{}
}

// startPostgres initialises and starts a server, stopped and removed when
// t ends. Without PostgreSQL's programs it skips t, or fails it under CI.
func startPostgres(t *testing.T) *pgServer {
	t.Helper()
	bin := os.Getenv(pgBinEnv)
	if bin == "" {
		found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
		// The newest major version last: /usr/lib/postgresql/15/bin/initdb.
		major := func(path string) int {
			n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
			return n
		}
		slices.SortFunc(found, func(a, b string) int { return major(a) - major(b) })
		if len(found) > 0 {
			bin = filepath.Dir(found[len(found)-1])
		}
	}
	if bin == "" {
		why := "PostgreSQL's server programs (initdb, postgres) are not installed: run scripts/postgres, or set " + pgBinEnv
		if os.Getenv("CI") != "" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
	dir, err := os.MkdirTemp("", "banksync-deployed-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	s := &pgServer{bin: bin, dir: dir, data: filepath.Join(dir, "data"), port: port}
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root; the folder becomes
		// the postgres user's.
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, the server needs the postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.as = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := s.cmd("initdb", "-D", s.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	t.Cleanup(s.stop) // before starting: a start that times out leaves a postmaster
	if err := s.start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

// cmd is one of the server's programs, as the postgres user when the test
// runs as root, killed if the test dies.
func (s *pgServer) cmd(program string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, program), args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.as, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// start starts the postmaster and waits until it takes connections. It
// listens on loopback only, its Unix socket in its own folder.
func (s *pgServer) start(ctx context.Context) error {
	log, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := s.cmd("postgres", "-D", s.data, "-p", strconv.Itoa(s.port), "-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+s.dir, "-c", "max_connections=300")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); log.Close(); close(exited) }()
	s.mu.Lock()
	s.proc, s.exited = cmd, exited
	s.mu.Unlock()
	return s.waitAccepting(ctx, exited)
}

// waitAccepting waits, for at most upTimeout, until the postmaster that
// closes exited when it ends takes connections.
func (s *pgServer) waitAccepting(ctx context.Context, exited chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, upTimeout)
	defer cancel()
	for {
		if postgres.Exec(ctx, s.dsn("postgres"), "SELECT 1") == nil {
			return nil
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
			return fmt.Errorf("PostgreSQL exited while starting:\n%s", out)
		case <-ctx.Done():
			return fmt.Errorf("PostgreSQL took no connection within %v", upTimeout)
		case <-time.After(probeEvery):
		}
	}
}

// stop shuts the server down as a crash does: SIGQUIT is PostgreSQL's
// immediate shutdown (no checkpoint, every connection cut); the next start
// recovers from the WAL.
func (s *pgServer) stop() {
	s.mu.Lock()
	cmd, exited := s.proc, s.exited
	s.proc = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

// restart stops the server as a crash does and starts it again.
func (s *pgServer) restart(ctx context.Context) error {
	s.stop()
	return s.start(context.WithoutCancel(ctx))
}

// dsn is the DSN of database name on the server.
func (s *pgServer) dsn(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, name)
}

// createDatabase creates a database and returns its DSN.
func (s *pgServer) createDatabase(ctx context.Context, name string) (string, error) {
	if err := postgres.Exec(ctx, s.dsn("postgres"), "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return s.dsn(name), nil
}

// ensureUp starts the server if its postmaster is gone (a restart that
// failed to start it), and waits until it takes connections.
func (s *pgServer) ensureUp(ctx context.Context) error {
	s.mu.Lock()
	running, exited := s.proc != nil, s.exited
	s.mu.Unlock()
	if running {
		select {
		case <-exited:
		default:
			return s.waitAccepting(ctx, exited)
		}
	}
	s.stop()
	return s.start(ctx)
}
