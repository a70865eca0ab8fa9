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
		slices.Sort(found) // the newest version last (one digit or two: 15, 16, …, sorts well enough here)
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
	if err := s.start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
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
	if err := postgres.Exec(ctx, s.dsn("postgres"), "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return s.dsn(name), nil
}

// terminateBackends ends every session on database name but the caller's,
// as a failover or an administrator's kill would.
func (s *pgServer) terminateBackends(ctx context.Context, name string) error {
	return postgres.Exec(ctx, s.dsn("postgres"),
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '"+name+"' AND pid <> pg_backend_pid()")
}

// waitUp waits until the server takes connections.
func (s *pgServer) waitUp(ctx context.Context) error {
	for {
		err := postgres.Exec(ctx, s.dsn("postgres"), "SELECT 1")
		if err == nil || ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
