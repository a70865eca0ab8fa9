package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kgo"

	"banksync"
	"banksync/channel"
	"banksync/chaos"
	"banksync/demo"
	"banksync/internal/testkit"
	"banksync/ledger"
)

// chromiumPath finds Debian's Chromium. Without it the browser tests skip,
// except under CI, where .ci/run installs it and a skip is a failure.
func chromiumPath(t *testing.T) string {
	for _, p := range []string{os.Getenv("BANKSYNC_CHROMIUM"), "/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("Chromium is required under CI (apt-get install chromium; or set BANKSYNC_CHROMIUM)")
	}
	t.Skip("Chromium not found (apt-get install chromium, or set BANKSYNC_CHROMIUM): skipping the browser test")
	return ""
}

// browser drives one headless Chromium tab and saves screenshots.
type browser struct {
	t     *testing.T
	ctx   context.Context
	shots string // folder for screenshots
}

func newBrowser(t *testing.T) *browser {
	exe := chromiumPath(t)
	shots := os.Getenv("BANKSYNC_TEST_OUTPUT")
	if shots == "" {
		shots = filepath.Join("..", "..", "testoutput")
	}
	shots = filepath.Join(shots, "browser")
	os.RemoveAll(shots) // only this run's screenshots
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
		// The machine has no network beyond loopback: Chromium must not try.
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx, shots: shots}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return b
}

// do runs actions, failing the test on the first error.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.shot("failed-" + what)
		b.t.Fatalf("%s: %v", what, err)
	}
}

// waitFor polls a JavaScript predicate until it holds.
func (b *browser) waitFor(what, predicate string, timeout time.Duration) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		b.shot("failed-" + what)
		b.t.Fatalf("waiting for %s (%s): %v", what, predicate, err)
	}
}

func evalJS[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// jsString is s as a JavaScript string literal.
func jsString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // a Go string always marshals
	}
	return string(b)
}

// input sets a form field as typing would: the page sees an input event.
func input(id, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`(() => { const e = document.getElementById(%s); e.value = %s; e.dispatchEvent(new Event('input', { bubbles: true })) })()`,
		jsString(id), jsString(value)))
}

// shot saves a screenshot of the whole page as NAME.png.
func (b *browser) shot(name string) {
	b.save(name, chromedp.FullScreenshot(100))
}

// screen saves what the window shows as NAME.png: on a phone the folded send
// form is fixed to the bottom of the screen, where a whole-page picture
// does not show it.
func (b *browser) screen(name string) {
	b.save(name, chromedp.CaptureScreenshot())
}

func (b *browser) save(name string, capture chromedp.Action[[]byte]) {
	png, err := chromedp.Run(b.ctx, capture)
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
	}
}

// failingHistory makes every history write that touches one account fail
// while it is switched on: the consumer retries, then dead-letters.
type failingHistory struct {
	channel.Store
	account string
	on      atomic.Bool
}

var errHistoryDown = errors.New("history write refused by the test")

func (f *failingHistory) Apply(ctx context.Context, account string, es []banksync.Entry, at time.Time) (channel.AccountState, error) {
	if f.on.Load() && account == f.account {
		return channel.AccountState{}, errHistoryDown
	}
	return f.Store.Apply(ctx, account, es, at)
}

func (f *failingHistory) ApplyRuns(ctx context.Context, runs []channel.Run, at time.Time) ([]channel.RunResult, error) {
	if f.on.Load() && slices.ContainsFunc(runs, func(r channel.Run) bool { return r.Account == f.account }) {
		return nil, errHistoryDown
	}
	return f.Store.ApplyRuns(ctx, runs, at)
}

// hookedDemo starts the demo in-process, with its channel's requests to core
// going through a transport the test can hold, and dave's history store
// switchable to failing.
func hookedDemo(t *testing.T, deadline time.Duration, log *slog.Logger, noRepair bool) (*demo.Demo, *chaos.Transport, *failingHistory) {
	t.Helper()
	toCore := chaos.NewTransport(http.DefaultTransport)
	history := &failingHistory{account: "demo-dave"}
	d, err := demo.Start(context.Background(), demo.Config{
		Data: t.TempDir(), Listen: "127.0.0.1:0", CoreListen: "127.0.0.1:0", KafkaListen: "127.0.0.1:0",
		Deadline: deadline, CoreTransport: toCore, Logger: log,
		WrapStore:          func(s channel.Store) channel.Store { history.Store = s; return history },
		NoDeadLetterRepair: noRepair,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, toCore, history
}

// TestBrowserAppAndOperations drives the demo's pages in headless Chromium:
// a customer's history scrolled through every page with no row twice, a
// transfer completed from a double click that sends once, a refused amount
// told in plain words and its box gone at the next try, the memo counted
// as the server counts it, Send held while a transfer is pending, a manual
// sync, a dead-lettered record replayed from the operations page, and the
// app on a phone: history first, whole memos, the send form one tap away.
// Screenshots of each step, at laptop and phone width, go to
// testoutput/browser (or $BANKSYNC_TEST_OUTPUT/browser).
func TestBrowserAppAndOperations(t *testing.T) {
	b := newBrowser(t)
	ctx := context.Background()
	d, toCore, history := hookedDemo(t, 15*time.Second, nil, false)
	l := d.Core().Ledger()
	aliceAt := func() banksync.Account {
		a, err := l.Account(ctx, "demo-alice")
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	seeded := aliceAt()
	if seeded.LastSeq <= 2*channel.HistoryPageDefault {
		t.Fatalf("alice has %d entries; the test needs more than two pages", seeded.LastSeq)
	}

	// Sign in as alice: her accounts and the first page of her history.
	b.do("open the app", chromedp.Navigate(d.URL()+"/app/"), chromedp.WaitVisible(chromedp.CSS(`#customers button[data-customer="alice"]`)))
	b.shot("01-app-sign-in")
	b.do("choose alice", chromedp.Click(chromedp.CSS(`#customers button[data-customer="alice"]`)))
	b.waitFor("alice's accounts and history", `document.querySelector('.account[data-account="demo-alice"]') !== null && document.querySelectorAll('#history li.tx').length > 0`, 20*time.Second)
	b.shot("02-app-history")

	// Scroll until the beginning of the history: every entry, once, newest first.
	// Each scroll leaves the page 200 ms to fetch the next page.
	err := testkit.WithinEvery(40*time.Second, 200*time.Millisecond, func() error {
		if evalJS[bool](b, `(() => { const e = document.querySelector('#history-end'); return e !== null && e.offsetParent !== null })()`) {
			return nil
		}
		rows := evalJS[int](b, `document.querySelectorAll('#history li.tx').length`)
		b.do("scroll", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, document.body.scrollHeight)`))
		return fmt.Errorf("%d rows", rows)
	})
	if err != nil {
		b.shot("failed-scroll")
		t.Fatalf("the history never reached its beginning; %v", err)
	}
	seqs := evalJS[[]int64](b, `[...document.querySelectorAll('#history li.tx')].map(li => Number(li.dataset.seq))`)
	if int64(len(seqs)) != seeded.LastSeq {
		t.Errorf("history shows %d rows, core has %d entries", len(seqs), seeded.LastSeq)
	}
	for i, s := range seqs {
		if s != seeded.LastSeq-int64(i) {
			t.Fatalf("row %d is seq %d, want %d: a row repeats or is missing (rows %v)", i, s, seeded.LastSeq-int64(i), seqs)
		}
	}
	b.shot("03-app-history-scrolled")

	// A transfer with a long memo, completed. Send is pressed twice in a
	// row: the first press disables it and says it is sending, so the
	// second sends nothing.
	fill := func(amount int, memo string) {
		b.do("fill the transfer form",
			chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`),
			input("transfer-to", "demo-bob"), input("transfer-amount", fmt.Sprint(amount)), input("transfer-memo", memo))
	}
	const doubleClick = `(() => { const s = document.querySelector('#transfer-submit'); s.click(); const d = s.disabled + ' ' + s.textContent; s.click(); return d })()`
	fill(12_345, longMemo)
	if got := evalJS[string](b, doubleClick); got != "true Sending…" {
		t.Errorf("right after Send was pressed, it reads (disabled, text) %q; want it disabled and sending", got)
	}
	b.waitFor("the transfer completed", `document.querySelector('#transfer-status')?.dataset.state === 'completed'`, 20*time.Second)
	want := seeded.LastSeq + 1
	b.waitFor("the transfer in the history", fmt.Sprintf(`document.querySelector('#history li.tx[data-seq="%d"]') !== null`, want), 20*time.Second)
	if a := aliceAt(); a.LastSeq != want || a.Balance != seeded.Balance-12_345 {
		t.Fatalf("core has alice at seq %d, balance %d; want %d, %d: one transfer from a double click", a.LastSeq, a.Balance, want, seeded.Balance-12_345)
	}
	checkPlainApp(t, b, want, longMemo)
	b.shot("04-app-transfer-completed")

	checkRefusedAmount(t, b, fill)
	b.shot("05-app-amount-refused")
	// The next try is stopped by the browser (no amount): the old box goes.
	b.do("a try the browser blocks", input("transfer-amount", ""), chromedp.Click(chromedp.CSS(`#transfer-submit`)))
	if got := evalJS[string](b, `(() => { const s = document.querySelector('#transfer-status'); return s.hidden ? '' : s.textContent.trim() })()`); got != "" {
		t.Errorf("after a try the browser blocked, the status box still reads %q", got)
	}
	if evalJS[bool](b, `document.querySelector('#transfer-amount').validity.valid`) {
		t.Errorf("an empty amount passed the form's check")
	}
	b.shot("06-app-next-try-blocked")
	checkMemoCounter(t, b)

	// Core does not answer the next transfer in time: it stays pending,
	// and Send waits for it, saying so; pressing it, or submitting the
	// form another way, sends nothing.
	toCore.Plan("POST", "/core/v1/transfers", chaos.DelayRequest)
	fill(2_000, "held")
	b.do("send", chromedp.Click(chromedp.CSS(`#transfer-submit`)))
	b.waitFor("the transfer pending", `document.querySelector('#transfer-status')?.dataset.state === 'pending'`, 20*time.Second)
	fill(3_000, "while pending")
	b.do("press Send while pending", chromedp.Evaluate[chromedp.Void](
		`(() => { document.querySelector('#transfer-submit').click(); document.querySelector('#transfer-form').requestSubmit() })()`))
	if got := evalJS[string](b, `(() => { const s = document.querySelector('#transfer-submit'); return s.disabled + ' ' + s.textContent + ' ' + document.querySelector('#transfer-status').dataset.state })()`); got != "true Waiting for your last transfer… pending" {
		t.Errorf("while a transfer is pending, Send (disabled, text) and the status read %q; want it disabled, waiting, and the status still pending", got)
	}
	b.shot("08-app-transfer-pending")
	// The held request reaches core now, before its deadline: the
	// reconciler finds it executed, and the app shows it completed.
	if answers := toCore.Release(); len(answers) != 1 || !strings.Contains(answers[0], `"completed"`) {
		t.Fatalf("core's answers to the held transfer = %q, want it completed", answers)
	}
	b.waitFor("the held transfer settled", `document.querySelector('#pending-transfers li') === null`, 45*time.Second)
	b.waitFor("Send enabled again", `(() => { const s = document.querySelector('#transfer-submit'); return !s.disabled && s.textContent === 'Send' })()`, 10*time.Second)
	if a := aliceAt(); a.Balance != seeded.Balance-12_345-2_000 {
		t.Fatalf("alice's balance at core = %d, want %d: the held transfer ran once, the one pressed while it was pending never", a.Balance, seeded.Balance-12_345-2_000)
	}

	// 불러오기.
	b.do("press sync", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`), chromedp.Click(chromedp.CSS(`#sync-button`)))
	b.waitFor("synced", `document.querySelector('#sync-state')?.dataset.state === 'synced'`, 20*time.Second)
	b.waitFor("every entry shown", fmt.Sprintf(`document.querySelector('#history li.tx[data-seq="%d"]') !== null`, aliceAt().LastSeq), 20*time.Second)
	b.shot("09-app-synced")

	// Another bank's deposit, its depositor named in Korean, posted at
	// core while the app is open: it comes through the relay, Kafka and
	// the consumer into the history, and the live stream puts it on
	// screen without a refresh.
	posted := time.Now()
	live, err := l.Deposit(ctx, banksync.DepositRequest{ExternalRef: "browser-live", AccountID: "demo-alice", Amount: 77_777, Sender: "김철수"})
	if err != nil {
		t.Fatal(err)
	}
	row := fmt.Sprintf(`#history li.tx[data-seq="%d"]`, live.Entry.Seq)
	b.waitFor("the live deposit on screen", fmt.Sprintf(`document.querySelector('%s') !== null`, row), 20*time.Second)
	if via := evalJS[string](b, fmt.Sprintf(`document.querySelector('%s').dataset.via || ''`, row)); via != "stream" {
		t.Errorf("the live deposit came by %q, want the live stream", via)
	} else {
		shownAt := evalJS[int64](b, fmt.Sprintf(`Number(document.querySelector('%s').dataset.shownAt)`, row))
		took := time.UnixMilli(shownAt).Sub(posted)
		t.Logf("a deposit posted at core was on the app's screen %v later", took.Round(time.Millisecond))
		if took > 5*time.Second {
			t.Errorf("the live deposit took %v to show, want well under 5 s", took)
		}
	}
	if name := evalJS[string](b, fmt.Sprintf(`document.querySelector('%s').textContent`, row)); !strings.Contains(name, "김철수") {
		t.Errorf("the live deposit's row reads %q, want the depositor's name 김철수", name)
	}
	b.shot("17-app-live-deposit")
	checkFilterSearchStatement(t, b, l, live.Entry.Seq)

	// Dave's history store fails: his deposit is retried, then dead-lettered.
	history.on.Store(true)
	if _, err := l.Deposit(ctx, banksync.DepositRequest{ExternalRef: "browser-dlq", AccountID: "demo-dave", Amount: 50_000, Sender: "woori"}); err != nil {
		t.Fatal(err)
	}
	// The service token is not the operator's: the page is refused with
	// it and asks for the admin token by name; the operator signs in with
	// that through the form.
	b.do("open the operations page with the service token", chromedp.Navigate(d.URL()+"/ops/#token="+d.Secrets().ServiceToken))
	b.waitFor("the sign-in asking for the admin token", `!document.querySelector('#token-box').hidden && document.querySelector('#token-message').textContent.includes('Enter the admin token')`, 20*time.Second)
	if text := evalJS[string](b, `document.querySelector('#token-box').textContent`); !strings.Contains(text, "Admin token") || strings.Contains(strings.ToLower(text), "service token") {
		t.Errorf("the operations sign-in reads %q; want it to ask for the admin token, never the service token", text)
	}
	b.do("sign in with the admin token",
		chromedp.SetValue(chromedp.CSS(`#token-input`), d.Secrets().AdminToken),
		chromedp.Click(chromedp.CSS(`#token-submit`)))
	b.waitFor("the dead letter", `document.querySelector('#dead-letters tr[data-account="demo-dave"][data-replayed="false"] button.replay') !== null`, 60*time.Second)
	b.shot("10-ops-dead-letter")
	// Replay while dave's writes still fail: the letter is held, and the
	// page says so.
	b.do("replay", chromedp.Click(chromedp.CSS(`#dead-letters tr[data-account="demo-dave"] button.replay`)))
	b.waitFor("the replay held", `(document.querySelector('#ops-message')?.textContent || '').includes('still failing, held')`, 30*time.Second)
	b.shot("11-ops-replay-held")
	// The store answers again: the channel's own dead-letter repair
	// replays the letter, with nobody pressing anything.
	history.on.Store(false)
	b.waitFor("the letter replayed", `document.querySelector('#dead-letters tr[data-account="demo-dave"][data-replayed="true"]') !== null`, 30*time.Second)
	b.waitFor("the lag drained", `document.querySelector('#lag-total')?.textContent.trim() === '0'`, 30*time.Second)
	// The reconciler's next round finds dave at core's head and clears his
	// stale flag; the page then lists no stale account.
	b.waitFor("no stale account", `document.querySelector('#stale li') === null`, 15*time.Second)
	b.shot("12-ops-replayed")
	dave, err := l.Account(ctx, "demo-dave")
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := history.Account(ctx, "demo-dave")
	if err != nil || st.SyncedSeq != dave.LastSeq || st.Balance != dave.Balance || st.Stale {
		t.Fatalf("dave's history after the replay = %+v, %v; core has seq %d, balance %d", st, err, dave.LastSeq, dave.Balance)
	}

	// A core newer than this channel publishes carol's last entry as an
	// event of the next schema version: the consumer cannot decode it, the
	// repair syncs carol from core and parks the letter, and the page shows
	// it parked, with why.
	carol, err := l.Entries(ctx, "demo-carol", 0, 1000)
	if err != nil || len(carol) == 0 {
		t.Fatalf("carol's entries = %d, %v", len(carol), err)
	}
	ev := banksync.EventOf(carol[len(carol)-1])
	ev.Version = banksync.EventSchemaVersion + 1
	value, _ := json.Marshal(ev)
	pub, err := kgo.NewClient(kgo.SeedBrokers(d.Core().Conn().Brokers...), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.ProduceSync(ctx, &kgo.Record{Topic: banksync.TopicLedgerEntries, Key: []byte("demo-carol"), Value: value}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	b.waitFor("the letter parked", `document.querySelector('#dead-letters tr[data-account="demo-carol"][data-state="parked"]') !== null`, 30*time.Second)
	if text := evalJS[string](b, `document.querySelector('#dead-letters tr[data-account="demo-carol"]').textContent`); !strings.Contains(text, "Cannot be decoded") || !strings.Contains(text, "Parked") {
		t.Errorf("carol's parked letter reads %q; want it said undecodable and parked", text)
	}
	b.shot("13-ops-parked")

	// A phone-sized window: nothing wider than the screen.
	b.do("phone size", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	if w := evalJS[bool](b, `document.documentElement.scrollWidth <= window.innerWidth`); !w {
		t.Errorf("the operations page is wider than a phone's window")
	}
	b.shot("14-ops-phone")
	b.do("app on a phone", chromedp.Navigate(d.URL()+"/app/"))
	b.waitFor("the app on a phone", `document.querySelectorAll('#history li.tx').length > 0 || document.querySelector('#customers button') !== null`, 20*time.Second)
	if evalJS[bool](b, `document.querySelector('#customers button[data-customer="alice"]') !== null && document.querySelectorAll('#history li.tx').length === 0`) {
		b.do("choose alice on a phone", chromedp.Click(chromedp.CSS(`#customers button[data-customer="alice"]`)))
		b.waitFor("history on a phone", `document.querySelectorAll('#history li.tx').length > 0`, 20*time.Second)
	}
	if w := evalJS[bool](b, `document.documentElement.scrollWidth <= window.innerWidth`); !w {
		t.Errorf("the app page is wider than a phone's window")
	}
	checkPhoneLayout(t, b)
	b.waitFor("the long memo's row", fmt.Sprintf(`document.querySelector('#history li.tx[data-seq="%d"]') !== null`, want), 20*time.Second)
	checkPlainApp(t, b, want, longMemo)
	b.screen("15-app-phone")
	// Money out, the search box and the statement form fit a phone.
	b.do("money out on a phone", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`), chromedp.Evaluate[chromedp.Void](
		`(() => { const k = document.querySelector('#history-kind'); k.value = 'out'; k.dispatchEvent(new Event('change')) })()`),
		chromedp.Click(chromedp.CSS(`#statement-toggle`)))
	b.waitFor("money out on a phone", `document.querySelectorAll('#history li.tx').length > 0 && [...document.querySelectorAll('#history li.tx .amount, #history li.tx')].every(li => !li.textContent.includes('+₩'))`, 20*time.Second)
	if w := evalJS[bool](b, `document.documentElement.scrollWidth <= window.innerWidth`); !w {
		t.Errorf("with the filter and the statement form open, the app is wider than a phone's window")
	}
	b.do("scroll to the tools", chromedp.Evaluate[chromedp.Void](`document.querySelector('.history-tools').scrollIntoView({ block: 'center' })`))
	b.screen("21-app-phone-money-out-statement")
	b.do("all again", chromedp.Evaluate[chromedp.Void](
		`(() => { const k = document.querySelector('#history-kind'); k.value = ''; k.dispatchEvent(new Event('change')); document.querySelector('#statement-toggle').click() })()`))
	// A live deposit on a phone, then a search for its depositor.
	b.waitFor("the history again on a phone", `document.querySelectorAll('#history li.tx').length > 0`, 20*time.Second)
	phoneLive, err := l.Deposit(ctx, banksync.DepositRequest{ExternalRef: "browser-live-phone", AccountID: "demo-alice", Amount: 55_555, Sender: "(주)토스 급여"})
	if err != nil {
		t.Fatal(err)
	}
	phoneRow := fmt.Sprintf(`#history li.tx[data-seq="%d"]`, phoneLive.Entry.Seq)
	b.waitFor("the live deposit on a phone", fmt.Sprintf(`document.querySelector('%s')?.dataset.via === 'stream'`, phoneRow), 20*time.Second)
	b.do("to the top", chromedp.Evaluate[chromedp.Void](`document.querySelector('.history-tools').scrollIntoView({ block: 'center' })`))
	b.screen("22-app-phone-live-deposit")
	b.do("search on a phone", chromedp.Evaluate[chromedp.Void](
		`(() => { const q = document.querySelector('#history-search'); q.value = '토스 급여'; q.dispatchEvent(new Event('search')) })()`))
	b.waitFor("the search on a phone", fmt.Sprintf(`document.querySelectorAll('#history li.tx').length === 1 && document.querySelector('%s') !== null`, phoneRow), 20*time.Second)
	b.screen("23-app-phone-search")
	b.do("clear the search on a phone", chromedp.Evaluate[chromedp.Void](
		`(() => { const q = document.querySelector('#history-search'); q.value = ''; q.dispatchEvent(new Event('search')) })()`))
	b.do("open the send form", chromedp.Click(chromedp.CSS(`#transfer-toggle`)))
	if got := evalJS[string](b, `(() => { const r = document.querySelector('#transfer-submit').getBoundingClientRect(); return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight ? 'on screen' : JSON.stringify(r) })()`); got != "on screen" {
		t.Errorf("on a phone, the opened send form's Send button is at %s, not on screen", got)
	}
	checkRefusedAmount(t, b, fill)
	b.screen("16-app-phone-amount-refused")
}

// checkPhoneLayout checks that on a phone the history comes first and the
// send form waits folded in a bar at the bottom of the screen, so it is
// one tap away however far the history is scrolled.
func checkPhoneLayout(t *testing.T, b *browser) {
	t.Helper()
	got := evalJS[string](b, `(() => {
		const hist = document.querySelector('.area-history').getBoundingClientRect();
		const send = document.querySelector('.area-transfer').getBoundingClientRect();
		const first = document.querySelector('#history li.tx').getBoundingClientRect();
		if (!(hist.top < send.top)) return 'the send form comes before the history';
		if (first.bottom > send.top) return 'the first history row is not on the first screen';
		if (document.querySelector('#transfer-body').offsetParent !== null) return 'the send form is open';
		if (send.bottom > window.innerHeight + 0.5 || send.height > window.innerHeight / 4) return 'the folded send form is not a bar at the bottom of the screen';
		return 'ok';
	})()`)
	if got != "ok" {
		t.Errorf("on a phone, %s", got)
	}
}

// longMemo is a memo near the server's limit whose words cannot fit on one
// line of a phone's history row. ASCII, so the server's limit, whether
// counted in bytes or in characters, takes it.
var longMemo = strings.Repeat("rent and utilities for december ", 4) + "thanks!"

// checkPlainApp checks the app shows no numbers meant for machines (such
// as "#51", an entry's seq) and that row seq shows the whole memo, on one
// line or wrapped but never cut off.
func checkPlainApp(t *testing.T, b *browser, seq int64, memo string) {
	t.Helper()
	if got := evalJS[string](b, `(document.querySelector('#bank').innerText.match(/#\d+/) || [''])[0]`); got != "" {
		t.Errorf("the app shows %q, a number that means nothing to a customer", got)
	}
	if got := evalJS[string](b, `document.querySelector('.account .account-flag')?.textContent`); got != "Updated just now" {
		t.Errorf("under the balance the app reads %q, want %q", got, "Updated just now")
	}
	got := evalJS[string](b, fmt.Sprintf(`(() => {
		const li = document.querySelector('#history li.tx[data-seq="%d"]');
		const m = li && li.querySelector('.tx-memo');
		if (!m) return 'no memo shown';
		const row = li.getBoundingClientRect();
		for (const r of m.getClientRects()) if (r.left < row.left - 0.5 || r.right > row.right + 0.5) return 'runs out of its row';
		for (let e = m; e !== li; e = e.parentElement) if (e.scrollWidth > e.clientWidth + 0.5) return 'cut off';
		return m.textContent;
	})()`, seq))
	if got != memo {
		t.Errorf("the memo of entry %d: %q, want it all shown: %q", seq, got, memo)
	}
}

// checkRefusedAmount sends more than core takes in one transfer: the app
// says so in plain words, never in the server's.
func checkRefusedAmount(t *testing.T, b *browser, fill func(int, string)) {
	t.Helper()
	fill(2_000_000_000, "too much")
	b.do("send too much", chromedp.Click(chromedp.CSS(`#transfer-submit`)))
	b.waitFor("the amount refused", `document.querySelector('#transfer-status')?.dataset.state === 'refused'`, 20*time.Second)
	st := evalJS[[]string](b, `(() => { const s = document.querySelector('#transfer-status'); return [s.dataset.code, s.textContent.replace(/\s+/g, ' ').trim()] })()`)
	if len(st) != 2 || st[0] != banksync.EINVALIDAMOUNT || !strings.Contains(st[1], "₩1,000,000,000") || strings.Contains(st[1], "must be") || strings.Contains(st[1], "1000000000") {
		t.Errorf("a refused amount reads %q; want code %s and plain words naming the ₩1,000,000,000 limit, not the API's message", st, banksync.EINVALIDAMOUNT)
	}
}

// checkMemoCounter types memos and reads the counter and the form's check:
// characters are counted as the server counts them, code points after NFC,
// so 50 Korean syllables are 50, a decomposed syllable one, an emoji one.
func checkMemoCounter(t *testing.T, b *browser) {
	t.Helper()
	for _, c := range []struct {
		name, memo string
		count      string
		valid      bool
	}{
		{"50 Korean syllables", strings.Repeat("가나다라마", 10), "50/140", true},
		{"140 decomposed syllables (NFD)", strings.Repeat("\u1100\u1161", 140), "140/140", true},
		{"140 emoji", strings.Repeat("😀", 140), "140/140", true},
		{"141 syllables", strings.Repeat("가", 141), "141/140", false},
	} {
		b.do("type a memo of "+c.name, input("transfer-memo", c.memo))
		got := evalJS[[]any](b, `[document.querySelector('#transfer-memo-count').textContent, document.querySelector('#transfer-memo').validity.valid]`)
		if len(got) != 2 || got[0] != c.count || got[1] != c.valid {
			t.Errorf("a memo of %s: counter and validity %v, want %s, %v", c.name, got, c.count, c.valid)
		}
	}
	b.shot("07-app-memo-too-long")
	b.do("clear the memo", input("transfer-memo", ""))
}

// scrollHistory scrolls the shown history to its end and returns its rows'
// seqs, top to bottom.
func scrollHistory(t *testing.T, b *browser, what string) []int64 {
	t.Helper()
	err := testkit.WithinEvery(40*time.Second, 200*time.Millisecond, func() error {
		if evalJS[bool](b, `(() => { const e = document.querySelector('#history-end'); return e !== null && e.offsetParent !== null })()`) {
			return nil
		}
		b.do("scroll", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, document.body.scrollHeight)`))
		return fmt.Errorf("%d rows", evalJS[int](b, `document.querySelectorAll('#history li.tx').length`))
	})
	if err != nil {
		b.shot("failed-" + what)
		t.Fatalf("%s: the history never reached its end; %v", what, err)
	}
	return evalJS[[]int64](b, `[...document.querySelectorAll('#history li.tx')].map(li => Number(li.dataset.seq))`)
}

// checkFilterSearchStatement shows alice's money out, then a search for
// the depositor 김철수, each scrolled to its end against core's ledger (no
// row twice, none missing), and downloads a statement of today, checked
// row by row against the ledger.
func checkFilterSearchStatement(t *testing.T, b *browser, l *ledger.Ledger, liveSeq int64) {
	t.Helper()
	ctx := context.Background()
	all, err := l.Entries(ctx, "demo-alice", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	newestFirst := func(keep func(banksync.Entry) bool) []int64 {
		var seqs []int64
		for _, e := range slices.Backward(all) {
			if keep(e) {
				seqs = append(seqs, e.Seq)
			}
		}
		return seqs
	}
	b.do("show money out", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`), chromedp.Evaluate[chromedp.Void](
		`(() => { const k = document.querySelector('#history-kind'); k.value = 'out'; k.dispatchEvent(new Event('change')) })()`))
	if got, want := scrollHistory(t, b, "money-out"), newestFirst(func(e banksync.Entry) bool { return e.Amount < 0 }); !slices.Equal(got, want) {
		t.Errorf("money out shows seqs %v, want %v", got, want)
	}
	b.do("top", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
	b.shot("18-app-money-out")
	b.do("search 김철수", chromedp.Evaluate[chromedp.Void](
		`(() => { const k = document.querySelector('#history-kind'); k.value = ''; k.dispatchEvent(new Event('change'));
		  const q = document.querySelector('#history-search'); q.value = '김철수'; q.dispatchEvent(new Event('search')) })()`))
	if got := scrollHistory(t, b, "search"); !slices.Equal(got, []int64{liveSeq}) {
		t.Errorf("the search for 김철수 shows seqs %v, want [%d]", got, liveSeq)
	}
	b.do("top", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
	b.shot("19-app-search")
	b.do("clear the search", chromedp.Evaluate[chromedp.Void](
		`(() => { const q = document.querySelector('#history-search'); q.value = ''; q.dispatchEvent(new Event('search')) })()`))

	// The statement of this month, downloaded through the form; then the
	// same file read again in the page and compared with the ledger.
	b.do("open the statement form", chromedp.Click(chromedp.CSS(`#statement-toggle`)))
	b.do("download", chromedp.Click(chromedp.CSS(`#statement-download`)))
	b.waitFor("the statement downloaded", `(document.querySelector('#statement-message')?.textContent || '').startsWith('Downloaded')`, 20*time.Second)
	b.shot("20-app-statement")
	csvText, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`(async () => {
		const from = document.querySelector('#statement-from').value, to = document.querySelector('#statement-to').value;
		const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
		const res = await fetch('/v1/accounts/demo-alice/statement?from=' + from + '&to=' + to + '&tz=' + encodeURIComponent(tz),
			{ headers: { Authorization: 'Bearer ' + sessionStorage.getItem('banksync.app.token') } });
		return await res.text();
	})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("read the statement in the page: %v", err)
	}
	rows, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(csvText, "\uFEFF"))).ReadAll()
	if err != nil || len(rows) < 2 {
		t.Fatalf("the statement is %d rows, %v:\n%s", len(rows), err, csvText)
	}
	byseq := map[int64]banksync.Entry{}
	for _, e := range all {
		byseq[e.Seq] = e
	}
	for _, row := range rows[1:] {
		seq, _ := strconv.ParseInt(row[0], 10, 64)
		e, ok := byseq[seq]
		if !ok || row[3] != strconv.FormatInt(e.Amount, 10) || row[4] != strconv.FormatInt(e.BalanceAfter, 10) {
			t.Errorf("statement row %q does not match the ledger's entry %+v", row, e)
		}
	}
	if msg := evalJS[string](b, `document.querySelector('#statement-message').textContent`); !strings.Contains(msg, fmt.Sprintf(": %d entr", len(rows)-1)) {
		t.Errorf("the statement form says %q; the file holds %d entries", msg, len(rows)-1)
	}
	t.Logf("statement: %d entries, each as in the ledger", len(rows)-1)
}
