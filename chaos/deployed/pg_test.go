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
	"syscall"
	"testing"
	"time"

	"banksync/postgres"
)

// pgBinEnv names the folder of PostgreSQL's server programs (initdb,
// pg_ctl), if not Debian's /usr/lib/postgresql/VERSION/bin.
const pgBinEnv = "BANKSYNC_TEST_PG_BIN"

// pgServer is a PostgreSQL server of the run's own, on loopback, in a
// temporary folder: the run restarts it, which it must not do to the
// server other packages' tests share.
type pgServer struct {
	bin, dir, data string
	port           int
	asPostgres     bool // running as root: the server runs as the postgres user
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
		why := "PostgreSQL's server programs (initdb, pg_ctl) are not installed: run scripts/postgres, or set " + pgBinEnv
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
	s := &pgServer{bin: bin, dir: dir, data: filepath.Join(dir, "data"), port: port, asPostgres: os.Geteuid() == 0}
	if s.asPostgres {
		// initdb refuses to run as root; the folder becomes the postgres
		// user's.
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, the server needs the postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
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
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cmd("pg_ctl", "-D", s.data, "-m", "immediate", "stop").Run() })
	return s
}

// cmd runs one of the server's programs, as the postgres user when the
// test runs as root.
func (s *pgServer) cmd(program string, args ...string) *exec.Cmd {
	path := filepath.Join(s.bin, program)
	var cmd *exec.Cmd
	if s.asPostgres {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = s.dir
	return cmd
}

// start starts the server and waits until it takes connections. It
// listens on loopback only, without a Unix socket outside its folder.
func (s *pgServer) start() error {
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s -c max_connections=300", s.port, s.dir)
	cmd := s.cmd("pg_ctl", "-D", s.data, "-l", filepath.Join(s.dir, "server.log"), "-o", opts, "-w", "-t", "60", "start")
	// pg_ctl leaves the server running in its own session: it must not
	// hold the test's output open, nor die with the test's signals.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
		return fmt.Errorf("start PostgreSQL: %v\n%s\n%s", err, out, log)
	}
	return nil
}

// restart stops the server as a crash does (immediate: no checkpoint,
// every connection cut) and starts it again; it recovers from its WAL.
func (s *pgServer) restart() error {
	if out, err := s.cmd("pg_ctl", "-D", s.data, "-m", "immediate", "-w", "stop").CombinedOutput(); err != nil {
		return fmt.Errorf("stop PostgreSQL: %v\n%s", err, out)
	}
	return s.start()
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
