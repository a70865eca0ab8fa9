package node

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	bhttp "banksync/http"
)

// TestCustomerAuthFlags: the channel verifies customers' tokens with the
// HS256 secret or the identity provider's public key; with a public key it
// cannot mint tokens and needs its own cursor secret.
func TestCustomerAuthFlags(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	keyFile := filepath.Join(t.TempDir(), "idp.pub.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	long := strings.Repeat("s", 32)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	os.WriteFile(garbage, []byte("not a key"), 0o600)

	auth, _, err := customerAuth(ChannelConfig{JWTPublicKey: keyFile, CursorSecret: long, JWTIssuer: "idp"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auth.Issue("alice", time.Minute); err == nil {
		t.Error("a channel holding a public key minted a token")
	}
	if auth, _, err := customerAuth(ChannelConfig{JWTSecret: long}); err != nil {
		t.Fatal(err)
	} else if _, err := auth.Issue("alice", time.Minute); err != nil {
		t.Errorf("HS256: %v", err)
	}
	for _, tc := range []struct {
		name string
		cfg  ChannelConfig
		want string
	}{
		{"public key without cursor secret", ChannelConfig{JWTPublicKey: keyFile}, "--cursor-secret is required"},
		{"short cursor secret", ChannelConfig{JWTPublicKey: keyFile, CursorSecret: "short"}, "--cursor-secret is 5 bytes"},
		{"missing key file", ChannelConfig{JWTPublicKey: keyFile + ".nope", CursorSecret: long}, "--jwt-public-key"},
		{"not a key", ChannelConfig{JWTPublicKey: garbage, CursorSecret: long}, `no PEM "PUBLIC KEY" block`},
		{"short HS256 secret", ChannelConfig{JWTSecret: "short"}, "--jwt-secret"},
		{"negative leeway", ChannelConfig{JWTSecret: long, JWTLeeway: -time.Second}, "--jwt-leeway -1s is outside 0s to 5m0s"},
		{"leeway over the maximum", ChannelConfig{JWTSecret: long, JWTLeeway: 10 * time.Minute}, "--jwt-leeway 10m0s is outside 0s to 5m0s"},
		{"negative leeway, public key", ChannelConfig{JWTPublicKey: keyFile, CursorSecret: long, JWTLeeway: -time.Second}, "--jwt-leeway"},
	} {
		if _, _, err := customerAuth(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
	if l := perSecond(5); l.Rate != 5 || l.Burst != 10 {
		t.Errorf("perSecond(5) = %+v", l)
	}
	if l := perSecond(0); l.Rate != 0 {
		t.Errorf("perSecond(0) = %+v, want no limit", l)
	}
}

// TestCustomerAuthLeeway: the configured leeway reaches the authenticator:
// a token issued by a clock running ahead gets in with it and not without.
func TestCustomerAuthLeeway(t *testing.T) {
	secret := strings.Repeat("s", 32)
	ahead := time.Now().Add(10 * time.Second)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject: "alice", IssuedAt: jwt.NewNumericDate(ahead), NotBefore: jwt.NewNumericDate(ahead),
		ExpiresAt: jwt.NewNumericDate(ahead.Add(time.Minute)),
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	for leeway, want := range map[time.Duration]bool{0: false, bhttp.LeewayDefault: true} {
		auth, _, err := customerAuth(ChannelConfig{JWTSecret: secret, JWTLeeway: leeway})
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("GET", "/v1/accounts", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		if _, err := auth.Authenticate(r); (err == nil) != want {
			t.Errorf("leeway %v, token issued 10 s ahead: %v, want it in: %v", leeway, err, want)
		}
	}
}

// TestStartChannelRefusesAdminTokenEqualToServiceToken: core accepts the
// service token, so as the admin token too it would open the operator API
// to core. The replica refuses to start, before opening its database.
func TestStartChannelRefusesAdminTokenEqualToServiceToken(t *testing.T) {
	dbFile := filepath.Join(t.TempDir(), "channel.db")
	n, err := StartChannel(t.Context(), ChannelConfig{
		Listen: "127.0.0.1:0", DB: "sqlite:" + dbFile, CoreURL: "http://127.0.0.1:1",
		ServiceToken: "same-token", AdminToken: "same-token", JWTSecret: strings.Repeat("s", 32),
	})
	if err == nil {
		n.Close()
		t.Fatal("a channel with its admin token equal to its service token started")
	}
	if want := "--admin-token must differ from --service-token"; !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want it to say %q", err, want)
	}
	if _, err := os.Stat(dbFile); !os.IsNotExist(err) {
		t.Errorf("the refused channel opened its database (%s: %v)", dbFile, err)
	}
}
