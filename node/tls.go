package node

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
)

// TLSVersionMin is the oldest protocol core and the channel speak to each
// other; Go negotiates TLS 1.3 whenever both ends have it.
const TLSVersionMin = tls.VersionTLS12

// coreServerTLS returns the configuration core serves HTTPS with, or nil
// for plain HTTP when certFile is unset. With clientCAFile, core completes
// a handshake only with a client whose certificate chains to that bundle:
// the service token then travels only from a caller that holds a key.
func coreServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		if clientCAFile != "" {
			return nil, errors.New("--client-ca needs --tls-cert and --tls-key: core verifies client certificates only when it serves TLS")
		}
		return nil, nil
	}
	cert, err := LoadKeyPair("--tls-cert", certFile, "--tls-key", keyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: TLSVersionMin, Certificates: []tls.Certificate{cert}}
	if clientCAFile != "" {
		if cfg.ClientCAs, err = LoadCertPool("--client-ca", clientCAFile); err != nil {
			return nil, err
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// coreClientTransport returns the channel's transport to core when any of
// caFile, certFile and keyFile is set, else nil for the default one. caFile
// unset, core's certificate is verified against the system roots.
func coreClientTransport(coreURL, caFile, certFile, keyFile string) (http.RoundTripper, error) {
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	// Over http:// the files would be loaded and silently never used.
	if u, err := url.Parse(coreURL); err != nil || u.Scheme != "https" {
		return nil, fmt.Errorf("--core-ca, --core-cert and --core-key need an https:// --core-url, not %q", coreURL)
	}
	cfg := &tls.Config{MinVersion: TLSVersionMin}
	if caFile != "" {
		pool, err := LoadCertPool("--core-ca", caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		cert, err := LoadKeyPair("--core-cert", certFile, "--core-key", keyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	base, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("http.DefaultTransport is a %T, not an *http.Transport", http.DefaultTransport)
	}
	t := base.Clone()
	t.TLSClientConfig = cfg
	return t, nil
}

// LoadKeyPair reads a PEM certificate (chain) and its private key, named by
// the flags certFlag and keyFlag in errors. One without the other is an
// error, as is a key that does not belong to the certificate.
func LoadKeyPair(certFlag, certFile, keyFlag, keyFile string) (tls.Certificate, error) {
	switch {
	case certFile == "":
		return tls.Certificate{}, fmt.Errorf("%s is set but %s is not: the key needs its certificate", keyFlag, certFlag)
	case keyFile == "":
		return tls.Certificate{}, fmt.Errorf("%s is set but %s is not: the certificate needs its private key", certFlag, keyFlag)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: %w", certFlag, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: %w", keyFlag, err)
	}
	// X509KeyPair says which of the two it could not parse, and whether
	// the key matches the certificate's public key.
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s %s with %s %s: %w", certFlag, certFile, keyFlag, keyFile, err)
	}
	return cert, nil
}

// LoadCertPool reads a PEM bundle of CA certificates. Unlike
// CertPool.AppendCertsFromPEM, which skips what it cannot parse, it fails
// on a broken certificate and on a bundle with none in it.
func LoadCertPool(flag, file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s %s: certificate %d: %w", flag, file, n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s %s: no PEM certificates in it", flag, file)
	}
	return pool, nil
}
