package jsonrpc

import (
	"bytes"
	"fmt"
	"math"
)

// Bits for the members of a message object.
const (
	fJSONRPC uint8 = 1 << iota
	fID
	fMethod
	fParams
	fResult
	fError
)

// Kinds of id value.
const (
	idString = 1 + iota
	idNumber
	idNull
	idOther
)

// IsBatch reports whether data (after leading JSON whitespace) starts with '['.
func IsBatch(data []byte) bool {
	i := skipWS(data, 0)
	return i < len(data) && data[i] == '['
}

// Decode validates and decodes exactly one JSON-RPC message object.
// The returned error is always a *DecodeError.
func Decode(data []byte, lim Limits) (*Message, error) {
	lim = lim.norm()
	if len(data) > lim.MaxBytes {
		return nil, tooLarge(lim)
	}
	s := getScanner(data, lim.MaxDepth)
	var m *Message
	i := skipWS(data, 0)
	if i < len(data) && data[i] == '{' {
		m, i = s.message(i, 0)
	} else {
		s.invalid("message must be a JSON object")
		i = s.value(i, 0)
	}
	if i >= 0 {
		s.trailing(i)
	}
	var err *DecodeError
	switch {
	case s.fatal != nil:
		err = s.fatal
	case s.sem != "":
		err = &DecodeError{Code: CodeInvalidRequest, Message: s.sem, ID: bytes.Clone(s.id)}
	}
	putScanner(s)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// DecodeBatch decodes a JSON array of messages. A frame-level problem (bad JSON, too large/deep,
// empty array, more than MaxBatch elements) returns a single error. Otherwise msgs[i] or errs[i] is
// set for each element (the other nil), so the caller can answer invalid elements individually.
//
// The array itself counts as one level of nesting. A non-array input is a
// frame-level error. The returned error is always a *DecodeError.
func DecodeBatch(data []byte, lim Limits) (msgs []*Message, errs []*DecodeError, err error) {
	lim = lim.norm()
	if len(data) > lim.MaxBytes {
		return nil, nil, tooLarge(lim)
	}
	s := getScanner(data, lim.MaxDepth)
	defer putScanner(s)
	i := skipWS(data, 0)
	if i >= len(data) || data[i] != '[' {
		if i = s.value(i, 0); i >= 0 {
			s.trailing(i)
		}
		if s.fatal != nil {
			return nil, nil, s.fatal
		}
		return nil, nil, &DecodeError{Code: CodeInvalidRequest, Message: "batch must be a JSON array"}
	}
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == ']' {
		if s.trailing(i+1) < 0 {
			return nil, nil, s.fatal
		}
		return nil, nil, &DecodeError{Code: CodeInvalidRequest, Message: "empty batch"}
	}
	n := 0
	for {
		if i >= len(data) {
			return nil, nil, eofErr()
		}
		n++
		switch {
		case n > lim.MaxBatch:
			// Only validate the rest, so that a parse error still wins.
			msgs, errs = nil, nil
			i = s.value(i, 1)
		case data[i] == '{':
			s.sem, s.id = "", nil
			var m *Message
			m, i = s.message(i, 1)
			if i >= 0 {
				if s.sem != "" {
					msgs = append(msgs, nil)
					errs = append(errs, &DecodeError{Code: CodeInvalidRequest, Message: s.sem, ID: bytes.Clone(s.id)})
				} else {
					msgs = append(msgs, m)
					errs = append(errs, nil)
				}
			}
		default:
			i = s.value(i, 1)
			msgs = append(msgs, nil)
			errs = append(errs, &DecodeError{Code: CodeInvalidRequest, Message: "message must be a JSON object"})
		}
		if i < 0 {
			return nil, nil, s.fatal
		}
		i = skipWS(data, i)
		if i >= len(data) {
			return nil, nil, eofErr()
		}
		if data[i] == ',' {
			i = skipWS(data, i+1)
			continue
		}
		if data[i] == ']' {
			i++
			break
		}
		s.syntax(i, "expected ',' or ']' after array element, found "+describe(data[i]))
		return nil, nil, s.fatal
	}
	if s.trailing(i) < 0 {
		return nil, nil, s.fatal
	}
	if n > lim.MaxBatch {
		return nil, nil, &DecodeError{Code: CodeInvalidRequest, Message: fmt.Sprintf("batch larger than %d elements", lim.MaxBatch)}
	}
	return msgs, errs, nil
}

// Valid checks a standalone JSON value with the same strictness (used for backend results and config-provided JSON).
// Any JSON value is accepted at the top level. The returned error is nil
// or a *DecodeError: CodeParseError for malformed JSON, CodeInvalidRequest
// for duplicate member names, excess nesting or size.
func Valid(data []byte, lim Limits) error {
	lim = lim.norm()
	if len(data) > lim.MaxBytes {
		return tooLarge(lim)
	}
	s := getScanner(data, lim.MaxDepth)
	if i := s.value(0, 0); i >= 0 {
		s.trailing(i)
	}
	var err *DecodeError
	switch {
	case s.fatal != nil:
		err = s.fatal
	case s.sem != "":
		err = &DecodeError{Code: CodeInvalidRequest, Message: s.sem}
	}
	putScanner(s)
	if err != nil {
		return err
	}
	return nil
}

func tooLarge(lim Limits) *DecodeError {
	return &DecodeError{Code: CodeInvalidRequest, Message: fmt.Sprintf("message larger than %d bytes", lim.MaxBytes)}
}

func eofErr() *DecodeError {
	return &DecodeError{Code: CodeParseError, Message: "unexpected end of input"}
}

// memberName returns the unescaped name of the member whose validated
// string literal is quoted.
func memberName(quoted []byte, esc bool) []byte {
	if !esc {
		return quoted[1 : len(quoted)-1]
	}
	k, _ := unescape(make([]byte, 0, len(quoted)), quoted[1:len(quoted)-1])
	return k
}

// message decodes the message object whose '{' is at s.data[i], nested
// inside depth containers. It returns the offset past the object, or -1
// once s.fatal is set. If the object is well-formed JSON but not a valid
// message, s.sem says why, s.id holds the id if it could be recovered, and
// the returned message is nil.
func (s *scanner) message(i, depth int) (*Message, int) {
	data := s.data
	if depth++; depth > s.maxDepth {
		return nil, s.tooDeep()
	}
	var (
		m      Message
		e      Error
		seen   uint8
		dup    uint8
		idKind int
		bit    uint8
		j      int
		esc    bool
		bad    strProblem
		name   []byte
	)
	i = skipWS(data, i+1)
	if i >= len(data) {
		return nil, s.eof()
	}
	if data[i] == '}' {
		i++
		goto done
	}
	for {
		if data[i] != '"' {
			return nil, s.syntax(i, "expected member name, found "+describe(data[i]))
		}
		j, esc, bad = scanString(data, i)
		if bad != strOK {
			return nil, s.badString(j, bad)
		}
		name = memberName(data[i:j], esc)
		i = skipWS(data, j)
		if i >= len(data) {
			return nil, s.eof()
		}
		if data[i] != ':' {
			return nil, s.syntax(i, "expected ':' after member name, found "+describe(data[i]))
		}
		i = skipWS(data, i+1)
		if i >= len(data) {
			return nil, s.eof()
		}
		switch string(name) {
		case "jsonrpc":
			bit = fJSONRPC
		case "id":
			bit = fID
		case "method":
			bit = fMethod
		case "params":
			bit = fParams
		case "result":
			bit = fResult
		case "error":
			bit = fError
		default:
			bit = 0
			s.invalidName("unknown member %q", name)
			if i = s.value(i, depth); i < 0 {
				return nil, i
			}
		}
		if bit != 0 {
			if seen&bit != 0 {
				dup |= bit
				s.invalidName("duplicate member %q", name)
			}
			seen |= bit
			start := i
			switch bit {
			case fJSONRPC:
				if hasLit(data, i, `"2.0"`) {
					i += 5
					break
				}
				if i = s.value(i, depth); i < 0 {
					return nil, i
				}
				if v, ok := Unquote(data[start:i]); !ok || v != "2.0" {
					s.invalid(`member "jsonrpc" must be "2.0"`)
				}
			case fID:
				if i = s.value(i, depth); i < 0 {
					return nil, i
				}
				m.ID = data[start:i:i]
				idKind = classifyID(m.ID)
				if idKind == idOther {
					s.invalid(`member "id" must be a string or an integer`)
				}
			case fMethod:
				if data[i] != '"' {
					if i = s.value(i, depth); i < 0 {
						return nil, i
					}
					s.invalid(`member "method" must be a string`)
					break
				}
				j, esc, bad = scanString(data, i)
				if bad != strOK {
					return nil, s.badString(j, bad)
				}
				if esc {
					m.Method = string(memberName(data[i:j], true))
				} else {
					m.Method = methodString(data[i+1 : j-1])
				}
				if m.Method == "" {
					s.invalid(`member "method" must not be empty`)
				}
				i = j
			case fParams:
				if i = s.value(i, depth); i < 0 {
					return nil, i
				}
				m.Params = data[start:i:i]
				if data[start] != '{' {
					s.invalid(`member "params" must be an object`)
				}
			case fResult:
				if i = s.value(i, depth); i < 0 {
					return nil, i
				}
				m.Result = data[start:i:i]
			case fError:
				if data[i] != '{' {
					if i = s.value(i, depth); i < 0 {
						return nil, i
					}
					s.invalid(`member "error" must be an object`)
					break
				}
				if i = s.errorObject(i, depth, &e); i < 0 {
					return nil, i
				}
			}
		}
		i = skipWS(data, i)
		if i >= len(data) {
			return nil, s.eof()
		}
		if data[i] == ',' {
			i = skipWS(data, i+1)
			if i >= len(data) {
				return nil, s.eof()
			}
			continue
		}
		if data[i] == '}' {
			i++
			break
		}
		return nil, s.syntax(i, "expected ',' or '}' after object member, found "+describe(data[i]))
	}
done:
	switch {
	case seen&fJSONRPC == 0:
		s.invalid(`missing member "jsonrpc"`)
	case seen&fMethod != 0:
		if seen&(fResult|fError) != 0 {
			s.invalid(`request must not have "result" or "error"`)
		} else if idKind == idNull {
			s.invalid(`request "id" must not be null`)
		}
	case seen&(fResult|fError) == 0:
		s.invalid(`missing member "method", "result" or "error"`)
	case seen&(fResult|fError) == fResult|fError:
		s.invalid(`response must not have both "result" and "error"`)
	case seen&fParams != 0:
		s.invalid(`response must not have "params"`)
	case seen&fID == 0:
		s.invalid(`response missing member "id"`)
	case idKind == idNull && seen&fResult != 0:
		s.invalid(`result response "id" must not be null`)
	}
	if s.sem != "" {
		if dup&fID == 0 && (idKind == idString || idKind == idNumber) {
			s.id = m.ID
		}
		return nil, i
	}
	if seen&fError != 0 {
		p := new(struct {
			m Message
			e Error
		})
		p.m, p.e = m, e
		p.m.Error = &p.e
		return &p.m, i
	}
	p := new(Message)
	*p = m
	return p, i
}

// errorObject decodes the error object whose '{' is at s.data[i] into e.
func (s *scanner) errorObject(i, depth int, e *Error) int {
	data := s.data
	if depth++; depth > s.maxDepth {
		return s.tooDeep()
	}
	var (
		seen  uint8
		bit   uint8
		j     int
		esc   bool
		bad   strProblem
		name  []byte
		start int
	)
	i = skipWS(data, i+1)
	if i >= len(data) {
		return s.eof()
	}
	if data[i] == '}' {
		i++
		goto done
	}
	for {
		if data[i] != '"' {
			return s.syntax(i, "expected member name, found "+describe(data[i]))
		}
		j, esc, bad = scanString(data, i)
		if bad != strOK {
			return s.badString(j, bad)
		}
		name = memberName(data[i:j], esc)
		i = skipWS(data, j)
		if i >= len(data) {
			return s.eof()
		}
		if data[i] != ':' {
			return s.syntax(i, "expected ':' after member name, found "+describe(data[i]))
		}
		i = skipWS(data, i+1)
		if i >= len(data) {
			return s.eof()
		}
		switch string(name) {
		case "code":
			bit = 1
		case "message":
			bit = 2
		case "data":
			bit = 4
		default:
			bit = 0
			s.invalidName("unknown member %q in error object", name)
		}
		if seen&bit != 0 {
			s.invalidName("duplicate member %q", name)
		}
		seen |= bit
		start = i
		if i = s.value(i, depth); i < 0 {
			return i
		}
		switch bit {
		case 1:
			if c, ok := parseInt(data[start:i]); ok {
				e.Code = c
			} else {
				s.invalid(`error member "code" must be an integer`)
			}
		case 2:
			if msg, ok := Unquote(data[start:i]); ok {
				e.Message = msg
			} else {
				s.invalid(`error member "message" must be a string`)
			}
		case 4:
			e.Data = data[start:i:i]
		}
		i = skipWS(data, i)
		if i >= len(data) {
			return s.eof()
		}
		if data[i] == ',' {
			i = skipWS(data, i+1)
			if i >= len(data) {
				return s.eof()
			}
			continue
		}
		if data[i] == '}' {
			i++
			break
		}
		return s.syntax(i, "expected ',' or '}' after object member, found "+describe(data[i]))
	}
done:
	if seen&1 == 0 {
		s.invalid(`error object missing member "code"`)
	} else if seen&2 == 0 {
		s.invalid(`error object missing member "message"`)
	}
	return i
}

// classifyID says what kind of validated JSON value id is.
func classifyID(id []byte) int {
	switch c := id[0]; {
	case c == '"':
		return idString
	case c == 'n':
		return idNull
	case c == '-' || isDigit(c):
		for _, c := range id {
			if c == '.' || c == 'e' || c == 'E' {
				return idOther
			}
		}
		return idNumber
	}
	return idOther
}

// parseInt parses a validated JSON number that must be an integer fitting
// in an int.
func parseInt(b []byte) (int, bool) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg = true
		b = b[1:]
	}
	if len(b) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		if n > (math.MaxUint64-9)/10 {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if neg {
		if n > uint64(math.MaxInt)+1 {
			return 0, false
		}
		return int(-n), true
	}
	if n > math.MaxInt {
		return 0, false
	}
	return int(n), true
}

// methodString returns b as a string, without allocating for the MCP
// method names.
func methodString(b []byte) string {
	switch string(b) {
	case "initialize":
		return "initialize"
	case "ping":
		return "ping"
	case "tools/list":
		return "tools/list"
	case "tools/call":
		return "tools/call"
	case "resources/list":
		return "resources/list"
	case "resources/read":
		return "resources/read"
	case "resources/templates/list":
		return "resources/templates/list"
	case "resources/subscribe":
		return "resources/subscribe"
	case "resources/unsubscribe":
		return "resources/unsubscribe"
	case "prompts/list":
		return "prompts/list"
	case "prompts/get":
		return "prompts/get"
	case "completion/complete":
		return "completion/complete"
	case "logging/setLevel":
		return "logging/setLevel"
	case "sampling/createMessage":
		return "sampling/createMessage"
	case "elicitation/create":
		return "elicitation/create"
	case "roots/list":
		return "roots/list"
	case "notifications/initialized":
		return "notifications/initialized"
	case "notifications/cancelled":
		return "notifications/cancelled"
	case "notifications/progress":
		return "notifications/progress"
	case "notifications/message":
		return "notifications/message"
	case "notifications/resources/updated":
		return "notifications/resources/updated"
	case "notifications/resources/list_changed":
		return "notifications/resources/list_changed"
	case "notifications/tools/list_changed":
		return "notifications/tools/list_changed"
	case "notifications/prompts/list_changed":
		return "notifications/prompts/list_changed"
	case "notifications/roots/list_changed":
		return "notifications/roots/list_changed"
	}
	return string(b)
}
