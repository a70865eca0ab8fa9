package node

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
