package jsonrpc

import (
	"encoding/json"
	"testing"
)

func TestCanonical(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"members are sorted and whitespace is dropped", `{ "b": 1, "a" : [ 2, {"d":true,"c":null} ] }`, `{"a":[2,{"c":null,"d":true}],"b":1}`},
		{"string escapes are normalised", `{"k":"\u0061\/b\n"}`, `{"k":"a/b\n"}`},
		{"escaped keys sort by their value", `{"\u0062":1,"a":2}`, `{"a":2,"b":1}`},
		{"numbers are kept as written", `[1.0,-0,1e3]`, `[1.0,-0,1e3]`},
		{"a scalar is its own canonical form", ` "x" `, `"x"`},
		{"empty containers stay empty", `{"a":{},"b":[]}`, `{"a":{},"b":[]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonical(json.RawMessage(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
	for _, bad := range []string{`{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `[1,]`, `{"a"}`, ``, `tru`, `"x" y`} {
		if _, err := Canonical(json.RawMessage(bad)); err == nil {
			t.Errorf("Canonical(%q) succeeded, want an error", bad)
		}
	}
}

func FuzzCanonical(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[2,{"d":true}]}`, `"\u00e9"`, `[]`, `{"a":{"b":{"c":[1,2,3]}}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Canonical(data)
		if err != nil {
			return
		}
		if !json.Valid(c) {
			t.Fatalf("canonical form %q of %q is not valid JSON", c, data)
		}
		var a, b any
		if json.Unmarshal(data, &a) == nil {
			json.Unmarshal(c, &b)
			ja, _ := json.Marshal(a)
			jb, _ := json.Marshal(b)
			if string(ja) != string(jb) {
				t.Fatalf("canonical form changes the value: %s vs %s", ja, jb)
			}
		}
		c2, err := Canonical(c)
		if err != nil || string(c2) != string(c) {
			t.Fatalf("canonical form is not a fixed point: %q → %q (%v)", c, c2, err)
		}
	})
}
