package policy

import (
	"bytes"
	"testing"
)

// TestRegoSuites runs the Rego unit tests of the embedded default policy
// and of examples/policies, as `sallyport policy test` does.
func TestRegoSuites(t *testing.T) {
	for _, c := range []struct {
		name string
		src  Source
	}{
		{"the embedded default policy passes its Rego tests", Source{}},
		{"examples/policies passes its Rego tests", Source{Paths: []string{"../examples/policies"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			sum, err := Test(t.Context(), c.src, &out, TestOptions{})
			if err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			if sum.Failed+sum.Errored > 0 || sum.Passed < 10 {
				t.Errorf("summary %+v:\n%s", sum, out.String())
			}
			if _, err := Load(t.Context(), c.src); err != nil {
				t.Errorf("load: %v", err)
			}
		})
	}
}
