package deployed_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds of the processes.
const (
	// upTimeout bounds a process's start until it answers its probe.
	upTimeout  = 60 * time.Second
	probeEvery = 100 * time.Millisecond
	// restartBackoff is how long the supervisor waits before starting a
	// process that exited again.
	restartBackoff = 500 * time.Millisecond
)

// banksyncBin is the banksync binary built with the chaos tag (its only
// difference: --chaos-clock-skew and --chaos-unsafe), once for the
// package's tests, by TestMain.
var banksyncBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "banksync-deployed-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	banksyncBin = filepath.Join(dir, "banksync")
	out, err := exec.Command("go", "build", "-tags", "chaos", "-o", banksyncBin, "banksync/cmd/banksync").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build -tags chaos: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is one banksync process the run starts, kills, pauses and starts
// again with the same arguments. Its output goes to a log file, appended
// across restarts.
type proc struct {
	name string
	bin  string
	args []string
	log  string
	base string // the API's base URL, http://host:port

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// start starts the process, if it is not running, and waits until its
// probe answers. A process that exits while starting (its database
// refusing connections, say) is started again, as a supervisor (systemd,
// Kubernetes) would, until upTimeout.
func (p *proc) start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, upTimeout)
	defer cancel()
	for {
		exited, err := p.launch()
		if err != nil {
			return err
		}
		err = p.waitUp(ctx, exited)
		if !errors.Is(err, errExited) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not stay up within %v; see %s", p.name, upTimeout, p.log)
		case <-time.After(restartBackoff):
		}
	}
}

// launch starts the process unless it is running, and returns what closes
// when it exits.
func (p *proc) launch() (chan struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.exited:
			p.cmd = nil // it died on its own: start it again
		default:
			return p.exited, nil
		}
	}
	out, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); out.Close(); close(exited) }()
	p.cmd, p.exited = cmd, exited
	return exited, nil
}

// errExited is a process that exited before its probe answered.
var errExited = errors.New("exited while starting")

// waitUp waits until the probe answers 200, the process exits or ctx
// ends.
func (p *proc) waitUp(ctx context.Context, exited chan struct{}) error {
	hc := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", p.base+"/healthz", nil)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("%s %w; see %s", p.name, errExited, p.log)
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer %s/healthz within %v; see %s", p.name, p.base, upTimeout, p.log)
		case <-time.After(probeEvery):
		}
	}
}

// kill stops the process with SIGKILL, as a crash or the OOM killer does,
// and waits until it is gone.
func (p *proc) kill() error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return errors.New(p.name + " is not running")
	}
	cmd.Process.Kill()
	<-exited
	return nil
}

// pause stops the process with SIGSTOP, as a long GC pause or a frozen VM
// does; resume continues it.
// Both signal the process running now: resuming one started again since
// its pause does nothing.
func (p *proc) pause() error  { return p.signal(syscall.SIGSTOP) }
func (p *proc) resume() error { return p.signal(syscall.SIGCONT) }

func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return errors.New(p.name + " is not running")
	}
	return p.cmd.Process.Signal(sig)
}

// stop ends the process in order (SIGTERM), or kills it after a while.
func (p *proc) stop() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGCONT)
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

// freePort is a loopback port free now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
