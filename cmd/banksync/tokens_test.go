package main_test

import (
	"path/filepath"
	"strings"
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
// minutes (an expired token would stay good that much longer), from the
// flag or its variable, is refused before anything starts, with exit
// status 2 and a line naming the setting and the range.
func TestChannelRefusesBadJWTLeeway(t *testing.T) {
	t.Parallel()
	const takes = "want a duration such as 10s, from 0s to 5m (see banksync channel -h)"
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"--jwt-leeway", "-1s"}, `banksync channel: invalid value "-1s" for flag -jwt-leeway: ` + takes},
		{nil, []string{"--jwt-leeway", "5m1s"}, `banksync channel: invalid value "5m1s" for flag -jwt-leeway: ` + takes},
		{nil, []string{"--jwt-leeway", "1h"}, `banksync channel: invalid value "1h" for flag -jwt-leeway: ` + takes},
		{[]string{"BANKSYNC_JWT_LEEWAY=-30s"}, nil, `banksync channel: BANKSYNC_JWT_LEEWAY="-30s": ` + takes},
	} {
		t.Run(strings.Join(append(tc.env, tc.args...), " "), func(t *testing.T) {
			t.Parallel()
			stdout, stderr, status := call(t, append(tc.env, startupEnv...), channelArgs(t, tc.args...)...)
			if status != 2 || stderr != tc.want+"\n" || stdout != "" {
				t.Fatalf("exit status %d, stdout %q, stderr:\n%s\nwant status 2 and on stderr:\n%s", status, stdout, stderr, tc.want)
			}
		})
	}
}

// TestChannelJWTLeeway: by default the channel lets in a token from an
// identity provider whose clock runs ten seconds ahead; --jwt-leeway 0s
// does not.
func TestChannelJWTLeeway(t *testing.T) {
	t.Parallel()
	// Minted just before it is sent: a channel slow to start on a loaded
	// machine must not let the token's 10 s run out first.
	aheadToken := func() string {
		ahead := time.Now().Add(10 * time.Second)
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
			Subject: "alice", IssuedAt: jwt.NewNumericDate(ahead), NotBefore: jwt.NewNumericDate(ahead),
			ExpiresAt: jwt.NewNumericDate(ahead.Add(time.Hour)),
		}).SignedString([]byte("0123456789abcdef0123456789abcdef")) // startupEnv's secret
		if err != nil {
			t.Fatal(err)
		}
		return tok
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
			if st, body := send(t, "GET", "http://"+ch.addr+"/v1/accounts", aheadToken(), ""); st != tc.want {
				t.Errorf("GET /v1/accounts with a token issued 10 s ahead = %d %s, want %d", st, body, tc.want)
			}
		})
	}
}
