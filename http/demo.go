package http

import (
	"log/slog"
	"net"
	"net/http"

	"banksync"
)

// DemoCustomer is one of the demo's customers and the accounts they own.
type DemoCustomer struct {
	ID, Name string
	Accounts []string
}

// DemoServer is the demo's sign-in: it hands a token for any demo customer
// to whoever asks, so it answers only requests addressed to this machine
// (loopback Host), which also stops a web page from reaching it by DNS
// rebinding. Only `banksync demo` mounts it.
type DemoServer struct {
	customers []DemoCustomer
	issue     func(customer string) (string, error)
	log       *slog.Logger
	mux       *http.ServeMux
}

// NewDemoServer serves GET /demo/v1/customers: the customers with fresh
// tokens from issue, and the accounts they can pay.
func NewDemoServer(customers []DemoCustomer, issue func(customer string) (string, error), log *slog.Logger) *DemoServer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &DemoServer{customers: customers, issue: issue, log: log, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /demo/v1/customers", s.list)
	s.mux.HandleFunc("/", NoRoute(s.mux, s.log))
	return s
}

func (s *DemoServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !LoopbackHost(r.Host) {
		writeError(w, r, s.log, banksync.Errorf(banksync.ENOTFOUND, "the demo's sign-in answers only on this machine"))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	s.mux.ServeHTTP(w, r)
}

func (s *DemoServer) list(w http.ResponseWriter, r *http.Request) {
	type customer struct {
		ID    string `json:"customer"`
		Name  string `json:"name"`
		Token string `json:"token"`
	}
	type payee struct {
		Account string `json:"account_id"`
		Name    string `json:"name"`
	}
	body := struct {
		Customers []customer `json:"customers"`
		Payees    []payee    `json:"payees"`
	}{Customers: []customer{}, Payees: []payee{}}
	for _, c := range s.customers {
		tok, err := s.issue(c.ID)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		body.Customers = append(body.Customers, customer{c.ID, c.Name, tok})
		for _, a := range c.Accounts {
			body.Payees = append(body.Payees, payee{a, c.Name})
		}
	}
	writeJSON(w, http.StatusOK, body)
}

// LoopbackHost tells whether host names this machine: localhost or a
// loopback address, with or without a port.
func LoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
