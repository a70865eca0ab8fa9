package http_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"banksync"
	bhttp "banksync/http"
)

// mint signs claims as given, so a test can build any token a client might
// send, good or bad.
func mint(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// goodClaims are what a valid token carries; each case spoils one.
func goodClaims(change func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"sub": "cust-a", "iss": authOptions.Issuer, "aud": authOptions.Audience,
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
	}
	if change != nil {
		change(c)
	}
	return c
}

func TestChannelAuthentication(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.setup(t, []string{"a1:cust-a"})
	secret := []byte(customerSecret)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	hs256 := func(change func(jwt.MapClaims)) string {
		return mint(t, jwt.SigningMethodHS256, secret, goodClaims(change))
	}
	past := func(d time.Duration) int64 { return time.Now().Add(-d).Unix() }
	future := func(d time.Duration) int64 { return time.Now().Add(d).Unix() }

	// The control: a well-formed token gets in, also within the leeway
	// (the stack's is 5 s): just expired, or from an identity provider
	// whose clock runs a second ahead.
	for name, tok := range map[string]string{
		"issued":                   func() string { tok, _ := s.auth.Issue("cust-a", time.Minute); return tok }(),
		"minted":                   hs256(nil),
		"within leeway":            hs256(func(c jwt.MapClaims) { c["exp"] = past(2 * time.Second) }),
		"issued 1 s in the future": hs256(func(c jwt.MapClaims) { c["iat"], c["nbf"] = future(time.Second), future(time.Second) }),
	} {
		if st, m := s.call(t, "", "GET", "/v1/accounts", nil, "Authorization", "Bearer "+tok); st != 200 || len(m["accounts"].([]any)) != 1 {
			t.Fatalf("%s token: GET /v1/accounts = %d %v, want 200 with a1", name, st, m)
		}
	}

	st, refused, h := s.do(t, "", "GET", "/v1/accounts", nil)
	if st != 401 || h.Get("WWW-Authenticate") != "Bearer" || !strings.Contains(string(refused), `"code":"`+banksync.EUNAUTHORIZED+`"`) {
		t.Fatalf("no token = %d %s (WWW-Authenticate %q), want 401 %s with Bearer challenge", st, refused, h.Get("WWW-Authenticate"), banksync.EUNAUTHORIZED)
	}
	for _, tc := range []struct {
		name string
		hdr  []string
	}{
		{"empty header", []string{"Authorization", " "}},
		{"bearer without token", []string{"Authorization", "Bearer "}},
		{"basic", []string{"Authorization", "Basic Y3VzdC1hOnB3"}},
		{"garbage", []string{"Authorization", "Bearer not.a.jwt"}},
		{"wrong secret", []string{"Authorization", "Bearer " + mint(t, jwt.SigningMethodHS256, []byte("another-secret-of-at-least-32-bytes!!"), goodClaims(nil))}},
		{"expired", []string{"Authorization", "Bearer " + hs256(func(c jwt.MapClaims) { c["exp"] = past(time.Hour) })}},
		{"expired beyond leeway", []string{"Authorization", "Bearer " + hs256(func(c jwt.MapClaims) { c["exp"] = past(10 * time.Second) })}},
		{"alg none", []string{"Authorization", "Bearer " + mint(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, goodClaims(nil))}},
		{"RS256", []string{"Authorization", "Bearer " + mint(t, jwt.SigningMethodRS256, rsaKey, goodClaims(nil))}},
		{"HS384 with the right secret", []string{"Authorization", "Bearer " + mint(t, jwt.SigningMethodHS384, secret, goodClaims(nil))}},
		{"missing exp", []string{"Authorization", "Bearer " + hs256(func(c jwt.MapClaims) { delete(c, "exp") })}},
		{"exp not a number", []string{"Authorization", "Bearer " + hs256(func(c jwt.MapClaims) { c["exp"] = "tomorrow" })}},
		{"not yet valid", []string{"Authorization", "Bearer " + hs256(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Hour).Unix() })}},
		{"issued in the future", []string{"Authorization", "Bearer " + hs256(func(c jwt.MapClaims) { c["iat"] = time.Now().Add(time.Hour).Unix() })}},
		{"issued beyond leeway", []string{"Authorization", "Bearer " + hs256(func(c jwt.MapClaims) { c["iat"] = future(10 * time.Second) })}},
		{"not yet valid beyond leeway", []string{"Authorization", "Bearer " + hs256(func(c jwt.MapClaims) { c["nbf"] = future(10 * time.Second) })}},
		{"missing sub", []string{"Authorization", "Bearer " + hs256(func(c jwt.MapClaims) { delete(c, "sub") })}},
		{"empty sub", []string{"Authorization", "Bearer " + hs256(func(c jwt.MapClaims) { c["sub"] = "" })}},
		{"bad sub", []string{"Authorization", "Bearer " + hs256(func(c jwt.MapClaims) { c["sub"] = "../cust-a" })}},
		{"sub too long", []string{"Authorization", "Bearer " + hs256(func(c jwt.MapClaims) { c["sub"] = strings.Repeat("c", 65) })}},
		{"wrong issuer", []string{"Authorization", "Bearer " + hs256(func(c jwt.MapClaims) { c["iss"] = "someone-else" })}},
		{"missing issuer", []string{"Authorization", "Bearer " + hs256(func(c jwt.MapClaims) { delete(c, "iss") })}},
		{"wrong audience", []string{"Authorization", "Bearer " + hs256(func(c jwt.MapClaims) { c["aud"] = "banksync-core" })}},
		{"missing audience", []string{"Authorization", "Bearer " + hs256(func(c jwt.MapClaims) { delete(c, "aud") })}},
		{"signature stripped", []string{"Authorization", "Bearer " + hs256(nil)[:strings.LastIndexByte(hs256(nil), '.')+1]}},
		{"oversized token", []string{"Authorization", "Bearer " + hs256(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("p", 5000) })}},
		{"two tokens", []string{"Authorization", "Bearer " + hs256(nil), "Authorization", "Bearer " + hs256(nil)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/v1/accounts", "/v1/accounts/a1/transactions", "/v1/nothing"} {
				st, raw, h := s.do(t, "", "GET", path, nil, tc.hdr...)
				if st != 401 || h.Get("WWW-Authenticate") != "Bearer" || !bytes.Equal(raw, refused) {
					t.Fatalf("GET %s = %d %s (WWW-Authenticate %q), want 401 %s", path, st, raw, h.Get("WWW-Authenticate"), refused)
				}
			}
		})
	}
}

func TestAuthenticatorConfig(t *testing.T) {
	if _, err := bhttp.NewHS256Authenticator([]byte("short"), bhttp.AuthOptions{}); err == nil {
		t.Errorf("a 5-byte secret was accepted")
	}
	a, err := bhttp.NewHS256Authenticator([]byte(customerSecret), bhttp.AuthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		customer string
		ttl      time.Duration
	}{{"", time.Minute}, {"../x", time.Minute}, {"cust-a", 0}, {"cust-a", -time.Second}} {
		if tok, err := a.Issue(tc.customer, tc.ttl); err == nil {
			t.Errorf("Issue(%q, %v) = %q, want an error", tc.customer, tc.ttl, tok)
		}
	}
	// Without issuer and audience configured, none are issued or required,
	// but the secret, algorithm and expiry still are.
	tok, err := a.Issue("cust-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.NewParser().ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return []byte(customerSecret), nil }); err != nil {
		t.Fatal(err)
	}
	if _, iss := claims["iss"]; iss || claims["sub"] != "cust-a" || claims["exp"] == nil {
		t.Errorf("issued claims = %v, want sub and exp, no iss", claims)
	}
	var nilAuth *bhttp.Authenticator
	if _, err := nilAuth.Authenticate(nil); banksync.ErrorCode(err) != banksync.EUNAUTHORIZED {
		t.Errorf("nil Authenticator: err %v, want %s", err, banksync.EUNAUTHORIZED)
	}
}

// pemPublic encodes a public key as the PEM a channel is configured with.
func pemPublic(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// TestPublicKeyAuthenticator: with an Ed25519 or RSA public key, only tokens
// signed by its private half with its one algorithm get in; "none", HS256
// keyed with the public key's bytes, another key, another algorithm, and
// bad claims are refused alike.
func TestPublicKeyAuthenticator(t *testing.T) {
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	_, otherEd, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	opts := bhttp.AuthOptions{Issuer: authOptions.Issuer, Audience: authOptions.Audience}
	try := func(a *bhttp.Authenticator, tok string) (string, error) {
		r := httptest.NewRequest("GET", "/v1/accounts", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		return a.Authenticate(r)
	}
	for _, tc := range []struct {
		name string
		pub  any
		good func(jwt.MapClaims) string
	}{
		{"EdDSA", edPub, func(c jwt.MapClaims) string { return mint(t, jwt.SigningMethodEdDSA, edKey, c) }},
		{"RS256", &rsaKey.PublicKey, func(c jwt.MapClaims) string { return mint(t, jwt.SigningMethodRS256, rsaKey, c) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pemKey := pemPublic(t, tc.pub)
			a, err := bhttp.NewPublicKeyAuthenticator(pemKey, opts)
			if err != nil {
				t.Fatal(err)
			}
			if c, err := try(a, tc.good(goodClaims(nil))); err != nil || c != "cust-a" {
				t.Fatalf("a good token = %q, %v", c, err)
			}
			if _, err := a.Issue("cust-a", time.Minute); err == nil {
				t.Fatal("a public-key authenticator minted a token")
			}
			none := mint(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, goodClaims(nil))
			for name, tok := range map[string]string{
				"alg none":                 none,
				"HS256 keyed with the PEM": mint(t, jwt.SigningMethodHS256, pemKey, goodClaims(nil)),
				"another Ed25519 key":      mint(t, jwt.SigningMethodEdDSA, otherEd, goodClaims(nil)),
				"the other algorithm":      map[string]string{"EdDSA": mint(t, jwt.SigningMethodRS256, rsaKey, goodClaims(nil)), "RS256": mint(t, jwt.SigningMethodEdDSA, edKey, goodClaims(nil))}[tc.name],
				"expired":                  tc.good(goodClaims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() })),
				"no exp":                   tc.good(goodClaims(func(c jwt.MapClaims) { delete(c, "exp") })),
				"wrong issuer":             tc.good(goodClaims(func(c jwt.MapClaims) { c["iss"] = "someone-else" })),
				"wrong audience":           tc.good(goodClaims(func(c jwt.MapClaims) { c["aud"] = "another-api" })),
				"bad subject":              tc.good(goodClaims(func(c jwt.MapClaims) { c["sub"] = "../admin" })),
				"signature cut":            func() string { tok := tc.good(goodClaims(nil)); return tok[:len(tok)-5] }(),
			} {
				if c, err := try(a, tok); err == nil || banksync.ErrorCode(err) != banksync.EUNAUTHORIZED {
					t.Errorf("%s: got in as %q (%v)", name, c, err)
				}
			}
		})
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, key := range map[string][]byte{
		"not PEM":         []byte("ssh-ed25519 AAAA"),
		"private key PEM": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}),
		"RSA 1024":        pemPublic(t, &small.PublicKey),
		"ECDSA":           pemPublic(t, &ecKey.PublicKey),
	} {
		if _, err := bhttp.NewPublicKeyAuthenticator(key, opts); err == nil {
			t.Errorf("%s: accepted as a token key", name)
		}
	}
}

// TestAuthenticatorLeeway: the clock leeway is what lets a token from an
// identity provider whose clock runs a second ahead (or behind) in, and
// only within it; a leeway below zero or over LeewayMax is refused.
func TestAuthenticatorLeeway(t *testing.T) {
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	at := func(d time.Duration) int64 { return time.Now().Add(d).Unix() }
	// Two seconds, not one: claims are whole seconds, so a token one second
	// ahead could turn valid without leeway if the second ticks over
	// between minting and checking.
	const ahead, beyond = 2 * time.Second, bhttp.LeewayDefault + 5*time.Second
	for _, tc := range []struct {
		name   string
		change func(jwt.MapClaims)
		in     map[time.Duration]bool // leeway -> whether the token gets in
	}{
		{"on time", nil, map[time.Duration]bool{0: true, bhttp.LeewayDefault: true}},
		{"issued 2 s ahead", func(c jwt.MapClaims) { c["iat"] = at(ahead) }, map[time.Duration]bool{0: false, bhttp.LeewayDefault: true}},
		{"valid from 2 s ahead", func(c jwt.MapClaims) { c["nbf"] = at(ahead) }, map[time.Duration]bool{0: false, bhttp.LeewayDefault: true}},
		{"expired 2 s ago", func(c jwt.MapClaims) { c["exp"] = at(-ahead) }, map[time.Duration]bool{0: false, bhttp.LeewayDefault: true}},
		{"issued beyond the leeway", func(c jwt.MapClaims) { c["iat"] = at(beyond) }, map[time.Duration]bool{0: false, bhttp.LeewayDefault: false}},
		{"valid from beyond the leeway", func(c jwt.MapClaims) { c["nbf"] = at(beyond) }, map[time.Duration]bool{0: false, bhttp.LeewayDefault: false}},
		{"expired beyond the leeway", func(c jwt.MapClaims) { c["exp"] = at(-beyond) }, map[time.Duration]bool{0: false, bhttp.LeewayDefault: false}},
	} {
		for leeway, want := range tc.in {
			opts := bhttp.AuthOptions{Issuer: authOptions.Issuer, Audience: authOptions.Audience, Leeway: leeway}
			hs, err := bhttp.NewHS256Authenticator([]byte(customerSecret), opts)
			if err != nil {
				t.Fatal(err)
			}
			ed, err := bhttp.NewPublicKeyAuthenticator(pemPublic(t, edPub), opts)
			if err != nil {
				t.Fatal(err)
			}
			for alg, a := range map[string]struct {
				auth *bhttp.Authenticator
				tok  string
			}{
				"HS256": {hs, mint(t, jwt.SigningMethodHS256, []byte(customerSecret), goodClaims(tc.change))},
				"EdDSA": {ed, mint(t, jwt.SigningMethodEdDSA, edKey, goodClaims(tc.change))},
			} {
				r := httptest.NewRequest("GET", "/v1/accounts", nil)
				r.Header.Set("Authorization", "Bearer "+a.tok)
				c, err := a.auth.Authenticate(r)
				if got := err == nil && c == "cust-a"; got != want {
					t.Errorf("%s, %s, leeway %v: got in %v (%q, %v), want %v", tc.name, alg, leeway, got, c, err, want)
				}
				if err != nil && banksync.ErrorCode(err) != banksync.EUNAUTHORIZED {
					t.Errorf("%s, %s, leeway %v: error code %s, want %s", tc.name, alg, leeway, banksync.ErrorCode(err), banksync.EUNAUTHORIZED)
				}
			}
		}
	}
	for _, leeway := range []time.Duration{-time.Second, bhttp.LeewayMax + time.Second} {
		opts := bhttp.AuthOptions{Leeway: leeway}
		if _, err := bhttp.NewHS256Authenticator([]byte(customerSecret), opts); err == nil || !strings.Contains(err.Error(), "leeway") {
			t.Errorf("HS256 with leeway %v: %v, want an error naming the leeway", leeway, err)
		}
		if _, err := bhttp.NewPublicKeyAuthenticator(pemPublic(t, edPub), opts); err == nil || !strings.Contains(err.Error(), "leeway") {
			t.Errorf("public key with leeway %v: %v, want an error naming the leeway", leeway, err)
		}
	}
	if _, err := bhttp.NewHS256Authenticator([]byte(customerSecret), bhttp.AuthOptions{Leeway: bhttp.LeewayMax}); err != nil {
		t.Errorf("leeway LeewayMax: %v, want it accepted", err)
	}
}
