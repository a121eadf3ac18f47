package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParse checks that no input makes Parse panic, that whatever it
// accepts also validates, and that the backends it accepts survive
// MarshalBackends and a second parse unchanged.
func FuzzParse(f *testing.F) {
	for _, tt := range parseCases {
		f.Add([]byte(tt.yaml))
	}
	for _, name := range []string{filepath.Join("..", "..", "examples", "sallyport.yaml")} {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	if golden, _ := filepath.Glob(filepath.Join("testdata", "*.golden.yaml")); len(golden) > 0 {
		for _, name := range golden {
			if data, err := os.ReadFile(name); err == nil {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parse(data, "fuzz.yaml", lookupTestEnv)
		if err == nil && unknownToYAML(data) {
			t.Fatalf("yaml's KnownFields(true) finds an unknown field that parse accepted")
		}
		if err != nil {
			if c != nil {
				t.Fatalf("parse returned a config with error %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed config does not validate: %v", err)
		}
		out, err := MarshalBackends(c.Backends)
		if err != nil {
			t.Fatalf("MarshalBackends: %v", err)
		}
		again, err := parse(out, "again.yaml", lookupTestEnv)
		if err != nil {
			t.Fatalf("MarshalBackends output does not parse: %v\n%s", err, out)
		}
		if len(c.Backends) == 0 && len(again.Backends) == 0 {
			return
		}
		// Backend defaults that come from limits are written out explicitly,
		// so the second parse sees the same values.
		if !reflect.DeepEqual(normalize(again.Backends), normalize(c.Backends)) {
			t.Fatalf("round trip changed backends:\n%s\ngot  %+v\nwant %+v", out, again.Backends, c.Backends)
		}
	})
}

// normalize drops the difference between empty and nil lists and maps,
// which YAML does not keep.
func normalize(bs []Backend) []Backend {
	out := make([]Backend, len(bs))
	for i, b := range bs {
		if len(b.Args) == 0 {
			b.Args = nil
		}
		if len(b.EnvPassthrough) == 0 {
			b.EnvPassthrough = nil
		}
		for _, m := range []*map[string]string{&b.Env, &b.Headers, &b.Labels} {
			if len(*m) == 0 {
				*m = nil
			}
		}
		out[i] = b
	}
	return out
}

// unknownToYAML reports whether yaml's own strict decoder finds an unknown
// field in data.
func unknownToYAML(data []byte) bool {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Config
	err := dec.Decode(&c)
	var te *yaml.TypeError
	if errors.As(err, &te) {
		for _, msg := range te.Errors {
			if strings.Contains(msg, "not found in type") {
				return true
			}
		}
	}
	return false
}

// FuzzImportClaudeDesktop checks that no input makes the importer panic and
// that whatever it accepts is written out as a config that parses back to
// the same backends.
func FuzzImportClaudeDesktop(f *testing.F) {
	inputs, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, name := range inputs {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(`{"mcpServers":{"x":{"url":"https://x.example","type":"sse","headers":{"A":"$b"}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		bs, err := ImportClaudeDesktop(data)
		if err != nil {
			return
		}
		out, err := MarshalBackends(bs)
		if err != nil {
			t.Fatalf("MarshalBackends: %v", err)
		}
		c, err := parse(out, "import.yaml", lookupTestEnv)
		if err != nil {
			t.Fatalf("imported backends do not parse: %v\n%s", err, out)
		}
		for i := range bs {
			bs[i].applyDefaults(c.Limits.MaxMessageBytes)
		}
		if !reflect.DeepEqual(normalize(c.Backends), normalize(bs)) {
			t.Fatalf("round trip changed backends:\n%s\ngot  %+v\nwant %+v", out, c.Backends, bs)
		}
	})
}
