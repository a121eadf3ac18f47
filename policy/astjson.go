package policy

import (
	"encoding/json"
	"errors"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// maxValueDepth bounds the nesting valueOf follows. Messages have passed
// the codec's own depth limit already; this guards the other callers.
const maxValueDepth = 1000

var errBadJSON = errors.New("malformed JSON value")

// valueOf converts one JSON value to an OPA value, numbers kept as
// written. The input must be valid JSON (as every message that passed the
// codec is).
func valueOf(raw []byte) (ast.Value, error) { return valueAt(raw, 0) }

func valueAt(raw []byte, depth int) (ast.Value, error) {
	if depth > maxValueDepth {
		return nil, errors.New("JSON value nested too deeply")
	}
	raw = trimSpace(raw)
	if len(raw) == 0 {
		return nil, errBadJSON
	}
	i := 0
	switch c := raw[i]; {
	case c == '{':
		obj := ast.NewObject()
		var ferr error
		err := jsonrpc.EachMember(raw, func(k string, v json.RawMessage) bool {
			val, err := valueAt(v, depth+1)
			if err != nil {
				ferr = err
				return false
			}
			obj.Insert(ast.StringTerm(k), ast.NewTerm(val))
			return true
		})
		if err == nil {
			err = ferr
		}
		return obj, err
	case c == '[':
		var terms []*ast.Term
		var ferr error
		err := jsonrpc.EachElement(raw, func(_ int, v json.RawMessage) bool {
			val, err := valueAt(v, depth+1)
			if err != nil {
				ferr = err
				return false
			}
			terms = append(terms, ast.NewTerm(val))
			return true
		})
		if err == nil {
			err = ferr
		}
		return ast.NewArray(terms...), err
	case c == '"':
		s, ok := jsonrpc.Unquote(raw[i:])
		if !ok {
			return nil, errBadJSON
		}
		return ast.String(s), nil
	case c == 't':
		return ast.Boolean(true), nil
	case c == 'f':
		return ast.Boolean(false), nil
	case c == 'n':
		return ast.Null{}, nil
	case c == '-' || c >= '0' && c <= '9':
		return ast.Number(raw), nil
	}
	return nil, errBadJSON
}

func trimSpace(b []byte) []byte {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// appendJSON appends v as JSON. Input documents hold only JSON values
// (objects with string keys, arrays, strings, numbers, booleans, null).
func appendJSON(b []byte, v ast.Value) []byte {
	switch v := v.(type) {
	case ast.String:
		return jsonrpc.AppendQuote(b, string(v))
	case ast.Number:
		return append(b, v...)
	case ast.Boolean:
		if v {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	case ast.Null:
		return append(b, "null"...)
	case *ast.Array:
		b = append(b, '[')
		for i := range v.Len() {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSON(b, v.Elem(i).Value)
		}
		return append(b, ']')
	case ast.Object:
		b = append(b, '{')
		for i, k := range v.Keys() {
			if i > 0 {
				b = append(b, ',')
			}
			if s, ok := k.Value.(ast.String); ok {
				b = jsonrpc.AppendQuote(b, string(s))
			} else {
				b = jsonrpc.AppendQuote(b, k.Value.String())
			}
			b = append(b, ':')
			b = appendJSON(b, v.Get(k).Value)
		}
		return append(b, '}')
	}
	// Not a JSON value (a set, say): its Rego text, as a string.
	return jsonrpc.AppendQuote(b, v.String())
}
