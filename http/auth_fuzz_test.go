package http_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"banksync"
	bhttp "banksync/http"
)

// FuzzAuthenticate feeds Authorization header values. Authenticate must
// never panic and never let in a token that does not carry an HS256 MAC
// under the key over its header and claims, nor one whose claims the
// Authenticator is configured to refuse; and a token Issue made for a valid
// customer id is let in as that customer.
func FuzzAuthenticate(f *testing.F) {
	auth, err := bhttp.NewHS256Authenticator([]byte(customerSecret), authOptions)
	if err != nil {
		f.Fatal(err)
	}
	issued, err := auth.Issue("cust-a", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	claims := jwt.MapClaims{"sub": "cust-a", "iss": authOptions.Issuer, "aud": authOptions.Audience,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	sign := func(method jwt.SigningMethod, key any, change func(jwt.MapClaims)) string {
		c := jwt.MapClaims{}
		for k, v := range claims {
			c[k] = v
		}
		if change != nil {
			change(c)
		}
		tok, err := jwt.NewWithClaims(method, c).SignedString(key)
		if err != nil {
			f.Fatal(err)
		}
		return tok
	}
	secret := []byte(customerSecret)
	// An RS256 token's header and claims: its signature cannot be checked
	// with an HMAC key whatever bytes it holds.
	rs256 := segment(`{"alg":"RS256","typ":"JWT"}`) + "." + strings.Split(issued, ".")[1] + "." + segment(strings.Repeat("\x5a", 256))
	for _, seed := range []struct{ authorization, customer string }{
		{"Bearer " + issued, "cust-a"},
		{"bearer  " + issued + " ", "cust-b"},
		{"Bearer " + sign(jwt.SigningMethodHS256, secret, nil), "a"},
		{"Bearer " + sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil), "c.1:x-y_z"},
		{"Bearer " + strings.TrimSuffix(sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil), ".") + "." + strings.Split(issued, ".")[2], ""},
		{"Bearer " + rs256, "../cust-a"},
		{"Bearer " + segment(`{"alg":"HS256","typ":"JWT"}`) + "." + strings.Split(rs256, ".")[1] + "." + strings.Split(rs256, ".")[2], strings.Repeat("c", 65)},
		{"Bearer " + sign(jwt.SigningMethodHS384, secret, nil), "cust-a"},
		{"Bearer " + sign(jwt.SigningMethodHS256, []byte("another secret, long enough to sign with"), nil), "cust-a"},
		{"Bearer " + sign(jwt.SigningMethodHS256, secret, func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() }), "cust-a"},
		{"Bearer " + sign(jwt.SigningMethodHS256, secret, func(c jwt.MapClaims) { delete(c, "exp") }), "cust-a"},
		{"Bearer " + sign(jwt.SigningMethodHS256, secret, func(c jwt.MapClaims) { c["sub"] = "../cust-a" }), "cust-a"},
		{"Bearer " + sign(jwt.SigningMethodHS256, secret, func(c jwt.MapClaims) { c["aud"] = []string{"x", authOptions.Audience} }), "cust-a"},
		{"Bearer " + sign(jwt.SigningMethodHS256, secret, func(c jwt.MapClaims) { c["pad"] = strings.Repeat("p", 5000) }), "cust-a"},
		{"Bearer " + strings.Repeat("A", 5<<10), "cust-a"},
		{"Bearer eyJ.eyJ.sig", "cust-a"},
		{"Basic Y3VzdC1hOnB3", "cust-a"},
		{"Bearer ", "cust-a"},
		{"", "cust-a"},
	} {
		f.Add(seed.authorization, seed.customer)
	}
	f.Fuzz(func(t *testing.T, authorization, customer string) {
		r := httptest.NewRequest("GET", "/v1/accounts", nil)
		r.Header["Authorization"] = []string{authorization}
		if got, err := auth.Authenticate(r); err == nil {
			if why := notToBeLetIn(authorization, got, time.Now()); why != "" {
				t.Fatalf("Authorization %q let in as %q, but %s", authorization, got, why)
			}
		} else if banksync.ErrorCode(err) != banksync.EUNAUTHORIZED {
			t.Fatalf("Authorization %q refused with code %q, want %q: %v", authorization, banksync.ErrorCode(err), banksync.EUNAUTHORIZED, err)
		}

		if !banksync.ValidID(customer) {
			return
		}
		tok, err := auth.Issue(customer, time.Minute)
		if err != nil {
			t.Fatalf("Issue(%q): %v", customer, err)
		}
		r.Header["Authorization"] = []string{"Bearer " + tok}
		if got, err := auth.Authenticate(r); err != nil || got != customer {
			t.Fatalf("token issued for %q let in as %q, %v", customer, got, err)
		}
	})
}

// notToBeLetIn says why the token in authorization, let in as customer at
// now, should have been refused, or is "" if it carries an HS256 MAC under
// customerSecret and claims that hold: the MAC and claims checked here
// without the JWT library.
func notToBeLetIn(authorization, customer string, now time.Time) string {
	tok := strings.TrimSpace(authorization[len("Bearer "):])
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "it is not three segments"
	}
	mac := hmac.New(sha256.New, []byte(customerSecret))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if sig, err := base64.RawURLEncoding.DecodeString(parts[2]); err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
		return "its signature is not an HS256 MAC under the key"
	}
	var header struct {
		Alg string `json:"alg"`
	}
	var claims struct {
		Sub string          `json:"sub"`
		Iss string          `json:"iss"`
		Aud json.RawMessage `json:"aud"`
		Exp *float64        `json:"exp"`
		Nbf *float64        `json:"nbf"`
		Iat *float64        `json:"iat"`
	}
	if err := unmarshalSegment(parts[0], &header); err != nil || header.Alg != "HS256" {
		return "its header does not name HS256"
	}
	if err := unmarshalSegment(parts[1], &claims); err != nil {
		return "its claims do not decode: " + err.Error()
	}
	leeway := authOptions.Leeway.Seconds() + 1 // a second of rounding
	t := float64(now.Unix())
	switch {
	case claims.Sub != customer || !banksync.ValidID(customer):
		return "its subject is " + claims.Sub
	case claims.Iss != authOptions.Issuer:
		return "its issuer is " + claims.Iss
	case !strings.Contains(string(claims.Aud), `"`+authOptions.Audience+`"`):
		return "its audience is " + string(claims.Aud)
	case claims.Exp == nil || *claims.Exp+leeway < t:
		return "it has no expiry or has expired"
	case claims.Nbf != nil && *claims.Nbf-leeway > t:
		return "it is not valid yet"
	case claims.Iat != nil && *claims.Iat-leeway > t:
		return "it was issued in the future"
	}
	return ""
}

func segment(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func unmarshalSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
