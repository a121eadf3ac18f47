package jsonrpc

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecode checks that Decode never panics, never accepts what
// encoding/json calls invalid, agrees with Valid about syntax, and that
// whatever it accepts survives Encode and a second Decode unchanged.
func FuzzDecode(f *testing.F) {
	for _, tc := range decodeCases {
		if len(tc.in) <= 1<<12 {
			f.Add([]byte(tc.in))
		}
	}
	f.Add([]byte(toolsCallRequest))
	f.Fuzz(func(t *testing.T, in []byte) {
		orig := bytes.Clone(in)
		m, err := Decode(in, Limits{})
		if !bytes.Equal(in, orig) {
			t.Fatal("Decode modified its input")
		}
		verr := Valid(in, Limits{})
		vde, _ := verr.(*DecodeError)
		if verr != nil && vde == nil {
			t.Fatalf("Valid returned %T", verr)
		}
		_, _, berr := DecodeBatch(in, Limits{})
		if err != nil {
			de, isDE := err.(*DecodeError)
			if !isDE {
				t.Fatalf("Decode returned %T", err)
			}
			if m != nil {
				t.Fatal("Decode returned a message and an error")
			}
			if de.Code != CodeParseError && de.Code != CodeInvalidRequest || de.Message == "" {
				t.Fatalf("bad DecodeError %+v", de)
			}
			if de.Code == CodeParseError {
				if de.ID != nil {
					t.Fatalf("parse error carries id %s", de.ID)
				}
				if vde == nil || vde.Code != CodeParseError || vde.Message != de.Message {
					t.Fatalf("Decode says %q, Valid says %v", de.Message, verr)
				}
				if bde, _ := berr.(*DecodeError); bde == nil || bde.Code != CodeParseError {
					t.Fatalf("Decode says %q, DecodeBatch says %v", de.Message, berr)
				}
			} else if vde != nil && vde.Code == CodeParseError {
				t.Fatalf("Decode says %q (invalid request), Valid says %q (parse error)", de.Message, vde.Message)
			}
			if de.Code == CodeInvalidRequest && !json.Valid(in) && !strings.Contains(de.Message, "nesting deeper") {
				t.Fatalf("Decode says %q (invalid request) for input encoding/json refuses", de.Message)
			}
			if de.ID != nil && IDKey(de.ID) == "" {
				t.Fatalf("recovered id %s is not a valid id", de.ID)
			}
			return
		}
		if m == nil {
			t.Fatal("Decode returned neither message nor error")
		}
		if verr != nil {
			t.Fatalf("Decode accepted, Valid says %v", verr)
		}
		if !json.Valid(in) {
			t.Fatal("Decode accepted input encoding/json refuses")
		}
		kinds := 0
		for _, k := range []bool{m.IsRequest(), m.IsNotification(), m.IsResponse()} {
			if k {
				kinds++
			}
		}
		if kinds != 1 {
			t.Fatalf("message %+v has %d kinds", m, kinds)
		}
		if m.ID != nil && IDKey(m.ID) == "" && !(m.Error != nil && string(m.ID) == "null") {
			t.Fatalf("accepted id %s has no key", m.ID)
		}
		enc := m.Encode()
		if !json.Valid(enc) {
			t.Fatalf("Encode produced invalid JSON %q", enc)
		}
		m2, err := Decode(enc, Limits{})
		if err != nil {
			t.Fatalf("Decode(Encode(msg)) = %v for %q", err, enc)
		}
		if !sameMessage(m, m2) {
			t.Fatalf("round trip changed the message: %+v -> %+v", m, m2)
		}
		batch := append(append([]byte{'['}, in...), ']')
		msgs, errs, err := DecodeBatch(batch, Limits{MaxDepth: DefaultMaxDepth + 1})
		if err != nil || len(msgs) != 1 || errs[0] != nil || !sameMessage(m, msgs[0]) {
			t.Fatalf("DecodeBatch([msg]) = %v, %v, %v", msgs, errs, err)
		}
	})
}

// FuzzSetMember checks SetMember, DeleteMember, Member and EachMember
// against each other on validated objects, and that none of them panics on
// anything.
func FuzzSetMember(f *testing.F) {
	f.Add([]byte(`{"a":1,"b":2}`), "a", []byte(`"x"`))
	f.Add([]byte(`{"a":1,"b":2}`), "c", []byte(`{"d":[1,2]}`))
	f.Add([]byte(` { "\u0061" : 1 , "b" : { "a" : 2 } } `), "a", []byte(` null `))
	f.Add([]byte(`{}`), "_meta", []byte(`{"progressToken":1}`))
	f.Add([]byte(`{ }`), "", []byte(`""`))
	f.Add([]byte(`{"\ud83d\ude00":"😀","s":"}\"{"}`), "😀", []byte(`[]`))
	f.Add([]byte(`{"a":"\\","b":"\""}`), "b", []byte(`1e5`))
	f.Add([]byte(`[1]`), "a", []byte(`1`))
	f.Add([]byte(`{"a":`), "a", []byte(`1`))
	f.Fuzz(func(t *testing.T, obj []byte, key string, val []byte) {
		orig := bytes.Clone(obj)
		_ = SetMember(obj, key, val)
		_ = DeleteMember(obj, key)
		_, _ = Member(obj, key)
		_ = EachMember(obj, func(string, json.RawMessage) bool { return true })
		_ = EachElement(obj, func(int, json.RawMessage) bool { return true })
		_ = IDKey(obj)
		_, _ = Unquote(obj)
		if !bytes.Equal(obj, orig) {
			t.Fatal("obj was modified")
		}
		i := skipWS(obj, 0)
		if i >= len(obj) || obj[i] != '{' || !json.Valid(obj) || Valid(val, Limits{MaxDepth: 1000}) != nil {
			return
		}
		// Besides the fuzzed key, replace (and delete) the object's own
		// members, which random keys rarely hit.
		keys := []string{key}
		_ = EachMember(obj, func(k string, _ json.RawMessage) bool {
			keys = append(keys, k)
			return len(keys) < 6
		})
		for _, k := range keys {
			checkSetMember(t, obj, k, val)
		}
	})
}

// checkSetMember checks SetMember, DeleteMember and Member against each
// other and against Valid on an object that encoding/json accepts.
func checkSetMember(t *testing.T, obj []byte, key string, val []byte) {
	lim := Limits{MaxDepth: 1000}
	set := SetMember(obj, key, val)
	del := DeleteMember(obj, key)
	// The object may hold duplicate names (which Valid refuses): SetMember
	// and DeleteMember must still leave the name exactly once / not at all.
	if !json.Valid(set) || !json.Valid(del) {
		t.Fatalf("SetMember/DeleteMember(%q, %q, %q) = %q / %q: not JSON", obj, key, val, set, del)
	}
	if _, ok := Member(del, key); ok {
		t.Fatalf("DeleteMember(%q, %q) = %q still has the member", obj, key, del)
	}
	count := 0
	err := EachMember(set, func(k string, _ json.RawMessage) bool {
		if k == key {
			count++
		}
		return true
	})
	if err == nil && utf8.ValidString(key) && count != 1 {
		t.Fatalf("SetMember(%q, %q, %q) = %q has the member %d times", obj, key, val, set, count)
	}
	if Valid(obj, lim) != nil || !utf8.ValidString(key) {
		return
	}

	// From here on obj is strictly valid.
	others := membersExcept(t, obj, key)
	old, found := Member(obj, key)
	if err := Valid(set, lim); err != nil {
		t.Fatalf("SetMember(%q, %q, %q) = %q: %v", obj, key, val, set, err)
	}
	if v, ok := Member(set, key); !ok || !bytes.Equal(v, trimWS(val)) {
		t.Fatalf("Member(SetMember(%q, %q, %q)) = %q, %v", obj, key, val, v, ok)
	}
	if got := membersExcept(t, set, key); got != others {
		t.Fatalf("SetMember changed other members: %q -> %q", others, got)
	}
	if found {
		// Replacing in place keeps every byte outside the value verbatim.
		var it objIter
		it.init(obj)
		for it.next() && !it.keyIs(key) {
		}
		at := it.vs
		if !bytes.Equal(obj[at:at+len(old)], old) {
			t.Fatalf("member %q not found at %d", key, at)
		}
		want := string(obj[:at]) + string(val) + string(obj[at+len(old):])
		if string(set) != want {
			t.Fatalf("SetMember(%q, %q, %q) = %q, want %q", obj, key, val, set, want)
		}
	} else if i := skipWS(obj, 0); !bytes.HasPrefix(set, obj[:i+1]) {
		t.Fatalf("SetMember rewrote the start of the object: %q -> %q", obj, set)
	}
	if err := Valid(del, lim); err != nil {
		t.Fatalf("DeleteMember(%q, %q) = %q: %v", obj, key, del, err)
	}
	if got := membersExcept(t, del, key); got != others {
		t.Fatalf("DeleteMember changed other members: %q -> %q", others, got)
	}
	if !found && !bytes.Equal(del, obj) {
		t.Fatalf("DeleteMember of an absent member changed %q to %q", obj, del)
	}
	if d2 := DeleteMember(set, key); membersExcept(t, d2, key) != others {
		t.Fatalf("DeleteMember(SetMember(...)) = %q", d2)
	}
}

// membersExcept lists the members of obj other than key, in order.
func membersExcept(t *testing.T, obj []byte, key string) string {
	var b strings.Builder
	err := EachMember(obj, func(k string, v json.RawMessage) bool {
		if k != key {
			b.Write(Quote(k))
			b.WriteByte(':')
			b.Write(v)
			b.WriteByte('\n')
		}
		return true
	})
	if err != nil {
		t.Fatalf("EachMember(%q): %v", obj, err)
	}
	return b.String()
}

func trimWS(b []byte) []byte {
	i, j := skipWS(b, 0), len(b)
	for j > i && isWS(b[j-1]) {
		j--
	}
	return b[i:j]
}

// FuzzValid is a differential fuzz test: whatever Valid accepts,
// encoding/json accepts too, and Valid refuses invalid UTF-8.
func FuzzValid(f *testing.F) {
	for _, s := range []string{`{"a":[1,2,{"b":null}]}`, `"\ud83d\ude00"`, `-0.5e+10`, `[]`, `{"a":1,"a":2}`, "\"\xff\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		err := Valid(in, Limits{})
		if err == nil && !json.Valid(in) {
			t.Fatalf("Valid accepts %q, encoding/json refuses it", in)
		}
		if err == nil && !utf8.Valid(in) {
			t.Fatalf("Valid accepts invalid UTF-8 %q", in)
		}
		if err != nil && json.Valid(in) && utf8.Valid(in) && !hasSurrogateEscape(in) {
			de := err.(*DecodeError)
			if de.Code != CodeInvalidRequest {
				t.Fatalf("Valid(%q) = %v, encoding/json accepts it", in, err)
			}
			if strings.Contains(de.Message, "duplicate") && !stdDuplicate(in) {
				t.Fatalf("Valid(%q) = %v, encoding/json sees no duplicate", in, err)
			}
		}
	})
}
