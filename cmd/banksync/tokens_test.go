package main_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// channelArgs are a channel's flags for a start that needs no core and no
// Kafka: its own SQLite file, any port, a core nothing listens on.
func channelArgs(t *testing.T, more ...string) []string {
	t.Helper()
	return append([]string{"channel", "--db", "sqlite:" + filepath.Join(t.TempDir(), "channel.db"),
		"--listen", "127.0.0.1:0", "--core-url", "http://" + closedAddr(t)}, more...)
}

// TestChannelRefusesAdminTokenEqualToServiceToken: core accepts the
// service token, so as the admin token too it would open the operator API
// to core and to anyone holding it; the channel does not start.
func TestChannelRefusesAdminTokenEqualToServiceToken(t *testing.T) {
	t.Parallel()
	// startupEnv's service token is "svc".
	failStart(t, []string{"--admin-token must differ from --service-token"}, channelArgs(t, "--admin-token", "svc")...)
}

// TestChannelRefusesBadJWTLeeway: a negative leeway, or one over five
// minutes (an expired token would stay good that much longer), stops the
// start with a line naming the flag and the range.
func TestChannelRefusesBadJWTLeeway(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ leeway, want string }{
		{"-1s", "--jwt-leeway -1s is outside 0s to 5m0s"},
		{"5m1s", "--jwt-leeway 5m1s is outside 0s to 5m0s"},
		{"1h", "--jwt-leeway 1h0m0s is outside 0s to 5m0s"},
	} {
		t.Run(tc.leeway, func(t *testing.T) {
			t.Parallel()
			failStart(t, []string{tc.want}, channelArgs(t, "--jwt-leeway", tc.leeway)...)
		})
	}
}

// TestChannelRefusesBadJWTLeewayFromEnvironment: BANKSYNC_JWT_LEEWAY is
// checked as the flag is. Not parallel: it sets the test's environment,
// which failStart passes on.
func TestChannelRefusesBadJWTLeewayFromEnvironment(t *testing.T) {
	t.Setenv("BANKSYNC_JWT_LEEWAY", "-30s")
	failStart(t, []string{"--jwt-leeway -30s is outside 0s to 5m0s"}, channelArgs(t)...)
}

// TestChannelJWTLeeway: by default the channel lets in a token from an
// identity provider whose clock runs ten seconds ahead; --jwt-leeway 0s
// does not.
func TestChannelJWTLeeway(t *testing.T) {
	t.Parallel()
	ahead := time.Now().Add(10 * time.Second)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject: "alice", IssuedAt: jwt.NewNumericDate(ahead), NotBefore: jwt.NewNumericDate(ahead),
		ExpiresAt: jwt.NewNumericDate(ahead.Add(time.Hour)),
	}).SignedString([]byte("0123456789abcdef0123456789abcdef")) // startupEnv's secret
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		flags []string
		want  int
	}{
		{"default", nil, 200},
		{"no leeway", []string{"--jwt-leeway", "0s"}, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ch := startProc(t, startupEnv, "channel listening", "addr", channelArgs(t, tc.flags...)...)
			if st, body := send(t, "GET", "http://"+ch.addr+"/v1/accounts", tok, ""); st != tc.want {
				t.Errorf("GET /v1/accounts with a token issued 10 s ahead = %d %s, want %d", st, body, tc.want)
			}
		})
	}
}
