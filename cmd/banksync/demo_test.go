package main_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTwoDemosAtOnce: two demos asked for the same Kafka port, taken
// already (as 9092 is by a first demo), both start, each on a free port of
// its own that it prints, and both serve. Their start says, readably, what
// runs, where Kafka and the data are (a relative --data in full), and the
// rate limits with the flags that set them.
func TestTwoDemosAtOnce(t *testing.T) {
	t.Parallel()
	taken := boundAddr(t)
	dataA, dataB := t.TempDir(), t.TempDir()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	relA, err := filepath.Rel(wd, dataA)
	if err != nil {
		t.Fatal(err)
	}
	a := runDemo(t, relA, "--kafka-listen", taken)
	b := runDemo(t, dataB, "--kafka-listen", taken, "--rate-reads", "0")
	if a.brokers == taken || b.brokers == taken || a.brokers == b.brokers {
		t.Fatalf("kafka of the demos at %s and %s, want two free ports other than the taken %s", a.brokers, b.brokers, taken)
	}
	for _, c := range []struct {
		d    *demo
		want []string
	}{
		{a, []string{
			"banksync demo is running: core, the channel and an embedded Kafka cluster, in this one process.",
			"  kafka         " + a.brokers + " (" + taken + " was taken)   topic core.ledger.entries\n",
			"  data          " + dataA + "\n",
			"  rate limit    5 transfers and 50 reads a second per customer (--rate-transfers, --rate-reads; 0 is none)\n",
			"starting again resumes from " + dataA + ".",
		}},
		{b, []string{
			"  kafka         " + b.brokers + " (" + taken + " was taken)   topic core.ledger.entries\n",
			"  rate limit    5 transfers and unlimited reads a second per customer",
		}},
	} {
		for _, w := range c.want {
			if !strings.Contains(c.d.welcome, w) {
				t.Errorf("the demo's welcome lacks %q:\n%s", w, c.d.welcome)
			}
		}
		if strings.Contains(c.d.welcome, "[") {
			t.Errorf("the demo's welcome prints a Go slice:\n%s", c.d.welcome)
		}
		req, _ := http.NewRequest("GET", c.d.channelURL+"/v1/accounts", nil)
		req.Header.Set("Authorization", "Bearer "+c.d.alice)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s/v1/accounts as alice = %d, want 200", c.d.channelURL, resp.StatusCode)
		}
	}
}
