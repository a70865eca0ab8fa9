package http

import (
	"context"
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

// AuthOptions are the claims an Authenticator checks beside the signature
// and expiry. Empty Issuer or Audience is not checked (and not issued).
type AuthOptions struct {
	Issuer   string
	Audience string
	Leeway   time.Duration // clock skew allowed on exp, nbf and iat
}

// Authenticator verifies customers' bearer tokens: JWTs signed with HS256
// under a shared secret, whose subject is the customer id.
type Authenticator struct {
	secret []byte
	opts   AuthOptions
	parser *jwt.Parser
}

// NewHS256Authenticator returns an Authenticator for tokens signed with
// secret. The algorithm is pinned to HS256, so a token naming "none" or an
// asymmetric algorithm is refused before any key is used, and exp is
// required.
func NewHS256Authenticator(secret []byte, opts AuthOptions) (*Authenticator, error) {
	if len(secret) < secretLengthMin {
		return nil, fmt.Errorf("token secret is %d bytes; at least %d are required", len(secret), secretLengthMin)
	}
	popts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(opts.Leeway),
	}
	if opts.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(opts.Issuer))
	}
	if opts.Audience != "" {
		popts = append(popts, jwt.WithAudience(opts.Audience))
	}
	return &Authenticator{secret: append([]byte(nil), secret...), opts: opts, parser: jwt.NewParser(popts...)}, nil
}

// Issue mints a token for customer valid for ttl.
func (a *Authenticator) Issue(customer string, ttl time.Duration) (string, error) {
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
	if _, err := a.parser.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return a.secret, nil }); err != nil {
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
