package gateway

import (
	"strconv"

	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// DLP actions, as set on a Finding.
const (
	// ActionBlock refuses the message.
	ActionBlock = "block"
	// ActionRedact replaces the match with [REDACTED:<detector>].
	ActionRedact = "redact"
	// ActionMask keeps only the last four characters of the match.
	ActionMask = "mask"
	// ActionHash replaces the match with a keyed HMAC token: the same
	// value gives the same token, so results stay joinable.
	ActionHash = "hash"
	// ActionFlag records the finding and changes nothing.
	ActionFlag = "flag"
)

// Finding is one thing the DLP stage found in a message: which detector,
// where, and what was done about it. It never holds the matched value.
type Finding struct {
	// Detector is the detector id: a Presidio entity name for PII
	// (EMAIL_ADDRESS), a gitleaks rule id for secrets (aws-access-token).
	Detector string
	// Category is "pii" or "secret".
	Category string
	// Path is where the value sits in the message, in the syntax of Path
	// (params.arguments.to, result.content[0].text); for a finding in an
	// object member's name, the path of the object. A path never holds a
	// matched value: below a member whose name had a finding, that member
	// is written ["[REDACTED]"].
	Path string
	// InKey is true when the match is in a member name, not in a value.
	InKey bool
	// Offset and Length are the match's byte span in the string value (as
	// decoded from JSON); for an encoded match, the span of the encoded run.
	Offset, Length int
	// Confidence is the detector's confidence in the match, 0 to 1.
	Confidence float64
	// Encoding is how the match was hidden ("", "base64", "hex", "url",
	// or a chain like "base64+url").
	Encoding string
	// Action is what the DLP stage did: ActionBlock, ActionRedact,
	// ActionMask, ActionHash or ActionFlag.
	Action string
}

// AuditFindingsText is how findings are recorded in an audit row: a JSON
// array of {detector, path, action} objects (with encoding and in_key when
// set), "" when there are none. Values are never recorded.
func AuditFindingsText(fs []Finding) string {
	if len(fs) == 0 {
		return ""
	}
	b := make([]byte, 0, 64*len(fs))
	b = append(b, '[')
	for i, f := range fs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"detector":`...)
		b = jsonrpc.AppendQuote(b, f.Detector)
		b = append(b, `,"path":`...)
		b = jsonrpc.AppendQuote(b, f.Path)
		b = append(b, `,"offset":`...)
		b = strconv.AppendInt(b, int64(f.Offset), 10)
		b = append(b, `,"length":`...)
		b = strconv.AppendInt(b, int64(f.Length), 10)
		if f.Encoding != "" {
			b = append(b, `,"encoding":`...)
			b = jsonrpc.AppendQuote(b, f.Encoding)
		}
		if f.InKey {
			b = append(b, `,"in_key":true`...)
		}
		b = append(b, `,"action":`...)
		b = jsonrpc.AppendQuote(b, f.Action)
		b = append(b, '}')
	}
	return string(append(b, ']'))
}
