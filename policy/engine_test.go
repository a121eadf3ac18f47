package policy

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/sallyport/sallyport/gateway"
)

// allowAll is a minimal policy that allows everything.
const allowAll = `decision := {"allow": true, "rules": ["custom/allow"]}`

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string // nil: an empty directory
		query string
		want  []string // in the error, after the directory's path is cut out
	}{
		{
			name:  "error / http.send is not available",
			files: map[string]string{"net.rego": regoFile(`decision := {"allow": http.send({"method": "GET", "url": "https://example.com"}).status_code == 200}`)},
			want:  []string{"/net.rego:3:", "http.send is not available: policies cannot reach the network"},
		},
		{
			name:  "error / net.lookup_ip_addr is not available",
			files: map[string]string{"dns.rego": regoFile("ok if {\n\tcount(net.lookup_ip_addr(\"example.com\")) > 0\n}\n\ndecision := {\"allow\": ok}")},
			want:  []string{"/dns.rego:4:", "net.lookup_ip_addr is not available: policies cannot reach the network"},
		},
		{
			name:  "error / opa.runtime is not available",
			files: map[string]string{"env.rego": regoFile(`decision := {"allow": opa.runtime().env.HOME == "/root"}`)},
			want:  []string{"/env.rego:3:", "opa.runtime is not available: it exposes the gateway's environment"},
		},
		{
			name: "error / a forbidden built-in in a second file is named with its file",
			files: map[string]string{
				"a.rego": regoFile(allowAll),
				"b.rego": "package helpers\n\nr := http.send({\"method\": \"GET\", \"url\": \"https://example.com\"})\n",
			},
			want: []string{"/b.rego:3:", "http.send is not available"},
		},
		{
			name:  "error / syntax error names file and line",
			files: map[string]string{"broken.rego": "package sallyport\n\n\ndecision := {\"allow\" true}\n\nx := 1\n"},
			want:  []string{"/broken.rego:4:", "rego_parse_error"},
		},
		{
			name:  "error / undefined function names file and line",
			files: map[string]string{"a.rego": regoFile("\n" + `decision := {"allow": no_such_function(input)}`)},
			want:  []string{"/a.rego:4:", "undefined function no_such_function"},
		},
		{
			name:  "error / rego v0 syntax is refused",
			files: map[string]string{"old.rego": "package sallyport\n\ndecision = {\"allow\": true} { true }\n"},
			want:  []string{"/old.rego:3:", "rego_parse_error"},
		},
		{
			name: "error / empty directory",
			want: []string{"no .rego files"},
		},
		{
			name:  "error / a directory of data and tests only",
			files: map[string]string{"data.json": `{"a": 1}`, "a_test.rego": "package sallyport_test\n\ntest_x if true\n"},
			want:  []string{"no .rego files"},
		},
		{
			name:  "error / malformed data file",
			files: map[string]string{"a.rego": regoFile(allowAll), "data.json": `{"a": `},
			want:  []string{"data.json"},
		},
		{
			name:  "error / query not defined",
			files: map[string]string{"a.rego": regoFile(allowAll)},
			query: "data.sallyport.verdict",
			want:  []string{"no rule defines data.sallyport.verdict"},
		},
		{
			name:  "error / query in another package",
			files: map[string]string{"a.rego": regoFile(allowAll)},
			query: "data.other.decision",
			want:  []string{"no rule defines data.other.decision"},
		},
		{
			name:  "error / query not a data reference",
			files: map[string]string{"a.rego": regoFile(allowAll)},
			query: "input.decision",
			want:  []string{`query "input.decision" is not a data reference`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := policyDir(t, tt.files)
			set, err := Load(context.Background(), Source{Paths: []string{dir}, Query: tt.query})
			if err == nil {
				t.Fatalf("Load succeeded (version %s)", set.Version())
			}
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("error %v (%T) is not a *LoadError", err, err)
			}
			if le.Source != dir || !strings.HasPrefix(err.Error(), "policy "+dir+": ") {
				t.Errorf("error %q, Source %q: want it to start with the source %q", err, le.Source, dir)
			}
			msg := strings.ReplaceAll(err.Error(), dir, "")
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
		})
	}

	t.Run("error / a path that does not exist", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "nope")
		_, err := Load(context.Background(), Source{Paths: []string{missing}})
		var le *LoadError
		if !errors.As(err, &le) || !strings.Contains(err.Error(), "nope") {
			t.Errorf("error %v, want a *LoadError naming the path", err)
		}
	})

	t.Run("error / a path holding a colon", func(t *testing.T) {
		dir := policyDir(t, map[string]string{"a.rego": regoFile(allowAll)})
		_, err := Load(context.Background(), Source{Paths: []string{"x.y:" + dir}})
		if err == nil || !strings.Contains(err.Error(), "must not contain ':'") {
			t.Errorf("error %v, want the colon refused", err)
		}
	})

	t.Run("error / NewStage refuses a policy that does not load", func(t *testing.T) {
		dir := policyDir(t, map[string]string{"a.rego": "package sallyport\n\ndecision := {\n"})
		st, err := NewStage(context.Background(), Options{Source: Source{Paths: []string{dir}}})
		var le *LoadError
		if st != nil || !errors.As(err, &le) {
			t.Errorf("NewStage = %v, %v; want no stage and a *LoadError", st, err)
		}
	})
}

func TestLoad(t *testing.T) {
	ctx := context.Background()

	t.Run("the embedded default policy loads, without its tests", func(t *testing.T) {
		set, err := Load(ctx, Source{})
		if err != nil {
			t.Fatal(err)
		}
		if set.Source() != DefaultSource || len(set.Version()) != 64 {
			t.Errorf("Source %q, Version %q", set.Source(), set.Version())
		}
		if !slices.Equal(set.Files(), []string{"default/sallyport.rego"}) {
			t.Errorf("Files() = %q, want the policy without its test file", set.Files())
		}
		again, err := Load(ctx, Source{})
		if err != nil || again.Version() != set.Version() {
			t.Errorf("a second load gives version %q (%v), want %q", again.Version(), err, set.Version())
		}
	})

	t.Run("data files are visible under data", func(t *testing.T) {
		dir := policyDir(t, map[string]string{
			"a.rego": regoFile(`
decision := {"allow": true, "rules": ["data/allowed"]} if {
	input.tool.backend_name in data.allowed_tools
	data.team.lead == input.principal.id
} else := {"allow": false, "deny_reasons": ["not in data"], "rules": ["data/denied"]}
`),
			"data.json":      `{"allowed_tools": ["search"]}`,
			"team/data.yaml": "lead: alice\n",
		})
		set, err := Load(ctx, Source{Paths: []string{dir}})
		if err != nil {
			t.Fatal(err)
		}
		in := NewInputs(testBackends)
		for _, tc := range []struct {
			x     *gateway.Exchange
			allow bool
		}{
			{toolCall(alice, "docs", "search", `{}`, ""), true},
			{toolCall(bob, "docs", "search", `{}`, ""), false},
			{toolCall(alice, "docs", "delete", `{}`, ""), false},
		} {
			doc, err := in.Build(tc.x)
			if err != nil {
				t.Fatal(err)
			}
			if d := set.Eval(ctx, doc); d.Allow != tc.allow || d.PolicyVersion != set.Version() {
				t.Errorf("%s calling %s: allow=%v (%q, version %q), want %v", tc.x.Principal.ID, tc.x.Target, d.Allow, d.Reasons, d.PolicyVersion, tc.allow)
			}
		}
	})

	t.Run("data files count toward the version", func(t *testing.T) {
		dir := policyDir(t, map[string]string{"a.rego": regoFile(allowAll), "data.json": `{"limit": 1}`})
		v1 := mustLoad(t, dir).Version()
		writeFiles(t, dir, map[string]string{"data.json": `{"limit": 2}`})
		if v2 := mustLoad(t, dir).Version(); v2 == v1 {
			t.Errorf("version %s did not change with the data", v1)
		}
	})

	t.Run("Files lists the data files of the set", func(t *testing.T) {
		dir := policyDir(t, map[string]string{"a.rego": regoFile(allowAll), "data.json": `{"limit": 1}`})
		files := mustLoad(t, dir).Files()
		if !slices.ContainsFunc(files, func(f string) bool { return strings.HasSuffix(f, "a.rego") }) {
			t.Errorf("Files() = %q lacks a.rego", files)
		}
		if !slices.ContainsFunc(files, func(f string) bool { return strings.HasSuffix(f, "data.json") }) {
			t.Errorf("Files() = %q lacks data.json", files)
		}
	})

	t.Run("hidden files and directories and unrelated files are skipped", func(t *testing.T) {
		dir := policyDir(t, map[string]string{
			"a.rego":            regoFile(allowAll),
			".hidden.rego":      "this is not rego",
			".git/x.rego":       "neither is this",
			"README.md":         "# notes",
			"sub/.data.json":    "not json",
			"notes.txt":         "x",
			"sub/helpers.rego":  "package helpers\n\nx := 1\n",
			"sub/.cache/y.rego": "broken",
		})
		names := relFiles(mustLoad(t, dir), dir)
		if !slices.Equal(names, []string{"a.rego", "sub/helpers.rego"}) {
			t.Errorf("Files() = %q", names)
		}
	})

	t.Run("_test.rego files are not loaded", func(t *testing.T) {
		// The test file would not compile into the set: it uses a
		// forbidden built-in and would define the decision twice.
		dir := policyDir(t, map[string]string{
			"a.rego":      regoFile(allowAll),
			"a_test.rego": regoFile("decision := {\"allow\": false}\n\ntest_net if http.send({\"method\": \"GET\", \"url\": \"https://example.com\"})"),
		})
		set := mustLoad(t, dir)
		if len(set.Files()) != 1 || !strings.HasSuffix(set.Files()[0], "a.rego") {
			t.Errorf("Files() = %q", set.Files())
		}
		v1 := set.Version()
		writeFiles(t, dir, map[string]string{"a_test.rego": "package sallyport_test\n\ntest_ok if true\n"})
		if v2 := mustLoad(t, dir).Version(); v2 != v1 {
			t.Errorf("editing a test file changed the version %s to %s", v1, v2)
		}
	})

	t.Run("the version changes with content and names, not with times", func(t *testing.T) {
		dir := policyDir(t, map[string]string{"a.rego": regoFile(allowAll)})
		p := filepath.Join(dir, "a.rego")
		v1 := mustLoad(t, dir).Version()
		later := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		if err := os.Chtimes(p, later, later); err != nil {
			t.Fatal(err)
		}
		if v := mustLoad(t, dir).Version(); v != v1 {
			t.Errorf("touching the file changed the version")
		}
		writeFiles(t, dir, map[string]string{"a.rego": regoFile(allowAll + "\n# a comment")})
		v2 := mustLoad(t, dir).Version()
		if v2 == v1 {
			t.Errorf("editing the file did not change the version")
		}
		if err := os.Rename(p, filepath.Join(dir, "b.rego")); err != nil {
			t.Fatal(err)
		}
		if v3 := mustLoad(t, dir).Version(); v3 == v2 {
			t.Errorf("renaming the file did not change the version")
		}
		writeFiles(t, dir, map[string]string{"a.rego": regoFile(allowAll)})
		os.Remove(filepath.Join(dir, "b.rego"))
		if v4 := mustLoad(t, dir).Version(); v4 != v1 {
			t.Errorf("restoring the first content gives version %s, want %s", v4, v1)
		}
	})

	t.Run("a custom query selects the decision", func(t *testing.T) {
		dir := policyDir(t, map[string]string{"a.rego": "package corp.mcp\n\nverdict := {\"allow\": true, \"rules\": [\"corp/allow\"]}\n"})
		set, err := Load(ctx, Source{Paths: []string{dir}, Query: "data.corp.mcp.verdict"})
		if err != nil {
			t.Fatal(err)
		}
		doc, _ := NewInputs(nil).Build(toolCall(alice, "docs", "search", `{}`, ""))
		if d := set.Eval(ctx, doc); !d.Allow || !slices.Equal(d.Rules, []string{"corp/allow"}) {
			t.Errorf("decision %+v", d)
		}
	})

	t.Run("several paths load as one set", func(t *testing.T) {
		a := policyDir(t, map[string]string{"a.rego": regoFile(`decision := {"allow": data.helpers.ok}`)})
		b := policyDir(t, map[string]string{"h.rego": "package helpers\n\nok := true\n"})
		set, err := Load(ctx, Source{Paths: []string{a, b}})
		if err != nil {
			t.Fatal(err)
		}
		if set.Source() != a+", "+b || len(set.Files()) != 2 {
			t.Errorf("Source %q, Files %q", set.Source(), set.Files())
		}
		doc, _ := NewInputs(nil).Build(toolCall(alice, "docs", "search", `{}`, ""))
		if d := set.Eval(ctx, doc); !d.Allow {
			t.Errorf("decision %+v", d)
		}
	})
}

// relFiles returns set's files relative to dir. (The loader names files
// by their path without the leading '/'.)
func relFiles(set *Set, dir string) []string {
	var names []string
	for _, f := range set.Files() {
		f = strings.TrimPrefix(filepath.ToSlash(f), "/")
		names = append(names, strings.TrimPrefix(f, strings.TrimPrefix(filepath.ToSlash(dir), "/")+"/"))
	}
	return names
}

func mustLoad(t testing.TB, dir string) *Set {
	t.Helper()
	set, err := Load(context.Background(), Source{Paths: []string{dir}})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return set
}

func TestEvalDocument(t *testing.T) {
	set := mustLoad(t, policyDir(t, map[string]string{"a.rego": regoFile(`decision := {"allow": input.ok == true, "rules": {"b", "a", "b"}, "reasons": [input.why]}`)}))
	tests := []struct {
		name  string
		input string
		allow bool
		raw   bool // a raw decision is returned
		rules []string
	}{
		{name: "allow / decision read from a JSON input", input: `{"ok": true, "why": "fine"}`, allow: true, raw: true, rules: []string{"a", "b"}},
		{name: "deny / the same policy on other input", input: `{"ok": false, "why": "no"}`, raw: true, rules: []string{"a", "b"}},
		{name: "deny / undefined decision has no raw value", input: `{"ok": true}`, rules: []string{RuleError}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := DecodeInput([]byte(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			raw, d := set.EvalDocument(context.Background(), doc)
			if (raw != nil) != tt.raw || d.Allow != tt.allow || !slices.Equal(d.Rules, tt.rules) || d.PolicyVersion != set.Version() {
				t.Errorf("raw %v, decision %+v", raw, d)
			}
		})
	}
	if _, err := DecodeInput([]byte(`{"a":`)); err == nil {
		t.Error("DecodeInput accepted malformed JSON")
	}
}

func TestEvalConcurrent(t *testing.T) {
	// One prepared set serves every session at once.
	st := newStage(t, Options{Backends: testBackends})
	done := make(chan error)
	for g := range 4 {
		go func() {
			var err error
			for i := range 50 {
				x := toolCall(anonymous, "docs", "search", `{"i":1}`, "")
				if (g+i)%2 == 1 {
					x = toolCall(anonymous, "docs", "update", `{"i":1}`, "")
				}
				herr := st.Handle(context.Background(), x, &recorder{})
				if (herr == nil) != ((g+i)%2 == 0) && err == nil {
					err = errors.New("wrong decision under concurrency: " + strings.Join(x.Decision.Reasons, "; "))
				}
			}
			done <- err
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func TestTest(t *testing.T) {
	ctx := context.Background()
	policy := regoFile(`
default decision := {"allow": false}

decision := {"allow": true} if input.principal.id == "alice"
`)
	tests := []struct {
		name    string
		files   map[string]string
		opts    TestOptions
		want    TestSummary
		err     string   // in the error; "" for none
		output  []string // in the report
		failing bool     // the command would exit non-zero
	}{
		{
			name: "pass / every test passes",
			files: map[string]string{"a.rego": policy, "a_test.rego": `package sallyport_test

import data.sallyport

test_alice if sallyport.decision.allow with input as {"principal": {"id": "alice"}}

test_bob if not sallyport.decision.allow with input as {"principal": {"id": "bob"}}
`},
			want:   TestSummary{Passed: 2},
			output: []string{"PASS: 2/2"},
		},
		{
			name: "fail / a failing and an erroring test are counted apart",
			files: map[string]string{"a.rego": policy, "a_test.rego": `package sallyport_test

import data.sallyport

test_alice if sallyport.decision.allow with input as {"principal": {"id": "alice"}}

test_bob_wrongly_allowed if sallyport.decision.allow with input as {"principal": {"id": "bob"}}

test_errors if to_number("x") == 1

todo_test_later if false
`},
			want:    TestSummary{Passed: 1, Failed: 1, Errored: 1, Skipped: 1},
			output:  []string{"test_bob_wrongly_allowed", "FAIL", "test_errors", "ERROR"},
			failing: true,
		},
		{
			name: "pass / Run selects tests",
			files: map[string]string{"a.rego": policy, "a_test.rego": `package sallyport_test

import data.sallyport

test_alice if sallyport.decision.allow with input as {"principal": {"id": "alice"}}

test_bob_wrongly_allowed if sallyport.decision.allow with input as {"principal": {"id": "bob"}}
`},
			opts: TestOptions{Run: "alice"},
			want: TestSummary{Passed: 1},
		},
		{
			name:  "error / no tests",
			files: map[string]string{"a.rego": policy},
			err:   "no tests found",
		},
		{
			name:  "error / a forbidden built-in in a test file",
			files: map[string]string{"a.rego": policy, "a_test.rego": "package sallyport_test\n\ntest_net if http.send({\"method\": \"GET\", \"url\": \"https://example.com\"})\n"},
			err:   "http.send is not available",
		},
		{
			name:  "error / a syntax error in a test file",
			files: map[string]string{"a.rego": policy, "a_test.rego": "package sallyport_test\n\ntest_x if {\n"},
			err:   "a_test.rego:",
		},
		{
			name: "pass / tests see data files",
			files: map[string]string{"a.rego": regoFile(`decision := {"allow": input.principal.id in data.admins}`), "data.json": `{"admins": ["root"]}`,
				"a_test.rego": "package sallyport_test\n\nimport data.sallyport\n\ntest_root if sallyport.decision.allow with input as {\"principal\": {\"id\": \"root\"}}\n"},
			want: TestSummary{Passed: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := policyDir(t, tt.files)
			var out bytes.Buffer
			sum, err := Test(ctx, Source{Paths: []string{dir}}, &out, tt.opts)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Test: %v\n%s", err, out.String())
			}
			if sum != tt.want {
				t.Errorf("summary %+v, want %+v\n%s", sum, tt.want, out.String())
			}
			if failing := sum.Failed+sum.Errored > 0; failing != tt.failing {
				t.Errorf("failing = %v, want %v", failing, tt.failing)
			}
			for _, w := range tt.output {
				if !strings.Contains(out.String(), w) {
					t.Errorf("report lacks %q:\n%s", w, out.String())
				}
			}
		})
	}

	t.Run("pass / the embedded default policy's tests", func(t *testing.T) {
		var out bytes.Buffer
		sum, err := Test(ctx, Source{}, &out, TestOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if sum.Passed == 0 || sum.Failed+sum.Errored != 0 {
			t.Errorf("summary %+v\n%s", sum, out.String())
		}
	})
}

var _ ast.Value // the package's inputs are OPA values
