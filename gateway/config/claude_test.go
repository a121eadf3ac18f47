package config

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestImportClaudeDesktopGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, in := range inputs {
		golden := strings.TrimSuffix(in, ".json") + ".golden.yaml"
		t.Run(filepath.Base(in)+" imports as "+filepath.Base(golden), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			backends, err := ImportClaudeDesktop(data)
			if err != nil {
				t.Fatalf("ImportClaudeDesktop: %v", err)
			}
			got, err := MarshalBackends(backends)
			if err != nil {
				t.Fatalf("MarshalBackends: %v", err)
			}
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (run go test -update if the change is intended):\n%s", golden, got)
			}

			// The output pastes into a config: it parses, validates and
			// means exactly what was imported.
			c, err := parse(got, golden, func(string) (string, bool) { return "", false })
			if err != nil {
				t.Fatalf("the output does not parse: %v", err)
			}
			for i := range backends {
				backends[i].applyDefaults(c.Limits.MaxMessageBytes)
			}
			if !reflect.DeepEqual(c.Backends, backends) {
				t.Errorf("parsed backends = %+v\nwant %+v", c.Backends, backends)
			}
		})
	}
}

func TestImportClaudeDesktop(t *testing.T) {
	tests := []struct {
		name string
		json string
		want []Backend
		errs []string
	}{
		{
			name: "a command becomes a stdio backend",
			json: `{"mcpServers":{"fs":{"command":"npx","args":["-y","x"],"env":{"A":"1"}}}}`,
			want: []Backend{{ID: "fs", Transport: TransportStdio, Command: "npx", Args: []string{"-y", "x"}, Env: map[string]string{"A": "1"}}},
		},
		{
			name: "a url becomes an http backend, or sse when the type says so",
			json: `{"mcpServers":{"b":{"url":"https://b.example/sse","type":"sse"},"a":{"url":"https://a.example/mcp","headers":{"X-K":"v"}}}}`,
			want: []Backend{
				{ID: "a", Transport: TransportHTTP, URL: "https://a.example/mcp", Headers: map[string]string{"X-K": "v"}},
				{ID: "b", Transport: TransportSSE, URL: "https://b.example/sse"},
			},
		},
		{
			name: "no servers is an empty list",
			json: `{"mcpServers":{}}`,
			want: []Backend{},
		},
		{
			name: "unknown server keys are an error naming them",
			json: `{"mcpServers":{"fs":{"command":"npx","disabled":true,"cwd":"/"}}}`,
			errs: []string{`mcpServers.fs: unknown keys "cwd", "disabled"`},
		},
		{
			name: "a server with both command and url is an error",
			json: `{"mcpServers":{"x":{"command":"a","url":"https://x.example"}}}`,
			errs: []string{`mcpServers.x: has both command and url`},
		},
		{
			name: "a server with neither command nor url is an error",
			json: `{"mcpServers":{"x":{"args":["a"]}}}`,
			errs: []string{`mcpServers.x: needs a command or a url`},
		},
		{
			name: "a type that does not fit is an error",
			json: `{"mcpServers":{"x":{"url":"https://x.example","type":"stdio"}}}`,
			errs: []string{`mcpServers.x.type "stdio": does not fit`},
		},
		{
			name: "a server that would not validate is an error naming it",
			json: `{"mcpServers":{"My Server":{"url":"ftp://x.example","headers":{"Host":"SECRETVALUE"}}}}`,
			errs: []string{`mcpServers["My Server"].url "ftp://x.example": scheme must be http or https`, `mcpServers["My Server"].headers.Host: set by the gateway`},
		},
		{
			name: "a field of the wrong type is an error",
			json: `{"mcpServers":{"x":{"command":"a","args":"b"}}}`,
			errs: []string{`mcpServers.x.args: json: cannot unmarshal string`},
		},
		{
			name: "every bad server is reported",
			json: `{"mcpServers":{"x":{"bogus":1},"y":{}}}`,
			errs: []string{`mcpServers.x: unknown keys "bogus"`, `mcpServers.y: needs a command or a url`},
		},
		{name: "a server that is not an object is an error naming it", json: `{"mcpServers":{"x":5}}`,
			errs: []string{"mcpServers.x: json: cannot unmarshal number"}},
		{name: "a missing mcpServers is an error", json: `{"servers":{}}`, errs: []string{"no mcpServers"}},
		{name: "malformed JSON is an error", json: `{"mcpServers":`, errs: []string{"import claude desktop config: unexpected EOF"}},
		{name: "trailing data is an error", json: `{"mcpServers":{}} {}`, errs: []string{"unexpected data after the JSON value"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ImportClaudeDesktop([]byte(tt.json))
			if len(tt.errs) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("got %+v\nwant %+v", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %+v, want errors %q", got, tt.errs)
			}
			for _, want := range tt.errs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not contain %q:\n%v", want, err)
				}
			}
			if strings.Contains(err.Error(), "SECRETVALUE") {
				t.Errorf("error shows a header value:\n%v", err)
			}
		})
	}
}

func TestDeriveID(t *testing.T) {
	tests := []struct {
		name  string
		names []string
		want  []string
	}{
		{name: "names are lowercased", names: []string{"GitHub"}, want: []string{"github"}},
		{name: "runs of other characters become one hyphen and are trimmed",
			names: []string{"  My  Server (v2)! "}, want: []string{"my-server-v2"}},
		{name: "a name with no usable character becomes backend", names: []string{"日本語"}, want: []string{"backend"}},
		{name: "clashes get -2, -3", names: []string{"a", "A", "a!"}, want: []string{"a", "a-2", "a-3"}},
		{name: "a suffix never collides with a real name", names: []string{"a", "a-2", "A"}, want: []string{"a", "a-2", "a-3"}},
		{name: "long names are truncated to 32 characters without a trailing hyphen",
			names: []string{strings.Repeat("ab", 15) + "c-d", strings.Repeat("ab", 15) + "c-e"},
			want:  []string{strings.Repeat("ab", 15) + "c", strings.Repeat("ab", 15) + "-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			used := map[string]bool{}
			var got []string
			for _, n := range tt.names {
				id := uniqueID(deriveID(n), used)
				if len(id) > maxIDLength || !idRE.MatchString(id) {
					t.Errorf("id %q from %q is not a valid backend id", id, n)
				}
				got = append(got, id)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ids = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMarshalBackends(t *testing.T) {
	t.Run("every field round-trips through Parse, dollars included", func(t *testing.T) {
		in := []Backend{
			{
				ID: "full", Transport: TransportStdio, Command: "/bin/$HOME", Args: []string{"${X}", "$$", "yes", "123", "a: b", "- c"},
				Env: map[string]string{"A": "$1", "B": ""}, EnvPassthrough: []string{"PATH2"}, Cwd: "/tmp/$x",
				Isolation: IsolationShared, Timeouts: Timeouts{Startup: Duration(time.Minute), Request: Duration(36 * time.Hour), Shutdown: Duration(1500 * time.Millisecond)},
				Labels: map[string]string{"env": "null", "team": "~"}, MaxMessageBytes: 3 * MiB,
			},
			{ID: "web", Transport: TransportHTTP, URL: "https://x.example/mcp?k=$v", Headers: map[string]string{"Authorization": "Bearer $tok"},
				Timeouts: Timeouts{Request: Duration(2 * time.Minute)}, MaxMessageBytes: 1500},
		}
		out, err := MarshalBackends(in)
		if err != nil {
			t.Fatal(err)
		}
		c, err := parse(out, "out.yaml", lookupTestEnv)
		if err != nil {
			t.Fatalf("parse:\n%s\n%v", out, err)
		}
		for i := range in {
			in[i].applyDefaults(c.Limits.MaxMessageBytes)
		}
		if !reflect.DeepEqual(c.Backends, in) {
			t.Errorf("round trip:\n%s\ngot  %+v\nwant %+v", out, c.Backends, in)
		}
	})
	t.Run("zero fields are left out", func(t *testing.T) {
		out, err := MarshalBackends([]Backend{{ID: "a", Transport: TransportStdio, Command: "x", Env: map[string]string{}}})
		if err != nil {
			t.Fatal(err)
		}
		if want := "backends:\n  - id: a\n    transport: stdio\n    command: x\n"; string(out) != want {
			t.Errorf("got\n%s\nwant\n%s", out, want)
		}
	})
	t.Run("no backends is an empty list", func(t *testing.T) {
		out, err := MarshalBackends(nil)
		if err != nil || string(out) != "backends: []\n" {
			t.Errorf("got %q, %v", out, err)
		}
	})
}

// TestBackendYAMLMirrorsBackend keeps MarshalBackends in step with Backend.
func TestBackendYAMLMirrorsBackend(t *testing.T) {
	for _, pair := range [][2]reflect.Type{
		{reflect.TypeFor[Backend](), reflect.TypeFor[backendYAML]()},
		{reflect.TypeFor[Timeouts](), reflect.TypeFor[timeoutsYAML]()},
	} {
		b, y := pair[0], pair[1]
		if b.NumField() != y.NumField() {
			t.Fatalf("%v has %d fields, %v has %d", b, b.NumField(), y, y.NumField())
		}
		for i := range b.NumField() {
			bf, yf := b.Field(i), y.Field(i)
			if bf.Name != yf.Name || bf.Tag.Get("yaml")+",omitempty" != yf.Tag.Get("yaml") {
				t.Errorf("field %d: %v %q vs %v %q", i, bf.Name, bf.Tag, yf.Name, yf.Tag)
			}
		}
	}
}
