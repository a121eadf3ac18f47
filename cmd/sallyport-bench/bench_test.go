package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
	"github.com/sallyport/sallyport/policy"
)

func us(n ...int) []time.Duration {
	out := make([]time.Duration, len(n))
	for i, v := range n {
		out[i] = time.Duration(v) * time.Microsecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Microsecond
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"an empty sample has percentile 0", nil, 50, 0},
		{"one value is every percentile", us(7), 99, 7 * time.Microsecond},
		{"p50 of an even count is the lower middle value", us(1, 2, 3, 4), 50, 2 * time.Microsecond},
		{"p50 of an odd count is the middle value", us(1, 2, 3, 4, 5), 50, 3 * time.Microsecond},
		{"p90 of 1..100 is 90", hundred, 90, 90 * time.Microsecond},
		{"p99 of 1..100 is 99", hundred, 99, 99 * time.Microsecond},
		{"p100 is the maximum", hundred, 100, 100 * time.Microsecond},
		{"a tiny p is the minimum", hundred, 0.001, 1 * time.Microsecond},
		{"p99 of ten values is the largest", us(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Microsecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.sorted, tc.p); got != tc.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tc.sorted, tc.p, got, tc.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	t.Run("unsorted latencies give sorted percentiles and a rate over the wall time", func(t *testing.T) {
		s := summarize(us(400, 100, 300, 200), 1, 2*time.Millisecond)
		want := Summary{Calls: 4, Errors: 1, WallSeconds: 0.002, CallsPerSec: 2000,
			MinUS: 100, MeanUS: 250, P50US: 200, P90US: 400, P99US: 400, MaxUS: 400}
		if s != want {
			t.Errorf("summarize = %+v\nwant        %+v", s, want)
		}
	})
	t.Run("no successful calls leave the figures at zero", func(t *testing.T) {
		s := summarize(nil, 3, time.Second)
		if s.Calls != 0 || s.Errors != 3 || s.CallsPerSec != 0 || s.P50US != 0 {
			t.Errorf("summarize(nil) = %+v", s)
		}
	})
	t.Run("latencies are rounded to a tenth of a microsecond", func(t *testing.T) {
		s := summarize([]time.Duration{1234567 * time.Nanosecond / 1000}, 0, time.Second)
		if s.P50US != 1.2 {
			t.Errorf("p50 = %v µs, want 1.2", s.P50US)
		}
	})
}

func TestGoals(t *testing.T) {
	r := &Report{Paths: map[string]*PathResult{
		pathDirect:       {Sequential: &Summary{Calls: 1, P50US: 130, CallsPerSec: 6000}, Concurrent: &Summary{Calls: 1, P50US: 1000, CallsPerSec: 8000}},
		pathSallyport:    {Sequential: &Summary{Calls: 1, P50US: 400, CallsPerSec: 2000}, Concurrent: &Summary{Calls: 1, P50US: 2000, CallsPerSec: 3000}},
		pathSupergateway: {Sequential: &Summary{Calls: 1, P50US: 800, CallsPerSec: 800}},
	}}
	r.compute()
	if v := r.Ratios.AddedP50SeqUS; v == nil || *v != 270 {
		t.Errorf("added latency = %v, want 270", v)
	}
	if v := r.Ratios.RateOverSGSeq; v == nil || *v != 2.5 {
		t.Errorf("sallyport/supergateway calls/s = %v, want 2.5", v)
	}
	want := []string{"PASS", "PASS", "N/A"} // the concurrent supergateway run is missing
	for i, g := range r.Goals {
		if g.Status != want[i] {
			t.Errorf("goal %q (%s) = %s, want %s", g.Goal, g.Workload, g.Status, want[i])
		}
	}
}

func TestSallyportConfigIsValid(t *testing.T) {
	spec := everythingBackend("/usr/bin/node", "/opt/a dir/with $dollar/node_modules")
	for _, tc := range []struct{ isolation, sync string }{
		{isolationShared, "full"}, {isolationSession, "normal"},
	} {
		iso := tc.isolation
		t.Run("isolation "+iso+", audit synchronous "+tc.sync, func(t *testing.T) {
			db := "/tmp/a dir/with $dollar/audit.db"
			cfg, err := config.Parse(sallyportConfig(43210, spec, iso, db, tc.sync), "")
			if err != nil {
				t.Fatalf("the generated config does not parse: %v", err)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("the generated config is invalid: %v", err)
			}
			b := cfg.Backends[0]
			if b.ID != "everything" || b.Isolation != iso || b.Args[0] != spec.Args[0] || !cfg.Auth.Anonymous || cfg.Log.Level != "warn" ||
				cfg.Database != db || cfg.Audit.Synchronous != tc.sync {
				t.Errorf("config came back as %+v", cfg)
			}
		})
	}
}

func TestIsLoopbackHex(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"0100007F", true},                          // 127.0.0.1
		{"00000000", false},                         // 0.0.0.0
		{"00000000000000000000000001000000", true},  // ::1
		{"00000000000000000000000000000000", false}, // ::
		{"0000000000000000FFFF00000100007F", true},  // ::ffff:127.0.0.1
	} {
		if got := isLoopbackHex(tc.addr); got != tc.want {
			t.Errorf("isLoopbackHex(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}

func TestSallyportConfigDefaultPolicyAllowsTheCall(t *testing.T) {
	for _, spec := range []backendSpec{
		everythingBackend("/usr/bin/node", "/opt/node_modules"),
		demoBackend("/usr/local/bin/sallyport", "/tmp/sandbox", "/tmp/outbox.jsonl"),
	} {
		t.Run("the embedded default policy lets an anonymous client call "+spec.ID+"__"+spec.Tool, func(t *testing.T) {
			ctx := t.Context()
			cfg, err := config.Parse(sallyportConfig(43210, spec, isolationShared, "/tmp/audit.db", "full"), "")
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Policy.Paths) != 0 {
				t.Fatalf("the config names a policy (%q): the default policy would not be measured", cfg.Policy.Paths)
			}
			st, err := policy.NewStage(ctx, policy.Options{Source: policy.Source{Paths: cfg.Policy.Paths}, Backends: cfg.Backends})
			if err != nil {
				t.Fatal(err)
			}
			args, _ := json.Marshal(spec.Arguments)
			params, _ := json.Marshal(map[string]any{"name": spec.ID + "__" + spec.Tool, "arguments": spec.Arguments})
			x := gateway.NewExchange(deliverNothing)
			x.Direction, x.Kind, x.Method = gateway.ClientToBackend, gateway.KindRequest, "tools/call"
			x.Message = &jsonrpc.Message{ID: json.RawMessage(`1`), Method: x.Method, Params: params}
			x.Principal = &gateway.Principal{ID: "anonymous", Anonymous: true}
			x.Session = &gateway.SessionInfo{ID: "s1", Transport: "http"}
			x.Backend, x.Target, x.Arguments = spec.ID, spec.Tool, args
			if err := st.Handle(ctx, x, gateway.HandlerFunc(deliverNothing)); err != nil {
				t.Fatalf("the call is refused: %v", err)
			}
			if x.Decision == nil || !x.Decision.Allow || x.Decision.Approval != nil {
				t.Fatalf("decision = %v %q %q, want an allow without approval", x.Decision != nil && x.Decision.Allow, x.Decision.Rules, x.Decision.Reasons)
			}
		})
	}
}
