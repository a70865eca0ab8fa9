package node

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"banksync/metrics"
)

// TestServerBoundsSlowAndHugeClients: the servers core and channel run
// with close a connection whose headers trickle in past readHeaderTimeout
// (a slow client cannot hold it), and refuse headers over headerBytesMax
// with 431.
func TestServerBoundsSlowAndHugeClients(t *testing.T) {
	var wg sync.WaitGroup
	defer wg.Wait()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	srv, err := serve(&wg, "test", "127.0.0.1:0", ok, func(*http.Request) string { return "/" }, nil,
		metrics.NewHTTP(prometheus.NewRegistry(), "test"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.srv.Close()
	ln := srv.ln

	// Headers that never end: the server hangs up after the timeout.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	go func() { // keep trickling, a byte a second, as a slow-loris client does
		for range 20 {
			time.Sleep(time.Second)
			if _, err := io.WriteString(c, "a"); err != nil {
				return
			}
		}
	}()
	c.SetReadDeadline(time.Now().Add(readHeaderTimeout + 10*time.Second))
	reply, _ := io.ReadAll(c) // ends when the server closes the connection
	if held := time.Since(start); held > readHeaderTimeout+3*time.Second || strings.HasPrefix(string(reply), "HTTP/1.1 200") {
		t.Fatalf("a trickling client held the connection %v and got %q; want it closed after about %v", held, reply, readHeaderTimeout)
	}

	// Headers over the cap.
	c2, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	big := "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 2*headerBytesMax) + "\r\n\r\n"
	go io.WriteString(c2, big)
	resp, err := http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("headers of %d bytes = %d, want 431", 2*headerBytesMax, resp.StatusCode)
	}
}
