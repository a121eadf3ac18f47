package proxy

import (
	"bytes"
	"encoding/json"

	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// Protocol versions compare as strings: they are dates (YYYY-MM-DD).

// newerFields are the definition members later protocol versions added,
// by the version that introduced them. A client that negotiated an older
// version never receives them: it did not agree to them, and strict
// clients reject what they do not know.
var newerFields = []struct {
	since  string
	fields []string
}{
	{"2025-06-18", []string{"title", "outputSchema"}},
	{"2025-11-25", []string{"icons", "execution"}},
}

// adaptEntry removes from a tool, prompt, resource or template definition
// the members the client's version does not have.
func adaptEntry(raw json.RawMessage, version string) json.RawMessage {
	for _, nf := range newerFields {
		if version >= nf.since {
			continue
		}
		for _, f := range nf.fields {
			if _, ok := jsonrpc.Member(raw, f); ok {
				raw = jsonrpc.DeleteMember(raw, f)
			}
		}
	}
	return raw
}

// adaptResult fits a tools/call result to a client older than 2025-06-18:
// structuredContent is removed (its JSON is kept as a text block when the
// result has no text of its own, as the spec asks servers to provide), and
// resource_link content becomes a text block naming the link.
func adaptResult(method string, result json.RawMessage, version string) json.RawMessage {
	if method != "tools/call" || version >= "2025-06-18" {
		return result
	}
	content, _ := jsonrpc.Member(result, "content")
	var items []json.RawMessage
	hasText, changed := false, false
	jsonrpc.EachElement(content, func(_ int, item json.RawMessage) bool {
		typ, _ := jsonrpc.Member(item, "type")
		switch string(typ) {
		case `"text"`:
			hasText = true
		case `"resource_link"`:
			uri, _ := jsonrpc.Member(item, "uri")
			u, _ := jsonrpc.Unquote(uri)
			item = json.RawMessage(`{"type":"text","text":` + string(jsonrpc.Quote("Resource link: "+u)) + `}`)
			changed = true
		}
		items = append(items, item)
		return true
	})
	if sc, ok := jsonrpc.Member(result, "structuredContent"); ok {
		result = jsonrpc.DeleteMember(result, "structuredContent")
		if !hasText {
			var c bytes.Buffer
			json.Compact(&c, sc)
			items = append(items, json.RawMessage(`{"type":"text","text":`+string(jsonrpc.Quote(c.String()))+`}`))
			changed = true
		}
	}
	if changed {
		var b bytes.Buffer
		b.WriteByte('[')
		for i, it := range items {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(it)
		}
		b.WriteByte(']')
		result = jsonrpc.SetMember(result, "content", b.Bytes())
	}
	return result
}
