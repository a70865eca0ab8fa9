package node

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"banksync"
	"banksync/channel"
	bhttp "banksync/http"
	"banksync/sqlite"
)

// TestChannelCloseEndsLiveStreams: a replica stopping with a customer's
// live stream open stops at once, ending the stream (its client
// reconnects elsewhere), rather than waiting out the shutdown timeout.
func TestChannelCloseEndsLiveStreams(t *testing.T) {
	const secret = "stream-test-jwt-secret-of-32-byte"
	db := filepath.Join(t.TempDir(), "channel.db")
	pre, err := sqlite.OpenChannel(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	if err := pre.AddAccount(t.Context(), "a1", "alice"); err != nil {
		t.Fatal(err)
	}
	pre.Close()
	n, err := StartChannel(t.Context(), ChannelConfig{
		Listen: "127.0.0.1:0", DB: "sqlite:" + db, CoreURL: "http://127.0.0.1:1",
		ServiceToken: "stream-test-token", AdminToken: "stream-test-admin-token", JWTSecret: secret,
		Channel: channel.Config{AmountMax: banksync.AmountMaxDefault},
	})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := bhttp.NewHS256Authenticator([]byte(secret), bhttp.AuthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.Issue("alice", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+n.Addr()+"/v1/accounts/a1/stream", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("open a stream = %d", resp.StatusCode)
	}
	start := time.Now()
	if err := n.Close(); err != nil {
		t.Errorf("close with a stream open: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("close with a stream open took %v, want it at once", took)
	}
}
