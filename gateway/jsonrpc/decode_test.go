package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// decodeCase is one input for Decode. code is 0 when the input must be
// accepted; otherwise the expected DecodeError.Code, with frag a fragment
// of the expected message. id, when set, is the expected DecodeError.ID
// ("<nil>" for none).
type decodeCase struct {
	name string
	in   string
	code int
	frag string
	id   string
}

const (
	ok  = 0
	bad = CodeParseError
	inv = CodeInvalidRequest
)

// nest returns v wrapped in n arrays.
func nest(n int, v string) string {
	return strings.Repeat("[", n) + v + strings.Repeat("]", n)
}

// nestObj returns v wrapped in n objects {"a":...}.
func nestObj(n int, v string) string {
	return strings.Repeat(`{"a":`, n) + v + strings.Repeat("}", n)
}

// manyMembers returns an object with n distinct members, then the extra
// text (e.g. a duplicate member) before the closing brace.
func manyMembers(n int, extra string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":%d`, i, i)
	}
	b.WriteString(extra)
	b.WriteByte('}')
	return b.String()
}

func call(params string) string {
	return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":` + params + `}`
}

var decodeCases = []decodeCase{
	// Accepted messages.
	{name: "accept / request with integer id", in: `{"jsonrpc":"2.0","id":1,"method":"ping"}`},
	{name: "accept / request with string id", in: `{"jsonrpc":"2.0","id":"abc-1","method":"ping"}`},
	{name: "accept / request with empty string id", in: `{"jsonrpc":"2.0","id":"","method":"ping"}`},
	{name: "accept / request with negative id", in: `{"jsonrpc":"2.0","id":-7,"method":"ping"}`},
	{name: "accept / request with id beyond 64 bits", in: `{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}`},
	{name: "accept / request with params", in: call(`{"name":"search","arguments":{"q":"x"}}`)},
	{name: "accept / request with empty params", in: call(`{}`)},
	{name: "accept / notification", in: `{"jsonrpc":"2.0","method":"notifications/initialized"}`},
	{name: "accept / notification with params", in: `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}`},
	{name: "accept / response with object result", in: `{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`},
	{name: "accept / response with string result", in: `{"jsonrpc":"2.0","id":1,"result":"ok"}`},
	{name: "accept / response with null result", in: `{"jsonrpc":"2.0","id":1,"result":null}`},
	{name: "accept / response with array result", in: `{"jsonrpc":"2.0","id":"x","result":[1,"two",{"three":3}]}`},
	{name: "accept / error response", in: `{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"method not found"}}`},
	{name: "accept / error response with null id", in: `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`},
	{name: "accept / error response with data", in: `{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m","data":{"detail":[1,2]}}}`},
	{name: "accept / error response with null data", in: `{"jsonrpc":"2.0","id":1,"error":{"data":null,"message":"m","code":0}}`},
	{name: "accept / members in any order", in: `{"params":{},"method":"ping","id":1,"jsonrpc":"2.0"}`},
	{name: "accept / whitespace of every allowed kind", in: " \t\r\n{ \"jsonrpc\" :\t\"2.0\" ,\r\n\"id\" : 1 , \"method\":\"ping\" , \"params\" : { \"a\" : [ 1 , 2 ] } }\n\t "},
	{name: "accept / escaped method name", in: `{"jsonrpc":"2.0","id":1,"method":"tools\/call"}`},
	{name: "accept / escaped member names", in: `{"\u006asonrpc":"2.0","\u0069d":1,"m\u0065thod":"ping"}`},
	{name: "accept / jsonrpc version written with an escape", in: `{"jsonrpc":"2\u002e0","id":1,"method":"ping"}`},
	{name: "accept / unicode in params", in: call(`{"s":"h\u00e9llo \ud83d\ude00 é 😀 \ufffd �","\u00e9":1}`)},
	{name: "accept / escaped control characters", in: call(`{"s":"\u0000\b\f\n\r\t\"\\\/"}`)},
	{name: "accept / numbers of every form", in: call(`{"n":[0,-0,1,-1,10,1.5,-0.25,1e10,1E+5,1e-5,-1.0e+3,123456789012345678901234567890]}`)},
	{name: "accept / literals", in: call(`{"t":true,"f":false,"n":null}`)},
	{name: "accept / same name in sibling objects", in: call(`{"a":{"x":1},"b":{"x":2},"c":[{"x":1},{"x":2}]}`)},
	{name: "accept / same name at different depths", in: call(`{"x":{"x":{"x":1}}}`)},
	{name: "accept / object with many members", in: call(manyMembers(200, ""))},
	{name: "accept / nesting exactly at the limit", in: call(nestObj(63, "1"))},
	{name: "accept / unknown members inside params", in: call(`{"$schema":"x","_meta":{"progressToken":1},"Method":"not top level"}`)},

	// Malformed JSON.
	{name: "reject / empty input", in: ``, code: bad, frag: "unexpected end of input"},
	{name: "reject / whitespace only", in: " \n\t", code: bad, frag: "unexpected end of input"},
	{name: "reject / truncated object", in: `{"jsonrpc":"2.0","id":1`, code: bad, frag: "unexpected end of input"},
	{name: "reject / truncated member name", in: `{"jsonrpc":"2.0","id":1,"meth`, code: bad, frag: "unexpected end of input"},
	{name: "reject / trailing garbage after the object", in: `{"jsonrpc":"2.0","id":1,"method":"ping"}x`, code: bad, frag: "trailing data"},
	{name: "reject / second object after the first", in: `{"jsonrpc":"2.0","id":1,"method":"ping"} {"jsonrpc":"2.0","id":2,"method":"ping"}`, code: bad, frag: "trailing data"},
	{name: "reject / trailing NUL byte", in: "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\x00", code: bad, frag: "trailing data"},
	{name: "reject / trailing comma in message", in: `{"jsonrpc":"2.0","id":1,"method":"ping",}`, code: bad, frag: "expected member name"},
	{name: "reject / trailing comma in nested object", in: call(`{"a":1,}`), code: bad, frag: "expected member name"},
	{name: "reject / trailing comma in array", in: call(`{"a":[1,2,]}`), code: bad, frag: "unexpected character ']'"},
	{name: "reject / missing comma", in: `{"jsonrpc":"2.0" "id":1,"method":"ping"}`, code: bad, frag: "expected ',' or '}'"},
	{name: "reject / missing colon", in: `{"jsonrpc" "2.0"}`, code: bad, frag: "expected ':'"},
	{name: "reject / block comment", in: `{"jsonrpc":"2.0",/* c */"id":1,"method":"ping"}`, code: bad, frag: "expected member name"},
	{name: "reject / line comment", in: "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"} // c", code: bad, frag: "trailing data"},
	{name: "reject / single-quoted string", in: `{"jsonrpc":'2.0',"id":1,"method":"ping"}`, code: bad, frag: "unexpected character '''"},
	{name: "reject / unquoted member name", in: `{jsonrpc:"2.0","id":1,"method":"ping"}`, code: bad, frag: "expected member name"},
	{name: "reject / NaN", in: call(`{"n":NaN}`), code: bad, frag: "unexpected character 'N'"},
	{name: "reject / Infinity", in: call(`{"n":Infinity}`), code: bad, frag: "unexpected character 'I'"},
	{name: "reject / negative Infinity", in: call(`{"n":-Infinity}`), code: bad, frag: "invalid number"},
	{name: "reject / number with leading zero", in: call(`{"n":01}`), code: bad, frag: "leading zero"},
	{name: "reject / negative number with leading zero", in: call(`{"n":-01}`), code: bad, frag: "leading zero"},
	{name: "reject / number with trailing decimal point", in: call(`{"n":1.}`), code: bad, frag: "after decimal point"},
	{name: "reject / number with leading decimal point", in: call(`{"n":.5}`), code: bad, frag: "unexpected character '.'"},
	{name: "reject / lone minus sign", in: call(`{"n":-}`), code: bad, frag: "expected digit"},
	{name: "reject / exponent without digits", in: call(`{"n":1e}`), code: bad, frag: "in exponent"},
	{name: "reject / exponent with sign but no digits", in: call(`{"n":1e+}`), code: bad, frag: "in exponent"},
	{name: "reject / number with leading plus", in: call(`{"n":+1}`), code: bad, frag: "unexpected character '+'"},
	{name: "reject / hex number", in: call(`{"n":0x10}`), code: bad, frag: "found character 'x'"},
	{name: "reject / id with leading zero", in: `{"jsonrpc":"2.0","id":01,"method":"ping"}`, code: bad, frag: "leading zero"},
	{name: "reject / capitalised literal", in: call(`{"b":True}`), code: bad, frag: "unexpected character 'T'"},
	{name: "reject / truncated literal", in: call(`{"b":nul}`), code: bad, frag: "invalid literal"},
	{name: "reject / literal with trailing letters", in: call(`{"b":nullx}`), code: bad, frag: "found character 'x'"},
	{name: "reject / raw newline in a string", in: "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\nb\"}", code: bad, frag: "control character in string"},
	{name: "reject / raw tab in a string", in: call("{\"s\":\"a\tb\"}"), code: bad, frag: "control character in string"},
	{name: "reject / raw NUL in a member name", in: call("{\"a\x00\":1}"), code: bad, frag: "control character in string"},
	{name: "reject / unterminated string", in: `{"jsonrpc":"2.0","id":"abc`, code: bad, frag: "unexpected end of input"},
	{name: "reject / string ending in a backslash", in: `{"jsonrpc":"2.0","id":"abc\`, code: bad, frag: "unexpected end of input"},
	{name: "reject / invalid UTF-8 byte", in: call("{\"s\":\"\xff\"}"), code: bad, frag: "invalid UTF-8 in string"},
	{name: "reject / invalid UTF-8 in the method", in: "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"to\xc3ols\"}", code: bad, frag: "invalid UTF-8 in string"},
	{name: "reject / invalid UTF-8 in a member name", in: call("{\"\xfe\":1}"), code: bad, frag: "invalid UTF-8 in string"},
	{name: "reject / truncated UTF-8 sequence", in: call("{\"s\":\"\xe2\x82\"}"), code: bad, frag: "invalid UTF-8 in string"},
	{name: "reject / overlong two-byte encoding", in: call("{\"s\":\"\xc0\xaf\"}"), code: bad, frag: "invalid UTF-8 in string"},
	{name: "reject / overlong three-byte encoding", in: call("{\"s\":\"\xe0\x80\xaf\"}"), code: bad, frag: "invalid UTF-8 in string"},
	{name: "reject / surrogate encoded in UTF-8", in: call("{\"s\":\"\xed\xa0\x80\"}"), code: bad, frag: "invalid UTF-8 in string"},
	{name: "reject / code point above U+10FFFF", in: call("{\"s\":\"\xf4\x90\x80\x80\"}"), code: bad, frag: "invalid UTF-8 in string"},
	{name: "reject / invalid UTF-8 outside strings", in: call("{\"s\":\xc3\xa9}"), code: bad, frag: "unexpected byte 0xc3"},
	{name: "reject / byte order mark", in: "\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", code: bad, frag: "unexpected byte 0xef"},
	{name: "reject / lone high surrogate escape", in: call(`{"s":"\ud800"}`), code: bad, frag: "unpaired surrogate"},
	{name: "reject / lone high surrogate escape at the end of a name", in: call(`{"a\uD83D":1}`), code: bad, frag: "unpaired surrogate"},
	{name: "reject / high surrogate followed by a non-surrogate escape", in: call(`{"s":"\ud800\u0041"}`), code: bad, frag: "unpaired surrogate"},
	{name: "reject / high surrogate followed by a plain character", in: call(`{"s":"\ud800x"}`), code: bad, frag: "unpaired surrogate"},
	{name: "reject / two high surrogates", in: call(`{"s":"\ud800\ud800"}`), code: bad, frag: "unpaired surrogate"},
	{name: "reject / lone low surrogate escape", in: call(`{"s":"\udc00"}`), code: bad, frag: "unpaired surrogate"},
	{name: "reject / reversed surrogate pair", in: call(`{"s":"\ude00\ud83d"}`), code: bad, frag: "unpaired surrogate"},
	{name: "reject / short unicode escape", in: call(`{"s":"\u12"}`), code: bad, frag: "invalid escape"},
	{name: "reject / non-hex unicode escape", in: call(`{"s":"\u12g4"}`), code: bad, frag: "invalid escape"},
	{name: "reject / unknown escape", in: call(`{"s":"\x41"}`), code: bad, frag: "invalid escape"},
	{name: "reject / escaped single quote", in: call(`{"s":"\'"}`), code: bad, frag: "invalid escape"},
	{name: "reject / vertical tab as whitespace", in: "{\v\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", code: bad, frag: "byte 0x0b"},
	{name: "reject / form feed as whitespace", in: "\f{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", code: bad, frag: "byte 0x0c"},
	{name: "reject / non-breaking space as whitespace", in: "{\xc2\xa0\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", code: bad, frag: "byte 0xc2"},
	{name: "reject / parse error wins over an earlier invalid member", in: `{"Method":1,"jsonrpc":"2.0",}`, code: bad, frag: "expected member name", id: "<nil>"},
	{name: "reject / parse error wins over a duplicate key", in: call(`{"a":1,"a":2,"b":01}`), code: bad, frag: "leading zero", id: "<nil>"},

	// Well-formed JSON that is not an acceptable message.
	{name: "reject / top-level array passed to Decode", in: `[{"jsonrpc":"2.0","id":1,"method":"ping","x":{"a":1,"a":2}}]`, code: inv, frag: "must be a JSON object"},
	{name: "reject / top-level string", in: `"hello"`, code: inv, frag: "must be a JSON object"},
	{name: "reject / top-level null", in: `null`, code: inv, frag: "must be a JSON object"},
	{name: "reject / empty object", in: `{}`, code: inv, frag: `missing member "jsonrpc"`},
	{name: "reject / 10,000-deep array nesting", in: nest(10000, "1"), code: inv, frag: "nesting deeper than 64"},
	{name: "reject / 10,000-deep unclosed array nesting", in: strings.Repeat("[", 10000), code: inv, frag: "nesting deeper than 64"},
	{name: "reject / 10,000-deep object nesting in params", in: call(nestObj(10000, "1")), code: inv, frag: "nesting deeper than 64"},
	{name: "reject / 10,000-deep nesting in an error's data", in: `{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m","data":` + nest(10000, "") + `}}`, code: inv, frag: "nesting deeper than 64"},
	{name: "reject / nesting one past the limit", in: call(nestObj(64, "1")), code: inv, frag: "nesting deeper than 64"},
	{name: "reject / message larger than the limit", in: call(`{"s":"` + strings.Repeat("x", DefaultMaxBytes) + `"}`), code: inv, frag: "message larger than 4194304 bytes"},
	{name: "reject / duplicate method member", in: `{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}`, code: inv, frag: `duplicate member "method"`, id: "1"},
	{name: "reject / duplicate id member", in: `{"jsonrpc":"2.0","id":1,"id":2,"method":"a"}`, code: inv, frag: `duplicate member "id"`, id: "<nil>"},
	{name: "reject / duplicate jsonrpc member", in: `{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"a"}`, code: inv, frag: `duplicate member "jsonrpc"`},
	{name: "reject / case-variant method member", in: `{"jsonrpc":"2.0","method":"a","Method":"b"}`, code: inv, frag: `unknown member "Method"`, id: "<nil>"},
	{name: "reject / case-variant id member", in: `{"jsonrpc":"2.0","id":1,"ID":2,"method":"a"}`, code: inv, frag: `unknown member "ID"`, id: "1"},
	{name: "reject / case-variant jsonrpc member", in: `{"JSONRPC":"2.0","id":1,"method":"a"}`, code: inv, frag: `unknown member "JSONRPC"`},
	{name: "reject / unknown extra member", in: `{"jsonrpc":"2.0","id":"q","method":"a","extra":true}`, code: inv, frag: `unknown member "extra"`, id: `"q"`},
	{name: "reject / escaped duplicate top-level member", in: `{"jsonrpc":"2.0","id":1,"method":"a","\u006dethod":"b"}`, code: inv, frag: `duplicate member "method"`},
	{name: "reject / duplicate key in params", in: call(`{"name":"a","name":"b"}`), code: inv, frag: `duplicate member "name"`, id: "1"},
	{name: "reject / duplicate key in nested object", in: call(`{"arguments":{"path":"/tmp","path":"/etc/passwd"}}`), code: inv, frag: `duplicate member "path"`, id: "1"},
	{name: "reject / duplicate key in deeply nested object", in: call(`{"a":[{"b":{"c":[{"d":1,"e":2,"d":3}]}}]}`), code: inv, frag: `duplicate member "d"`},
	{name: "reject / escaped duplicate key", in: call(`{"a":1,"\u0061":2}`), code: inv, frag: `duplicate member "a"`},
	{name: "reject / duplicate key escaped both ways", in: call(`{"\/":1,"\u002f":2}`), code: inv, frag: `duplicate member "/"`},
	{name: "reject / duplicate key written with a surrogate pair", in: call(`{"😀":1,"\ud83d\ude00":2}`), code: inv, frag: `duplicate member "😀"`},
	{name: "reject / duplicate key in a large object", in: call(manyMembers(100, `,"k57":0`)), code: inv, frag: `duplicate member "k57"`},
	{name: "reject / duplicate key just past the small-object threshold", in: call(manyMembers(smallObject, `,"k0":0`)), code: inv, frag: `duplicate member "k0"`},
	{name: "reject / duplicate key in result", in: `{"jsonrpc":"2.0","id":7,"result":{"content":[],"content":[1]}}`, code: inv, frag: `duplicate member "content"`, id: "7"},
	{name: "reject / duplicate member in error object", in: `{"jsonrpc":"2.0","id":1,"error":{"code":1,"code":2,"message":"m"}}`, code: inv, frag: `duplicate member "code"`},
	{name: "reject / duplicate key in error data", in: `{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m","data":{"x":1,"x":2}}}`, code: inv, frag: `duplicate member "x"`},
	{name: "reject / wrong jsonrpc version", in: `{"jsonrpc":"1.0","id":1,"method":"ping"}`, code: inv, frag: `"jsonrpc" must be "2.0"`, id: "1"},
	{name: "reject / jsonrpc version as a number", in: `{"jsonrpc":2.0,"id":1,"method":"ping"}`, code: inv, frag: `"jsonrpc" must be "2.0"`},
	{name: "reject / jsonrpc version with whitespace", in: `{"jsonrpc":" 2.0","id":1,"method":"ping"}`, code: inv, frag: `"jsonrpc" must be "2.0"`},
	{name: "reject / jsonrpc member missing", in: `{"id":1,"method":"ping"}`, code: inv, frag: `missing member "jsonrpc"`, id: "1"},
	{name: "reject / id as a float", in: `{"jsonrpc":"2.0","id":1.5,"method":"ping"}`, code: inv, frag: `"id" must be a string or an integer`, id: "<nil>"},
	{name: "reject / id as an integral float", in: `{"jsonrpc":"2.0","id":1.0,"method":"ping"}`, code: inv, frag: `"id" must be a string or an integer`},
	{name: "reject / id with an exponent", in: `{"jsonrpc":"2.0","id":1e3,"method":"ping"}`, code: inv, frag: `"id" must be a string or an integer`},
	{name: "reject / id as a bool", in: `{"jsonrpc":"2.0","id":true,"method":"ping"}`, code: inv, frag: `"id" must be a string or an integer`},
	{name: "reject / id as an object", in: `{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}`, code: inv, frag: `"id" must be a string or an integer`},
	{name: "reject / id as an array", in: `{"jsonrpc":"2.0","id":[1],"method":"ping"}`, code: inv, frag: `"id" must be a string or an integer`},
	{name: "reject / null id on a request", in: `{"jsonrpc":"2.0","id":null,"method":"ping"}`, code: inv, frag: `request "id" must not be null`, id: "<nil>"},
	{name: "reject / null id on a result response", in: `{"jsonrpc":"2.0","id":null,"result":{}}`, code: inv, frag: `"id" must not be null`},
	{name: "reject / method as a number", in: `{"jsonrpc":"2.0","id":1,"method":1}`, code: inv, frag: `"method" must be a string`, id: "1"},
	{name: "reject / method as null", in: `{"jsonrpc":"2.0","id":1,"method":null}`, code: inv, frag: `"method" must be a string`},
	{name: "reject / empty method", in: `{"jsonrpc":"2.0","id":1,"method":""}`, code: inv, frag: `"method" must not be empty`},
	{name: "reject / params as an array", in: `{"jsonrpc":"2.0","id":1,"method":"a","params":[1,2]}`, code: inv, frag: `"params" must be an object`, id: "1"},
	{name: "reject / params as null", in: `{"jsonrpc":"2.0","id":1,"method":"a","params":null}`, code: inv, frag: `"params" must be an object`},
	{name: "reject / params as a string", in: `{"jsonrpc":"2.0","id":1,"method":"a","params":"{}"}`, code: inv, frag: `"params" must be an object`},
	{name: "reject / request with a result", in: `{"jsonrpc":"2.0","id":1,"method":"a","result":{}}`, code: inv, frag: `request must not have "result" or "error"`},
	{name: "reject / notification with an error", in: `{"jsonrpc":"2.0","method":"a","error":{"code":1,"message":"m"}}`, code: inv, frag: `request must not have "result" or "error"`},
	{name: "reject / response with both result and error", in: `{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"m"}}`, code: inv, frag: `both "result" and "error"`, id: "1"},
	{name: "reject / response with params", in: `{"jsonrpc":"2.0","id":1,"result":1,"params":{}}`, code: inv, frag: `response must not have "params"`},
	{name: "reject / response without id", in: `{"jsonrpc":"2.0","result":1}`, code: inv, frag: `response missing member "id"`},
	{name: "reject / neither method nor result nor error", in: `{"jsonrpc":"2.0","id":1}`, code: inv, frag: `missing member "method", "result" or "error"`, id: "1"},
	{name: "reject / params without method", in: `{"jsonrpc":"2.0","id":1,"params":{}}`, code: inv, frag: `missing member "method", "result" or "error"`},
	{name: "reject / error as a string", in: `{"jsonrpc":"2.0","id":1,"error":"boom"}`, code: inv, frag: `"error" must be an object`},
	{name: "reject / error code as a float", in: `{"jsonrpc":"2.0","id":1,"error":{"code":1.5,"message":"m"}}`, code: inv, frag: `"code" must be an integer`},
	{name: "reject / error code as a string", in: `{"jsonrpc":"2.0","id":1,"error":{"code":"1","message":"m"}}`, code: inv, frag: `"code" must be an integer`},
	{name: "reject / error code out of range", in: `{"jsonrpc":"2.0","id":1,"error":{"code":99999999999999999999,"message":"m"}}`, code: inv, frag: `"code" must be an integer`},
	{name: "reject / error message as a number", in: `{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":2}}`, code: inv, frag: `"message" must be a string`},
	{name: "reject / error without code", in: `{"jsonrpc":"2.0","id":1,"error":{"message":"m"}}`, code: inv, frag: `missing member "code"`},
	{name: "reject / error without message", in: `{"jsonrpc":"2.0","id":1,"error":{"code":1}}`, code: inv, frag: `missing member "message"`},
	{name: "reject / error with an extra member", in: `{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m","stack":"x"}}`, code: inv, frag: `unknown member "stack" in error object`},
	{name: "reject / error with a case-variant member", in: `{"jsonrpc":"2.0","id":1,"error":{"Code":1,"code":1,"message":"m"}}`, code: inv, frag: `unknown member "Code"`},
}

func TestDecode(t *testing.T) {
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			m, err := Decode([]byte(tc.in), Limits{})
			if d := time.Since(start); d > time.Second {
				t.Errorf("Decode took %v", d)
			}
			if tc.code == ok {
				if err != nil {
					t.Fatalf("Decode(%.200q) = %v, want success", tc.in, err)
				}
				if m == nil {
					t.Fatal("Decode returned a nil message and no error")
				}
				if !m.IsRequest() && !m.IsNotification() && !m.IsResponse() {
					t.Errorf("message %+v is neither request, notification nor response", m)
				}
				if v := Valid([]byte(tc.in), Limits{}); v != nil {
					t.Errorf("Valid = %v after Decode accepted the input", v)
				}
				if !json.Valid([]byte(tc.in)) {
					t.Errorf("encoding/json refuses input Decode accepted")
				}
				return
			}
			if m != nil {
				t.Errorf("Decode returned a message with an error: %+v", m)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("Decode(%.200q) error = %v (%T), want *DecodeError", tc.in, err, err)
			}
			if de.Code != tc.code || !strings.Contains(de.Message, tc.frag) {
				t.Errorf("Decode(%.200q) = {%d %q}, want {%d ...%q...}", tc.in, de.Code, de.Message, tc.code, tc.frag)
			}
			switch tc.id {
			case "":
			case "<nil>":
				if de.ID != nil {
					t.Errorf("DecodeError.ID = %s, want nil", de.ID)
				}
			default:
				if string(de.ID) != tc.id {
					t.Errorf("DecodeError.ID = %s, want %s", de.ID, tc.id)
				}
			}
			if de.Code == CodeParseError && de.ID != nil {
				t.Errorf("parse error carries id %s", de.ID)
			}
		})
	}
}

func TestDecodeFields(t *testing.T) {
	t.Run("request fields are sub-slices and unescaped where textual", func(t *testing.T) {
		in := []byte(`{"jsonrpc":"2.0","id":"r\u00e9q","method":"tools\/call","params":{ "a" : 1 }}`)
		m, err := Decode(in, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if string(m.ID) != `"r\u00e9q"` || m.Method != "tools/call" || string(m.Params) != `{ "a" : 1 }` || m.Result != nil || m.Error != nil {
			t.Errorf("got %+v", m)
		}
		if !m.IsRequest() || m.IsNotification() || m.IsResponse() {
			t.Error("kind predicates wrong for a request")
		}
		if cap(m.Params) != len(m.Params) {
			t.Error("Params capacity is not clipped: appending would overwrite the input")
		}
	})
	t.Run("notification has no id", func(t *testing.T) {
		m, err := Decode([]byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if m.ID != nil || m.Params != nil || !m.IsNotification() || m.IsRequest() || m.IsResponse() {
			t.Errorf("got %+v", m)
		}
	})
	t.Run("error response fields", func(t *testing.T) {
		m, err := Decode([]byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"caf\u00e9 \"x\"","data":[1, 2]}}`), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if string(m.ID) != "null" || m.Error == nil || m.Error.Code != -32001 || m.Error.Message != `café "x"` || string(m.Error.Data) != "[1, 2]" {
			t.Errorf("got %+v %+v", m, m.Error)
		}
		if !m.IsResponse() {
			t.Error("error response is not a response")
		}
	})
	t.Run("result response keeps result bytes", func(t *testing.T) {
		m, err := Decode([]byte(`{"jsonrpc":"2.0","id":3,"result":  "x" }`), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Result) != `"x"` || !m.IsResponse() {
			t.Errorf("got %+v", m)
		}
	})
}

func TestDecodeLimits(t *testing.T) {
	msg := call(nestObj(4, "1")) // depth 5
	t.Run("accept / depth within a custom limit", func(t *testing.T) {
		if _, err := Decode([]byte(msg), Limits{MaxDepth: 5}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("reject / depth beyond a custom limit", func(t *testing.T) {
		_, err := Decode([]byte(msg), Limits{MaxDepth: 4})
		if err == nil || !strings.Contains(err.Error(), "nesting deeper than 4") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("reject / size beyond a custom limit before scanning", func(t *testing.T) {
		// Malformed, but too large is reported first.
		_, err := Decode([]byte(`{"jsonrpc":`+strings.Repeat(" ", 100)), Limits{MaxBytes: 100})
		var de *DecodeError
		if !errors.As(err, &de) || de.Code != CodeInvalidRequest || de.Message != "message larger than 100 bytes" {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("accept / size exactly at a custom limit", func(t *testing.T) {
		in := `{"jsonrpc":"2.0","method":"x"}`
		if _, err := Decode([]byte(in), Limits{MaxBytes: len(in)}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("reject / 10,000-deep nesting fails fast", func(t *testing.T) {
		in := []byte(strings.Repeat(`{"a":[`, 5000))
		start := time.Now()
		for range 100 {
			if _, err := Decode(in, Limits{}); err == nil {
				t.Fatal("accepted")
			}
		}
		if d := time.Since(start) / 100; d > time.Millisecond {
			t.Errorf("deep input took %v per Decode", d)
		}
	})
}

func TestDecodeError(t *testing.T) {
	_, err := Decode([]byte(`{"jsonrpc":"2.0","id":5,"method":"a","x":1}`), Limits{})
	de := err.(*DecodeError)
	if got := de.Error(); got != `jsonrpc: invalid request: unknown member "x"` {
		t.Errorf("Error() = %q", got)
	}
	re := de.RPCError()
	if re.Code != CodeInvalidRequest || re.Message != `unknown member "x"` || re.Data != nil {
		t.Errorf("RPCError() = %+v", re)
	}
	resp := NewError(de.ID, re.Code, re.Message, nil).Encode()
	if want := `{"jsonrpc":"2.0","id":5,"error":{"code":-32600,"message":"unknown member \"x\""}}`; string(resp) != want {
		t.Errorf("error response = %s, want %s", resp, want)
	}
	_, err = Decode([]byte(`{`), Limits{})
	if got := err.Error(); got != "jsonrpc: parse error: unexpected end of input" {
		t.Errorf("Error() = %q", got)
	}
	e := &Error{Code: -32601, Message: "method not found"}
	if e.Error() != "jsonrpc error -32601: method not found" {
		t.Errorf("Error.Error() = %q", e.Error())
	}
	// A DecodeError's message must be safe to echo: long, hostile names are
	// cut short and quoted.
	_, err = Decode([]byte(`{"jsonrpc":"2.0","id":1,"method":"a","`+strings.Repeat("\\n", 500)+`":1}`), Limits{})
	if msg := err.(*DecodeError).Message; len(msg) > 200 || strings.Contains(msg, "\n") {
		t.Errorf("message not bounded: %q", msg)
	}
}

func TestIsBatch(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"[]", true},
		{" \r\n\t[1]", true},
		{"{}", false},
		{"", false},
		{"   ", false},
		{"\v[", false},
		{`"["`, false},
	} {
		t.Run(fmt.Sprintf("%q", tc.in), func(t *testing.T) {
			if got := IsBatch([]byte(tc.in)); got != tc.want {
				t.Errorf("IsBatch(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestDecodeBatch(t *testing.T) {
	t.Run("accept / mixed valid and invalid elements", func(t *testing.T) {
		in := `[
			{"jsonrpc":"2.0","id":1,"method":"tools/list"},
			{"jsonrpc":"2.0","id":2,"method":"x","Method":"y"},
			{"jsonrpc":"2.0","method":"notifications/initialized"},
			1,
			{"jsonrpc":"2.0","id":"z","method":"x","params":{"a":1,"a":2}},
			[]
		]`
		msgs, errs, err := DecodeBatch([]byte(in), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 6 || len(errs) != 6 {
			t.Fatalf("len = %d, %d", len(msgs), len(errs))
		}
		wantOK := []bool{true, false, true, false, false, false}
		for i, w := range wantOK {
			if (msgs[i] != nil) != w || (errs[i] == nil) != w {
				t.Errorf("element %d: msg %v err %v", i, msgs[i], errs[i])
			}
			if errs[i] != nil && errs[i].Code != CodeInvalidRequest {
				t.Errorf("element %d: code %d", i, errs[i].Code)
			}
		}
		if msgs[0].Method != "tools/list" || string(msgs[0].ID) != "1" || !msgs[2].IsNotification() {
			t.Errorf("decoded elements wrong: %+v %+v", msgs[0], msgs[2])
		}
		if string(errs[1].ID) != "2" || !strings.Contains(errs[1].Message, `unknown member "Method"`) {
			t.Errorf("errs[1] = %+v", errs[1])
		}
		if string(errs[4].ID) != `"z"` || !strings.Contains(errs[4].Message, `duplicate member "a"`) {
			t.Errorf("errs[4] = %+v", errs[4])
		}
		if errs[3].ID != nil || !strings.Contains(errs[3].Message, "must be a JSON object") {
			t.Errorf("errs[3] = %+v", errs[3])
		}
	})
	t.Run("accept / JSON-RPC spec example of three invalid elements", func(t *testing.T) {
		msgs, errs, err := DecodeBatch([]byte(`[1,2,3]`), Limits{})
		if err != nil || len(errs) != 3 || msgs[0] != nil || errs[2] == nil {
			t.Fatalf("msgs %v errs %v err %v", msgs, errs, err)
		}
	})
	frame := []struct {
		name, in string
		lim      Limits
		code     int
		frag     string
	}{
		{"reject / empty batch", ` [ ] `, Limits{}, inv, "empty batch"},
		{"reject / more elements than the limit", "[" + strings.Repeat(`{"jsonrpc":"2.0","method":"a"},`, 100) + `{"jsonrpc":"2.0","method":"a"}]`, Limits{}, inv, "batch larger than 100 elements"},
		{"reject / more elements than a custom limit", `[1,2,3]`, Limits{MaxBatch: 2}, inv, "batch larger than 2 elements"},
		{"reject / parse error after too many elements", `[1,2,3,01]`, Limits{MaxBatch: 2}, bad, "leading zero"},
		{"reject / malformed element", `[{"jsonrpc":"2.0","method":"a"},{"jsonrpc":]`, Limits{}, bad, "unexpected character ']'"},
		{"reject / trailing comma in batch", `[{"jsonrpc":"2.0","method":"a"},]`, Limits{}, bad, "unexpected character ']'"},
		{"reject / missing comma in batch", `[{"jsonrpc":"2.0","method":"a"} 1]`, Limits{}, bad, "expected ',' or ']'"},
		{"reject / unterminated batch", `[{"jsonrpc":"2.0","method":"a"}`, Limits{}, bad, "unexpected end of input"},
		{"reject / unterminated batch after comma", `[1,`, Limits{}, bad, "unexpected end of input"},
		{"reject / trailing garbage after batch", `[1] x`, Limits{}, bad, "trailing data"},
		{"reject / trailing garbage after empty batch", `[] x`, Limits{}, bad, "trailing data"},
		{"reject / 10,000-deep nesting in batch", nest(10000, ""), Limits{}, inv, "nesting deeper than 64"},
		{"reject / deep message in batch", `[` + call(nestObj(63, "1")) + `]`, Limits{}, inv, "nesting deeper than 64"},
		{"reject / batch larger than the size limit", `[` + strings.Repeat(" ", 200) + `1]`, Limits{MaxBytes: 100}, inv, "message larger than 100 bytes"},
		{"reject / object instead of batch", `{"jsonrpc":"2.0","method":"a"}`, Limits{}, inv, "batch must be a JSON array"},
		{"reject / malformed object instead of batch", `{"jsonrpc"}`, Limits{}, bad, "expected ':'"},
		{"reject / empty input as batch", ``, Limits{}, bad, "unexpected end of input"},
	}
	for _, tc := range frame {
		t.Run(tc.name, func(t *testing.T) {
			msgs, errs, err := DecodeBatch([]byte(tc.in), tc.lim)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("err = %v (%T)", err, err)
			}
			if msgs != nil || errs != nil {
				t.Errorf("frame error with elements: %v %v", msgs, errs)
			}
			if de.Code != tc.code || !strings.Contains(de.Message, tc.frag) {
				t.Errorf("got {%d %q}, want {%d ...%q...}", de.Code, de.Message, tc.code, tc.frag)
			}
		})
	}
	t.Run("accept / batch of exactly the limit", func(t *testing.T) {
		in := "[" + strings.Repeat(`{"jsonrpc":"2.0","method":"a"},`, 99) + `{"jsonrpc":"2.0","method":"a"}]`
		msgs, _, err := DecodeBatch([]byte(in), Limits{})
		if err != nil || len(msgs) != 100 {
			t.Fatalf("len %d err %v", len(msgs), err)
		}
	})
}

func TestValid(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		code     int
		frag     string
	}{
		{"accept / scalar", `1`, ok, ""},
		{"accept / string with whitespace around", " \"x\" ", ok, ""},
		{"accept / array of objects", `[{"a":1},{"a":2}]`, ok, ""},
		{"accept / JSON schema", `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"a":{"type":"string"}},"required":["a"]}`, ok, ""},
		{"reject / empty", ``, bad, "unexpected end of input"},
		{"reject / two values", `1 2`, bad, "trailing data"},
		{"reject / duplicate key", `{"a":{"b":1,"\u0062":2}}`, inv, `duplicate member "b"`},
		{"reject / too deep", nest(65, ""), inv, "nesting deeper than 64"},
		{"reject / lone surrogate", `"\udfff"`, bad, "unpaired surrogate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Valid([]byte(tc.in), Limits{})
			if tc.code == ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			de, isDE := err.(*DecodeError)
			if !isDE || de.Code != tc.code || !strings.Contains(de.Message, tc.frag) {
				t.Errorf("Valid(%q) = %v, want {%d ...%q...}", tc.in, err, tc.code, tc.frag)
			}
		})
	}
}

func TestConstructorsAndEncode(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    *Message
		want string
	}{
		{"request with params", NewRequest(json.RawMessage(`7`), "tools/call", json.RawMessage(`{"name":"x"}`)), `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}`},
		{"request without params", NewRequest(json.RawMessage(`"a"`), "ping", nil), `{"jsonrpc":"2.0","id":"a","method":"ping"}`},
		{"notification", NewNotification("notifications/progress", json.RawMessage(`{"p":1}`)), `{"jsonrpc":"2.0","method":"notifications/progress","params":{"p":1}}`},
		{"method needing escapes", NewNotification("a\"b\\c\n", nil), `{"jsonrpc":"2.0","method":"a\"b\\c\n"}`},
		{"result", NewResult(json.RawMessage(`1`), json.RawMessage(`{"ok":true}`)), `{"jsonrpc":"2.0","id":1,"result":{"ok":true}}`},
		{"nil result becomes null", NewResult(json.RawMessage(`1`), nil), `{"jsonrpc":"2.0","id":1,"result":null}`},
		{"error with nil id", NewError(nil, CodeParseError, "bad", nil), `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}`},
		{"error with data", NewError(json.RawMessage(`"q"`), 42, "m", json.RawMessage(`{"d":1}`)), `{"jsonrpc":"2.0","id":"q","error":{"code":42,"message":"m","data":{"d":1}}}`},
		{"error response without id", &Message{Error: &Error{Code: 1, Message: "m"}}, `{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"m"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.m.Encode()
			if string(got) != tc.want {
				t.Errorf("Encode = %s\nwant     %s", got, tc.want)
			}
			prefix := []byte("prefix")
			if app := tc.m.AppendEncode(prefix); string(app) != "prefix"+tc.want {
				t.Errorf("AppendEncode = %s", app)
			}
			back, err := Decode(got, Limits{})
			if err != nil {
				t.Fatalf("Decode(Encode) = %v", err)
			}
			if !bytes.Equal(back.Encode(), got) {
				t.Errorf("re-encoding differs: %s", back.Encode())
			}
		})
	}
	if e, _ := json.Marshal(&Error{Code: 1, Message: "m"}); string(e) != `{"code":1,"message":"m"}` {
		t.Errorf("json.Marshal(Error) = %s", e)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		exact    bool // the input is already in Encode's canonical form
	}{
		{"round trip / tools/call with $schema, _meta and unknown fields", `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"x","arguments":{"$schema":"s","x-unknown":{"deep":[1,{"y":null}]}},"_meta":{"progressToken":"t"}}}`, true},
		{"round trip / unicode escapes kept as written", `{"jsonrpc":"2.0","id":"\u0069d","method":"x","params":{"s":"\u00e9\ud83d\ude00\u2028","raw":"é😀"}}`, true},
		{"round trip / whitespace inside params kept", `{"jsonrpc":"2.0","id":1,"method":"x","params":{ "a" :  [ 1 ,2 ] ,"b":{}	}}`, true},
		{"round trip / numbers kept as written", `{"jsonrpc":"2.0","id":1,"result":[1.0,1e2,-0,0.50,12345678901234567890123]}`, true},
		{"round trip / error data kept", `{"jsonrpc":"2.0","id":"e","error":{"code":-32000,"message":"m","data":{"z":1,"a":[true,false]}}}`, true},
		{"round trip / member order and whitespace normalised", " {\"params\": {\"b\":1,\"a\":2} , \"method\" : \"x\", \"id\":1 ,\"jsonrpc\":\"2.0\"} ", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Decode([]byte(tc.in), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			out := m.Encode()
			if tc.exact && string(out) != tc.in {
				t.Errorf("Encode = %s\nwant     %s", out, tc.in)
			}
			m2, err := Decode(out, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if !sameMessage(m, m2) {
				t.Errorf("fields differ after round trip: %+v vs %+v", m, m2)
			}
			for _, k := range []string{"params", "result"} {
				want, _ := Member(json.RawMessage(tc.in), k)
				got, _ := Member(out, k)
				if !bytes.Equal(got, want) {
					t.Errorf("%s = %s, want %s", k, got, want)
				}
			}
		})
	}
}

// sameMessage reports whether a and b have byte-identical fields.
func sameMessage(a, b *Message) bool {
	if !bytes.Equal(a.ID, b.ID) || a.Method != b.Method || !bytes.Equal(a.Params, b.Params) || !bytes.Equal(a.Result, b.Result) {
		return false
	}
	if (a.Error == nil) != (b.Error == nil) {
		return false
	}
	return a.Error == nil || a.Error.Code == b.Error.Code && a.Error.Message == b.Error.Message && bytes.Equal(a.Error.Data, b.Error.Data)
}

func TestDecodeAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop pooled scanners at random")
	}
	in := []byte(toolsCallRequest)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := Decode(in, Limits{}); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("Decode of a tools/call request allocates %v times, want at most 1", allocs)
	}
}

// TestConcurrentDecode decodes from many goroutines at once (run with
// -race) to check that pooled scanner state never leaks between calls.
func TestConcurrentDecode(t *testing.T) {
	type outcome struct {
		enc string
		err string
	}
	run := func(in string) outcome {
		m, err := Decode([]byte(in), Limits{})
		if err != nil {
			return outcome{err: err.Error() + " id=" + string(err.(*DecodeError).ID)}
		}
		return outcome{enc: string(m.Encode())}
	}
	var inputs []string
	for _, tc := range decodeCases {
		if len(tc.in) < 1<<16 {
			inputs = append(inputs, tc.in)
		}
	}
	want := make([]outcome, len(inputs))
	for i, in := range inputs {
		want[i] = run(in)
	}
	done := make(chan error)
	for g := range 8 {
		go func() {
			for n := range 20 * len(inputs) {
				i := (n*7 + g) % len(inputs)
				if got := run(inputs[i]); got != want[i] {
					done <- fmt.Errorf("input %q: got %+v, want %+v", inputs[i], got, want[i])
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
