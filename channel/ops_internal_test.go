package channel

import (
	"testing"
	"time"
)

func TestMeterRateOverLastWholeSeconds(t *testing.T) {
	var m meter
	t0 := time.Unix(1_000, 0)
	m.add(t0, 10)
	m.add(t0.Add(300*time.Millisecond), 5)
	m.add(t0.Add(time.Second), 20)
	if total, rate := m.read(t0.Add(1500 * time.Millisecond)); total != 35 || rate != 15.0/meterWindowSecs {
		t.Fatalf("read during second 1 = %d, %v; want 35 and second 0's 15 over the window", total, rate)
	}
	if _, rate := m.read(t0.Add(2 * time.Second)); rate != 35.0/meterWindowSecs {
		t.Fatalf("rate at second 2 = %v, want 35 over the window", rate)
	}
	if total, rate := m.read(t0.Add(time.Minute)); total != 35 || rate != 0 {
		t.Fatalf("a minute later = %d, %v; want the total and no rate", total, rate)
	}
	// A bucket reused a window later starts again from zero.
	later := t0.Add(time.Duration(len(m.seconds)) * time.Second)
	m.add(later, 1)
	if _, rate := m.read(later.Add(time.Second)); rate != 1.0/meterWindowSecs {
		t.Fatalf("rate after reusing a bucket = %v", rate)
	}
}

func TestDecisionLogCountsRepeats(t *testing.T) {
	var l decisionLog
	at := time.Unix(1_000, 0)
	for i := range 3 {
		l.add(Decision{At: at.Add(time.Duration(i) * time.Second), Action: DecisionRepairFailed, AccountID: "a", Detail: "down"})
	}
	l.add(Decision{At: at.Add(5 * time.Second), Action: DecisionRepaired, AccountID: "a"})
	got := l.recent()
	if len(got) != 2 || got[0].Action != DecisionRepaired || got[0].Count != 1 ||
		got[1].Count != 3 || !got[1].At.Equal(at.Add(2*time.Second)) {
		t.Fatalf("recent = %+v; want the repair, then one failure counted 3 times at its latest time", got)
	}
}

func TestDecisionLogKeepsTheNewest(t *testing.T) {
	var l decisionLog
	if got := l.recent(); len(got) != 0 {
		t.Fatalf("empty log = %v", got)
	}
	for i := range decisionsMax + 7 {
		l.add(Decision{AccountID: string(rune('a' + i%26)), Detail: time.Duration(i).String()})
	}
	got := l.recent()
	if len(got) != decisionsMax || got[0].Detail != time.Duration(decisionsMax+6).String() || got[len(got)-1].Detail != time.Duration(7).String() {
		t.Fatalf("recent = %d decisions, first %q, last %q", len(got), got[0].Detail, got[len(got)-1].Detail)
	}
}
