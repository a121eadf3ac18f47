package jsonrpc

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestMember(t *testing.T) {
	obj := json.RawMessage(` { "a" : 1 , "b\u0063" :{"a":2, "x":[1,{"a":3}]}, "s":"}\"{", "\u00e9":"é", "\/": null } `)
	for _, tc := range []struct {
		name, key, want string
		found           bool
	}{
		{"member / plain name with whitespace around", "a", "1", true},
		{"member / escaped name matches unescaped key", "bc", `{"a":2, "x":[1,{"a":3}]}`, true},
		{"member / string value with braces and quotes", "s", `"}\"{"`, true},
		{"member / non-ASCII escaped name", "é", `"é"`, true},
		{"member / escaped solidus name", "/", "null", true},
		{"member / nested names are not top-level", "x", "", false},
		{"member / names are case-sensitive", "A", "", false},
		{"member / the key is not unescaped", `\u00e9`, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, found := Member(obj, tc.key)
			if found != tc.found || string(got) != tc.want {
				t.Errorf("Member(%q) = %s, %v; want %s, %v", tc.key, got, found, tc.want, tc.found)
			}
		})
	}
	t.Run("member / not an object", func(t *testing.T) {
		for _, in := range []string{``, `[1]`, `"a"`, `null`, `{"a"`, `{"a":`} {
			if v, found := Member(json.RawMessage(in), "a"); found {
				t.Errorf("Member(%q) = %s, true", in, v)
			}
		}
	})
	t.Run("member / result capacity is clipped", func(t *testing.T) {
		v, _ := Member(obj, "a")
		if cap(v) != len(v) {
			t.Error("capacity not clipped")
		}
	})
}

func TestSetMember(t *testing.T) {
	for _, tc := range []struct {
		name, obj, key, val, want string
	}{
		{"set / replace keeps order and other bytes", `{ "a" : 1 , "b":2 }`, "a", `"x"`, `{ "a" : "x" , "b":2 }`},
		{"set / replace last member", `{"a":1,"b":{"c":2}}`, "b", `[]`, `{"a":1,"b":[]}`},
		{"set / replace member written with escapes", `{"\u005fmeta":{"old":1},"z":0}`, "_meta", `{"new":2}`, `{"\u005fmeta":{"new":2},"z":0}`},
		{"set / replace does not touch nested members", `{"x":{"a":1},"a":2}`, "a", `3`, `{"x":{"a":1},"a":3}`},
		{"set / append to object with whitespace", "{\n  \"a\": 1\n}\n", "b", `true`, "{\n  \"a\": 1,\"b\":true\n}\n"},
		{"set / append to empty object", `{}`, "a", `1`, `{"a":1}`},
		{"set / append to empty object with whitespace", `{ }`, "a", `1`, `{"a":1 }`},
		{"set / append quotes the key", `{"a":1}`, "we\"ird\n", `1`, `{"a":1,"we\"ird\n":1}`},
		{"set / nil object", ``, "a", `{"b":2}`, `{"a":{"b":2}}`},
		{"set / whitespace object", `  `, "a", `1`, `{"a":1}`},
		{"set / null object", `null`, "a", `1`, `{"a":1}`},
		{"set / empty value becomes null", `{"a":1}`, "a", ``, `{"a":null}`},
		{"set / value containing the key name", `{"a":"a"}`, "b", `{"a":1}`, `{"a":"a","b":{"a":1}}`},
		{"set / duplicate names collapse to one", `{"a":1,"b":2,"a":3,"c":4,"a":5}`, "a", `0`, `{"a":0,"b":2,"c":4}`},
		{"set / consecutive duplicate names collapse to one", `{"a":1,"a":2,"a":3,"b":4}`, "a", `0`, `{"a":0,"b":4}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := json.RawMessage(tc.obj)
			orig := string(obj)
			got := SetMember(obj, tc.key, json.RawMessage(tc.val))
			if string(got) != tc.want {
				t.Errorf("SetMember(%q, %q, %q) = %q, want %q", tc.obj, tc.key, tc.val, got, tc.want)
			}
			if string(obj) != orig {
				t.Errorf("obj mutated to %q", obj)
			}
			if err := Valid(got, Limits{}); err != nil {
				t.Errorf("result invalid: %v", err)
			}
		})
	}
	t.Run("set / never aliases obj", func(t *testing.T) {
		obj := make(json.RawMessage, 0, 64)
		obj = append(obj, `{"a":1}`...)
		got := SetMember(obj, "a", json.RawMessage("2"))
		got[0] = 'X'
		if obj[0] != '{' {
			t.Error("result shares obj's storage")
		}
	})
	t.Run("set / not an object", func(t *testing.T) {
		for _, in := range []string{`[1]`, `1`, `"x"`, `{"a":`, `{"a" 1}`} {
			if got := SetMember(json.RawMessage(in), "a", json.RawMessage("1")); got != nil {
				t.Errorf("SetMember(%q) = %q, want nil", in, got)
			}
		}
	})
}

func TestDeleteMember(t *testing.T) {
	for _, tc := range []struct {
		name, obj, key, want string
	}{
		{"delete / first member", `{"a":1,"b":2,"c":3}`, "a", `{"b":2,"c":3}`},
		{"delete / middle member", `{"a":1,"b":2,"c":3}`, "b", `{"a":1,"c":3}`},
		{"delete / last member", `{"a":1,"b":2,"c":3}`, "c", `{"a":1,"b":2}`},
		{"delete / only member", `{"a":1}`, "a", `{}`},
		{"delete / only member with whitespace", `{ "a" : 1 }`, "a", `{  }`},
		{"delete / first member with whitespace", "{ \"a\" : 1 ,\n \"b\" : 2 }", "a", "{ \"b\" : 2 }"},
		{"delete / last member with whitespace", "{ \"a\" : 1 ,\n \"b\" : 2 }", "b", "{ \"a\" : 1 }"},
		{"delete / escaped name", `{"x":0,"\u0061":{"n":[1]},"y":2}`, "a", `{"x":0,"y":2}`},
		{"delete / nested member untouched", `{"x":{"a":1},"y":2}`, "a", `{"x":{"a":1},"y":2}`},
		{"delete / absent member gives a copy", `{"x":1}`, "a", `{"x":1}`},
		{"delete / empty object", `{}`, "a", `{}`},
		{"delete / every duplicate", `{"a":1,"a":2,"b":3,"a":4}`, "a", `{"b":3}`},
		{"delete / all members are duplicates", `{"a":1,"a":2}`, "a", `{}`},
		{"delete / consecutive duplicates after a kept member", `{"b":0,"a":1,"a":2,"a":3}`, "a", `{"b":0}`},
		{"delete / consecutive duplicates between kept members", `{"b":0,"a":1,"a":2,"c":3}`, "a", `{"b":0,"c":3}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := json.RawMessage(tc.obj)
			got := DeleteMember(obj, tc.key)
			if string(got) != tc.want {
				t.Errorf("DeleteMember(%q, %q) = %q, want %q", tc.obj, tc.key, got, tc.want)
			}
			if string(obj) != tc.obj {
				t.Errorf("obj mutated to %q", obj)
			}
			if !json.Valid(got) {
				t.Errorf("result is not JSON")
			}
		})
	}
	t.Run("delete / not an object", func(t *testing.T) {
		for _, in := range []string{``, `[1]`, `null`, `{"a":1`} {
			if got := DeleteMember(json.RawMessage(in), "a"); got != nil {
				t.Errorf("DeleteMember(%q) = %q, want nil", in, got)
			}
		}
	})
}

func TestEachMember(t *testing.T) {
	t.Run("each member / in order with keys unescaped", func(t *testing.T) {
		obj := json.RawMessage(" {\"a\":1, \"b\\u0063\" : {\"n\":[1,2]} ,\"\\ud83d\\ude00\":\"x\",\"e\":[]}\n")
		var got []string
		err := EachMember(obj, func(k string, v json.RawMessage) bool {
			got = append(got, k+"="+string(v))
			return true
		})
		want := `a=1|bc={"n":[1,2]}|😀="x"|e=[]`
		if err != nil || strings.Join(got, "|") != want {
			t.Errorf("got %q, %v; want %q", strings.Join(got, "|"), err, want)
		}
	})
	t.Run("each member / stops when fn returns false", func(t *testing.T) {
		n := 0
		err := EachMember(json.RawMessage(`{"a":1,"b":2,"c":3}`), func(string, json.RawMessage) bool { n++; return n < 2 })
		if err != nil || n != 2 {
			t.Errorf("n = %d, err = %v", n, err)
		}
	})
	t.Run("each member / empty object", func(t *testing.T) {
		err := EachMember(json.RawMessage(`{ }`), func(string, json.RawMessage) bool { t.Error("called"); return true })
		if err != nil {
			t.Error(err)
		}
	})
	t.Run("each member / errors on non-objects and malformed input", func(t *testing.T) {
		for _, in := range []string{``, `[]`, `1`, `{"a":1`, `{"a":1,}`, `{"a" 1}`, `{"a\ud800":1}`} {
			if err := EachMember(json.RawMessage(in), func(string, json.RawMessage) bool { return true }); err == nil {
				t.Errorf("EachMember(%q) = nil", in)
			}
		}
	})
}

func TestEachElement(t *testing.T) {
	t.Run("each element / in order", func(t *testing.T) {
		var got []string
		err := EachElement(json.RawMessage(` [ 1 , "a,]" ,{"x":[2]},[],null ] `), func(i int, v json.RawMessage) bool {
			got = append(got, fmt.Sprintf("%d:%s", i, v))
			return true
		})
		want := `0:1|1:"a,]"|2:{"x":[2]}|3:[]|4:null`
		if err != nil || strings.Join(got, "|") != want {
			t.Errorf("got %q, %v", strings.Join(got, "|"), err)
		}
	})
	t.Run("each element / empty array and early stop", func(t *testing.T) {
		if err := EachElement(json.RawMessage(`[]`), func(int, json.RawMessage) bool { t.Error("called"); return true }); err != nil {
			t.Error(err)
		}
		n := 0
		if err := EachElement(json.RawMessage(`[1,2,3]`), func(int, json.RawMessage) bool { n++; return false }); err != nil || n != 1 {
			t.Errorf("n = %d err = %v", n, err)
		}
	})
	t.Run("each element / errors on non-arrays and malformed input", func(t *testing.T) {
		for _, in := range []string{``, `{}`, `[1`, `[1,`, `[1 2]`, `["a]`} {
			if err := EachElement(json.RawMessage(in), func(int, json.RawMessage) bool { return true }); err == nil {
				t.Errorf("EachElement(%q) = nil", in)
			}
		}
	})
}

func TestQuote(t *testing.T) {
	cases := []string{
		"", "plain", `"quoted" \back\`, "\x00\x01\b\f\n\r\t\x1f\x7f", "<html>&amp;", "é😀", "\u2028\u2029",
		"bad \xff utf8 \xc0\xaf", "\xed\xa0\x80", "trailing \xe2\x82",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, rng.IntN(20))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		cases = append(cases, string(b))
	}
	for _, s := range cases {
		got := Quote(s)
		var w strings.Builder
		enc := json.NewEncoder(&w)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		if want := strings.TrimSuffix(w.String(), "\n"); string(got) != want {
			t.Errorf("Quote(%q) = %s, want %s (encoding/json)", s, got, want)
		}
		if err := Valid(got, Limits{}); err != nil {
			t.Errorf("Quote(%q) = %s is not valid: %v", s, got, err)
		}
		back, ok := Unquote(got)
		if !ok || (utf8.ValidString(s) && back != s) {
			t.Errorf("Unquote(Quote(%q)) = %q, %v", s, back, ok)
		}
	}
}

func TestUnquote(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{`""`, "", true},
		{`"abc"`, "abc", true},
		{`"\u0061\/\"\\\b\f\n\r\t"`, "a/\"\\\b\f\n\r\t", true},
		{`"\ud83d\ude00 é"`, "😀 é", true},
		{`"\u00E9\u00e9"`, "éé", true},
		{`"\u0000"`, "\x00", true},
		{"\"\uFFFD\"", "\uFFFD", true},
		{`abc`, "", false},
		{`"abc`, "", false},
		{`"`, "", false},
		{` "a"`, "", false},
		{`"a"b"`, "", false},
		{`"\"`, "", false},
		{`"\ud800"`, "", false},
		{`"\udc00\ud800"`, "", false},
		{`"\ud800\u0041"`, "", false},
		{`"\u12"`, "", false},
		{`"\x"`, "", false},
		{"\"a\nb\"", "", false},
		{"\"\xff\"", "", false},
		{"\"\xed\xa0\x80\"", "", false},
		{`1`, "", false},
	} {
		t.Run(fmt.Sprintf("unquote / %q", tc.in), func(t *testing.T) {
			got, ok := Unquote(json.RawMessage(tc.in))
			if got != tc.want || ok != tc.ok {
				t.Errorf("Unquote(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
			// Unquote must agree with the scanner on what a string is.
			if valid := Valid(json.RawMessage(tc.in), Limits{}) == nil && strings.HasPrefix(tc.in, `"`); valid != tc.ok {
				t.Errorf("Valid disagrees with Unquote on %q", tc.in)
			}
		})
	}
}

func TestIDKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`"a"`, "s:a"},
		{`"\u0061"`, "s:a"},
		{`"1"`, "s:1"},
		{`1`, "n:1"},
		{` 1 `, "n:1"},
		{`-5`, "n:-5"},
		{`-0`, "n:0"},
		{`0`, "n:0"},
		{`123456789012345678901234567890`, "n:123456789012345678901234567890"},
		{`""`, "s:"},
		{``, ""},
		{`null`, ""},
		{`1.5`, ""},
		{`1e3`, ""},
		{`01`, ""},
		{`-`, ""},
		{`true`, ""},
		{`{}`, ""},
		{`"\ud800"`, ""},
	} {
		t.Run(fmt.Sprintf("id key / %q", tc.in), func(t *testing.T) {
			if got := IDKey(json.RawMessage(tc.in)); got != tc.want {
				t.Errorf("IDKey(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	if IDKey(json.RawMessage(`"1"`)) == IDKey(json.RawMessage(`1`)) {
		t.Error("string and number ids collide")
	}
}

// TestHostileInputsAreLinear runs every entry point over ~1 MiB inputs
// built to trigger quadratic behaviour (long runs of escapes, huge objects,
// many escaped names); each must finish quickly.
func TestHostileInputsAreLinear(t *testing.T) {
	const n = 1 << 20
	var many strings.Builder
	many.WriteString(`{"a":0`)
	for i := 0; many.Len() < n; i++ {
		fmt.Fprintf(&many, `,"k\u0030%d":%d`, i, i)
	}
	many.WriteString(`}`)
	inputs := map[string]string{
		"escaped backslashes":  `{"s":"` + strings.Repeat(`\\`, n/2) + `","a":1}`,
		"escaped quotes":       `{"s":"` + strings.Repeat(`\"`, n/2) + `","a":1}`,
		"unicode escapes":      `{"s":"` + strings.Repeat(`\u00e9`, n/6) + `","a":1}`,
		"many escaped names":   many.String(),
		"long non-ASCII text":  `{"s":"` + strings.Repeat("é😀", n/6) + `","a":1}`,
		"many small objects":   `{"a":1,"s":[` + strings.Repeat(`{"x":1,"y":2},`, n/14) + `{}]}`,
		"many nested at limit": `{"a":1,"s":[` + strings.Repeat(nest(60, "")+",", n/122) + `0]}`,
	}
	for name, in := range inputs {
		t.Run("linear / "+name, func(t *testing.T) {
			raw := json.RawMessage(in)
			start := time.Now()
			if err := Valid(raw, Limits{}); err != nil {
				t.Fatal(err)
			}
			msg := `{"jsonrpc":"2.0","id":1,"method":"x","params":` + in + `}`
			if _, err := Decode([]byte(msg), Limits{}); err != nil {
				t.Fatal(err)
			}
			if _, ok := Member(raw, "a"); !ok {
				t.Error("Member lost a")
			}
			_ = SetMember(raw, "a", json.RawMessage("2"))
			_ = SetMember(raw, "zz", json.RawMessage("2"))
			_ = DeleteMember(raw, "a")
			if err := EachMember(raw, func(string, json.RawMessage) bool { return true }); err != nil {
				t.Error(err)
			}
			s, _ := Member(raw, "s")
			_, _ = Unquote(s)
			_ = EachElement(s, func(int, json.RawMessage) bool { return true })
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

func TestFoldedKeys(t *testing.T) {
	tests := []struct {
		name, in string
		a, b     string
		found    bool
	}{
		{name: "no object", in: `[1,"a",null]`},
		{name: "distinct names", in: `{"name":"x","arguments":{"a":1,"b":[{"c":2}]}}`},
		{name: "a top-level pair", in: `{"arguments":{},"Arguments":{}}`, a: "arguments", b: "Arguments", found: true},
		{name: "a pair deep in an array", in: `{"arguments":{"ids":[{"id":1,"ID":2}]}}`, a: "id", b: "ID", found: true},
		{name: "an escaped name", in: `{"name":1,"N\u0061me":2}`, a: "name", b: "Name", found: true},
		{name: "the Kelvin sign", in: `{"kind":1,"\u212aind":2}`, a: "kind", b: "\u212aind", found: true},
		{name: "names that only look alike", in: `{"ab":1,"a_b":2,"a-b":3}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b, found := FoldedKeys(json.RawMessage(tt.in))
			if a != tt.a || b != tt.b || found != tt.found {
				t.Errorf("FoldedKeys(%s) = %q, %q, %v; want %q, %q, %v", tt.in, a, b, found, tt.a, tt.b, tt.found)
			}
		})
	}
}
