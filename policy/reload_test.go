package policy

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
)

// swaps records OnSwap calls.
type swaps struct {
	mu       sync.Mutex
	versions []string
}

func (s *swaps) record(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.versions = append(s.versions, v)
}

func (s *swaps) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.versions...)
}

// status returns st's Status.
func status(t testing.TB, st *Stage) Status {
	t.Helper()
	v, ready := st.Status()
	s, ok := v.(Status)
	if !ok {
		t.Fatalf("Status() detail is %T, want Status", v)
	}
	if !ready {
		t.Errorf("Status() says not ready; a stage always has a policy in force")
	}
	return s
}

func metrics(st *Stage) string {
	var b bytes.Buffer
	st.WriteMetrics(&b)
	return b.String()
}

// rewrite replaces dir/name with content and moves its modification time
// forward, so that the change is seen whatever the file system's time
// granularity.
func rewrite(t testing.TB, dir, name, content string) {
	t.Helper()
	p := filepath.Join(dir, name)
	var mtime time.Time
	if info, err := os.Stat(p); err == nil {
		mtime = info.ModTime()
	}
	writeFiles(t, dir, map[string]string{name: content})
	if !mtime.IsZero() {
		next := mtime.Add(time.Second)
		if err := os.Chtimes(p, next, next); err != nil {
			t.Fatal(err)
		}
	}
}

const (
	policyAllow = `decision := {"allow": true, "rules": ["v1/allow"]}`
	policyDeny  = `decision := {"allow": false, "deny_reasons": ["closed for maintenance"], "rules": ["v2/deny"]}`
)

// reloadStage returns a stage on a directory holding a.rego with body,
// and the directory.
func reloadStage(t testing.TB, body string, sw *swaps) (*Stage, string) {
	t.Helper()
	dir := policyDir(t, map[string]string{"a.rego": regoFile(body)})
	opts := Options{Source: Source{Paths: []string{dir}}, Backends: testBackends}
	if sw != nil {
		opts.OnSwap = sw.record
	}
	return newStage(t, opts), dir
}

func TestReload(t *testing.T) {
	ctx := context.Background()

	t.Run("reload / an edited file swaps the version in and calls OnSwap", func(t *testing.T) {
		var sw swaps
		st, dir := reloadStage(t, policyAllow, &sw)
		v1 := st.Current().Version()
		if _, err := handle(t, st, toolCall(alice, "docs", "search", `{}`, "")); err != nil {
			t.Fatalf("v1 denies: %v", err)
		}
		rewrite(t, dir, "a.rego", regoFile(policyDeny))
		if err := st.Reload(ctx, false); err != nil {
			t.Fatalf("Reload: %v", err)
		}
		v2 := st.Current().Version()
		if v2 == v1 {
			t.Fatal("the version did not change")
		}
		if got := sw.list(); len(got) != 1 || got[0] != v2 {
			t.Errorf("OnSwap calls %q, want [%s]", got, v2)
		}
		x := toolCall(alice, "docs", "search", `{}`, "")
		_, err := handle(t, st, x)
		if err == nil || x.Decision.PolicyVersion != v2 || !strings.Contains(err.Error(), "closed for maintenance") {
			t.Errorf("after reload: err %v, version %s; want the new policy's denial", err, x.Decision.PolicyVersion)
		}
		s := status(t, st)
		if s.Version != v2 || s.Reloads != 1 || s.ReloadFailures != 0 || s.LastError != "" || s.Source != dir {
			t.Errorf("Status %+v", s)
		}
		if m := metrics(st); !strings.Contains(m, "sallyport_policy_reloads_total 1\n") || !strings.Contains(m, "sallyport_policy_reload_failing 0\n") {
			t.Errorf("metrics:\n%s", m)
		}
	})

	t.Run("reload / nothing changed is a no-op", func(t *testing.T) {
		var sw swaps
		st, _ := reloadStage(t, policyAllow, &sw)
		set := st.Current()
		if err := st.Reload(ctx, false); err != nil {
			t.Fatal(err)
		}
		if st.Current() != set || len(sw.list()) != 0 || status(t, st).Reloads != 0 {
			t.Errorf("a reload without a change swapped the set")
		}
	})

	t.Run("reload / a touched file keeps the set", func(t *testing.T) {
		var sw swaps
		st, dir := reloadStage(t, policyAllow, &sw)
		v1 := st.Current().Version()
		later := time.Now().Add(time.Hour)
		if err := os.Chtimes(filepath.Join(dir, "a.rego"), later, later); err != nil {
			t.Fatal(err)
		}
		if err := st.Reload(ctx, false); err != nil {
			t.Fatal(err)
		}
		if st.Current().Version() != v1 || len(sw.list()) != 0 || status(t, st).Reloads != 0 {
			t.Errorf("touching the file swapped the set: version %s, swaps %q", st.Current().Version(), sw.list())
		}
	})

	t.Run("reload / forced without a change keeps the version", func(t *testing.T) {
		var sw swaps
		st, _ := reloadStage(t, policyAllow, &sw)
		v1 := st.Current().Version()
		if err := st.Reload(ctx, true); err != nil {
			t.Fatal(err)
		}
		if st.Current().Version() != v1 || len(sw.list()) != 0 {
			t.Errorf("a forced reload of the same files swapped the set")
		}
	})

	t.Run("reload / a new file in the directory is picked up", func(t *testing.T) {
		var sw swaps
		st, dir := reloadStage(t, `decision := {"allow": data.helpers.open}`, &sw)
		writeFiles(t, dir, map[string]string{"helpers.rego": "package helpers\n\nopen := true\n"})
		// The first set does not define data.helpers.open: it denies.
		before := st.Current().Version()
		if err := st.Reload(ctx, false); err != nil {
			t.Fatal(err)
		}
		if st.Current().Version() == before || len(st.Current().Files()) != 2 {
			t.Errorf("the new file was not loaded: files %q", st.Current().Files())
		}
		if _, err := handle(t, st, toolCall(alice, "docs", "search", `{}`, "")); err != nil {
			t.Errorf("after adding helpers: %v", err)
		}
	})

	t.Run("reload / a broken file keeps the old set until it is fixed", func(t *testing.T) {
		var sw swaps
		st, dir := reloadStage(t, policyAllow, &sw)
		set := st.Current()
		v1 := set.Version()

		rewrite(t, dir, "a.rego", "package sallyport\n\ndecision := {\"allow\": true,\n")
		err := st.Reload(ctx, false)
		var le *LoadError
		if !errors.As(err, &le) {
			t.Fatalf("Reload = %v, want a *LoadError", err)
		}
		if st.Current() != set || len(sw.list()) != 0 {
			t.Fatalf("a broken policy replaced the set")
		}
		s := status(t, st)
		if s.Version != v1 || s.ReloadFailures != 1 || s.Reloads != 0 || !strings.Contains(s.LastError, "a.rego:") || s.LastErrorAt.IsZero() {
			t.Errorf("Status %+v", s)
		}
		m := metrics(st)
		for _, want := range []string{"sallyport_policy_reload_failing 1\n", "sallyport_policy_reload_failures_total 1\n"} {
			if !strings.Contains(m, want) {
				t.Errorf("metrics lack %q:\n%s", want, m)
			}
		}
		if _, err := handle(t, st, toolCall(alice, "docs", "search", `{}`, "")); err != nil {
			t.Errorf("the old policy is not in force: %v", err)
		}

		// The same broken files are reported once, not on every check.
		if err := st.Reload(ctx, false); err != nil {
			t.Errorf("second Reload of the same broken files = %v, want nil", err)
		}
		if s := status(t, st); s.ReloadFailures != 1 {
			t.Errorf("ReloadFailures = %d after checking the same broken files again, want 1", s.ReloadFailures)
		}

		rewrite(t, dir, "a.rego", regoFile(policyDeny))
		if err := st.Reload(ctx, false); err != nil {
			t.Fatalf("Reload of the fixed file: %v", err)
		}
		s = status(t, st)
		if s.Version == v1 || s.LastError != "" || !s.LastErrorAt.IsZero() || s.Reloads != 1 || s.ReloadFailures != 1 {
			t.Errorf("after the fix: Status %+v", s)
		}
		if !strings.Contains(metrics(st), "sallyport_policy_reload_failing 0\n") {
			t.Errorf("still failing after the fix:\n%s", metrics(st))
		}
		if got := sw.list(); len(got) != 1 || got[0] != s.Version {
			t.Errorf("OnSwap calls %q", got)
		}
	})

	t.Run("reload / reverting a broken file to the loaded content clears the failure", func(t *testing.T) {
		var sw swaps
		st, dir := reloadStage(t, policyAllow, &sw)
		v1 := st.Current().Version()
		rewrite(t, dir, "a.rego", "package sallyport\n\ndecision := \n")
		if st.Reload(ctx, false) == nil {
			t.Fatal("a broken file reloaded")
		}
		rewrite(t, dir, "a.rego", regoFile(policyAllow))
		if err := st.Reload(ctx, false); err != nil {
			t.Fatal(err)
		}
		s := status(t, st)
		if s.Version != v1 || s.LastError != "" || len(sw.list()) != 0 {
			t.Errorf("Status %+v, swaps %q", s, sw.list())
		}
	})

	t.Run("reload / a vanished policy directory is reported once", func(t *testing.T) {
		st, dir := reloadStage(t, policyAllow, nil)
		v1 := st.Current().Version()
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := st.Reload(ctx, false); err == nil {
			t.Fatal("Reload of a vanished directory succeeded")
		}
		if st.Current().Version() != v1 {
			t.Fatal("the set changed")
		}
		if s := status(t, st); s.ReloadFailures != 1 || s.LastError == "" {
			t.Fatalf("Status %+v", s)
		}
		st.Reload(ctx, false)
		if s := status(t, st); s.ReloadFailures != 1 {
			t.Errorf("ReloadFailures = %d after two checks of a vanished path, want 1", s.ReloadFailures)
		}
	})

	t.Run("reload / the embedded default never reloads", func(t *testing.T) {
		var sw swaps
		st := newStage(t, Options{Backends: testBackends, OnSwap: sw.record})
		set := st.Current()
		if err := st.Reload(ctx, true); err != nil || st.Current() != set || len(sw.list()) != 0 {
			t.Errorf("Reload = %v; set replaced %v", err, st.Current() != set)
		}
		done := make(chan struct{})
		go func() {
			st.Watch(context.Background(), time.Millisecond)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Watch of the embedded default did not return")
		}
	})
}

func TestWatch(t *testing.T) {
	var sw swaps
	st, dir := reloadStage(t, policyAllow, &sw)
	v1 := st.Current().Version()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		st.Watch(ctx, 20*time.Millisecond)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	rewrite(t, dir, "a.rego", regoFile(policyDeny))
	deadline := time.Now().Add(10 * time.Second)
	for st.Current().Version() == v1 {
		if time.Now().After(deadline) {
			t.Fatal("Watch did not pick the change up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := sw.list(); len(got) != 1 || got[0] != st.Current().Version() {
		t.Errorf("OnSwap calls %q", got)
	}

	// A broken file is reported while Watch runs, and the set stays.
	v2 := st.Current().Version()
	rewrite(t, dir, "a.rego", "package sallyport\n\ndecision := {\n")
	for status(t, st).LastError == "" {
		if time.Now().After(deadline) {
			t.Fatal("Watch did not report the broken file")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st.Current().Version() != v2 {
		t.Error("a broken file replaced the set")
	}

	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not return when its context ended")
	}
}

func TestReloadWhileHandling(t *testing.T) {
	// Exchanges decided while the set is swapped see one set or the
	// other, never a mix; run with -race.
	st, dir := reloadStage(t, policyAllow, nil)
	v1 := st.Current().Version()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				x := toolCall(alice, "docs", "search", `{}`, "")
				err := st.Handle(context.Background(), x, gateway.HandlerFunc(func(context.Context, *gateway.Exchange) error { return nil }))
				d := x.Decision
				if (err == nil) != (d.PolicyVersion == v1) || d.Allow != (err == nil) {
					select {
					case errs <- "version " + d.PolicyVersion + " with err " + errString(err):
					default:
					}
					return
				}
			}
		}()
	}
	for i := range 6 {
		body := policyDeny
		if i%2 == 1 {
			body = policyAllow
		}
		rewrite(t, dir, "a.rego", regoFile(body))
		if err := st.Reload(context.Background(), false); err != nil {
			t.Fatal(err)
		}
		st.Status()
		metrics(st)
	}
	cancel()
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if s := status(t, st); s.Reloads != 6 {
		t.Errorf("Reloads = %d, want 6", s.Reloads)
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}
