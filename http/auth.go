package http

import (
	"context"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"banksync"
)

// Limits on customer credentials.
const (
	// secretLengthMin follows RFC 7518 §3.2: an HS256 key must be at least
	// as long as the hash output.
	secretLengthMin = 32
	// tokenLengthMax bounds what the parser is given; our tokens are a few
	// hundred bytes.
	tokenLengthMax = 4 << 10
)

// Clock leeway on a token's exp, nbf and iat: an identity provider whose
// clock runs a second ahead issues tokens that look issued in the future.
// LeewayMax bounds it because every second of leeway is a second more an
// expired token still opens the customer's accounts.
const (
	LeewayDefault = 30 * time.Second
	LeewayMax     = 5 * time.Minute
)

// AuthOptions are the claims an Authenticator checks beside the signature
// and expiry. Empty Issuer or Audience is not checked (and not issued).
type AuthOptions struct {
	Issuer   string
	Audience string
	Leeway   time.Duration // clock skew allowed on exp, nbf and iat: 0 to LeewayMax
}

func (o AuthOptions) check() error {
	if o.Leeway < 0 || o.Leeway > LeewayMax {
		return fmt.Errorf("token clock leeway %v is outside 0s to %v", o.Leeway, LeewayMax)
	}
	return nil
}

// Authenticator verifies customers' bearer tokens: JWTs whose subject is
// the customer id, signed with HS256 under a shared secret (the demo), or
// with EdDSA or RS256 by an identity provider whose public key it holds
// (production: the channel can then verify tokens but never mint one).
type Authenticator struct {
	secret []byte // HS256 only; nil for a public key
	key    any    // what verifies a signature: the secret, or the public key
	opts   AuthOptions
	parser *jwt.Parser
}

// rsaBitsMin is the smallest RSA key accepted for RS256.
const rsaBitsMin = 2048

// NewHS256Authenticator returns an Authenticator for tokens signed with
// secret. The algorithm is pinned to HS256, so a token naming "none" or an
// asymmetric algorithm is refused before any key is used, and exp is
// required.
func NewHS256Authenticator(secret []byte, opts AuthOptions) (*Authenticator, error) {
	if len(secret) < secretLengthMin {
		return nil, fmt.Errorf("token secret is %d bytes; at least %d are required", len(secret), secretLengthMin)
	}
	if err := opts.check(); err != nil {
		return nil, err
	}
	secret = append([]byte(nil), secret...)
	return &Authenticator{secret: secret, key: secret, opts: opts, parser: newParser(jwt.SigningMethodHS256, opts)}, nil
}

// NewPublicKeyAuthenticator returns an Authenticator for tokens signed by
// the holder of the private half of a PEM "PUBLIC KEY" (PKIX): an Ed25519
// key pins the algorithm to EdDSA, an RSA key of at least 2048 bits to
// RS256. Any other algorithm — "none", HS256 keyed with the public key's
// bytes — is refused before the key is used.
func NewPublicKeyAuthenticator(publicKeyPEM []byte, opts AuthOptions) (*Authenticator, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	block, _ := pem.Decode(publicKeyPEM)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New(`token public key: no PEM "PUBLIC KEY" block`)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("token public key: %w", err)
	}
	var method jwt.SigningMethod
	switch k := pub.(type) {
	case ed25519.PublicKey:
		method = jwt.SigningMethodEdDSA
	case *rsa.PublicKey:
		if k.N.BitLen() < rsaBitsMin {
			return nil, fmt.Errorf("token public key: RSA key of %d bits; at least %d are required", k.N.BitLen(), rsaBitsMin)
		}
		method = jwt.SigningMethodRS256
	default:
		return nil, fmt.Errorf("token public key: a %T; use an Ed25519 (EdDSA) or RSA (RS256) key", pub)
	}
	return &Authenticator{key: pub, opts: opts, parser: newParser(method, opts)}, nil
}

// newParser pins the one algorithm, requires exp, and checks iss and aud
// when configured.
func newParser(method jwt.SigningMethod, opts AuthOptions) *jwt.Parser {
	popts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{method.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(), // one spelling of each token: no padding, no stray bits
		jwt.WithLeeway(opts.Leeway),
	}
	if opts.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(opts.Issuer))
	}
	if opts.Audience != "" {
		popts = append(popts, jwt.WithAudience(opts.Audience))
	}
	return jwt.NewParser(popts...)
}

// Issue mints a token for customer valid for ttl. Only an HS256
// Authenticator can: a public key verifies, it does not sign.
func (a *Authenticator) Issue(customer string, ttl time.Duration) (string, error) {
	if a.secret == nil {
		return "", errors.New("issue token: this authenticator holds a public key, not a signing secret")
	}
	if !banksync.ValidID(customer) {
		return "", fmt.Errorf("issue token: customer id %q is not valid", customer)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("issue token: ttl %v is not positive", ttl)
	}
	now := time.Now()
	claims := jwt.RegisteredClaims{
		Issuer:    a.opts.Issuer,
		Subject:   customer,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	if a.opts.Audience != "" {
		claims.Audience = jwt.ClaimStrings{a.opts.Audience}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(a.secret)
	if err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	return s, nil
}

// errUnauthorized is the one answer to every bad credential: which check
// failed is logged, never told.
var errUnauthorized = banksync.Errorf(banksync.EUNAUTHORIZED, "a valid bearer token is required")

// Authenticate returns the customer id of the request's bearer token. A
// nil Authenticator refuses everyone.
func (a *Authenticator) Authenticate(r *http.Request) (string, error) {
	if a == nil {
		return "", errors.Join(errUnauthorized, errors.New("no authenticator configured"))
	}
	h := r.Header.Values("Authorization")
	const prefix = "Bearer "
	if len(h) != 1 || len(h[0]) <= len(prefix) || !strings.EqualFold(h[0][:len(prefix)], prefix) {
		return "", errors.Join(errUnauthorized, errors.New("no single bearer authorization header"))
	}
	raw := strings.TrimSpace(h[0][len(prefix):])
	if len(raw) > tokenLengthMax {
		return "", errors.Join(errUnauthorized, fmt.Errorf("token longer than %d bytes", tokenLengthMax))
	}
	var claims jwt.RegisteredClaims
	if _, err := a.parser.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return a.key, nil }); err != nil {
		return "", errors.Join(errUnauthorized, err)
	}
	if !banksync.ValidID(claims.Subject) {
		return "", errors.Join(errUnauthorized, fmt.Errorf("subject %q is not a valid customer id", claims.Subject))
	}
	return claims.Subject, nil
}

type customerKey struct{}

// WithCustomer returns ctx carrying the authenticated customer id.
func WithCustomer(ctx context.Context, customer string) context.Context {
	return context.WithValue(ctx, customerKey{}, customer)
}

// CustomerFrom returns the authenticated customer id in ctx.
func CustomerFrom(ctx context.Context) (string, bool) {
	c, ok := ctx.Value(customerKey{}).(string)
	return c, ok && c != ""
}
