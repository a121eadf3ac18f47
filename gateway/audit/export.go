package audit

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// Export formats.
const (
	FormatCSV   = "csv"
	FormatJSONL = "jsonl"
)

// Columns are the fields of an export, in order: the CSV header and the
// JSONL keys.
var Columns = []string{"seq", "time", "session", "transport", "protocol_version", "client_name", "client_version",
	"principal", "token_id", "direction", "kind", "method", "message_id", "ref", "backend", "target", "arguments",
	"decision", "reasons", "rules", "policy_version", "outcome", "error_code", "error", "latency_us", "bytes",
	"skipped", "prev_hash", "hash", "mac", "policy_input", "findings", "approval"}

// numeric columns are written as numbers and never formula-escaped.
var numeric = map[string]bool{"seq": true, "ref": true, "error_code": true, "latency_us": true, "bytes": true, "skipped": true}

// Writer writes audit rows in an export format, streaming.
type Writer struct {
	format string
	bw     *bufio.Writer
	cw     *csv.Writer
	buf    []byte
	fields []string
	n      int64
}

// NewWriter returns a Writer of format (FormatCSV or FormatJSONL) to w.
func NewWriter(w io.Writer, format string) (*Writer, error) { return newWriter(w, format, true) }

func newWriter(w io.Writer, format string, header bool) (*Writer, error) {
	ew := &Writer{format: format, bw: bufio.NewWriterSize(w, 64<<10)}
	switch format {
	case FormatCSV:
		// RFC 4180: CRLF line ends, fields quoted where needed.
		ew.cw = csv.NewWriter(ew.bw)
		ew.cw.UseCRLF = true
		ew.fields = make([]string, len(Columns))
		if !header {
			break
		}
		if err := ew.cw.Write(Columns); err != nil {
			return nil, err
		}
	case FormatJSONL:
	default:
		return nil, fmt.Errorf("unknown export format %q (want csv or jsonl)", format)
	}
	return ew, nil
}

// ContentType returns the MIME type of the format.
func ContentType(format string) string {
	if format == FormatCSV {
		return "text/csv; charset=utf-8"
	}
	return "application/jsonl; charset=utf-8"
}

// Write writes one row.
func (w *Writer) Write(r *gateway.AuditRecord) error {
	w.n++
	if w.cw != nil {
		f := w.fields[:0]
		f = append(f, strconv.FormatInt(r.Seq, 10), r.Time.UTC().Format(gateway.AuditTimeLayout))
		for _, s := range []string{r.Session, r.Transport, r.ProtocolVersion, r.ClientName, r.ClientVersion,
			r.Principal, r.TokenID, r.Direction, r.Kind, r.Method, r.MessageID} {
			f = append(f, cell(s))
		}
		f = append(f, strconv.FormatInt(r.Ref, 10), cell(r.Backend), cell(r.Target), cell(r.Arguments), cell(r.Decision),
			cell(gateway.AuditListText(r.Reasons)), cell(gateway.AuditListText(r.Rules)), cell(r.PolicyVersion), cell(r.Outcome),
			strconv.FormatInt(r.ErrorCode, 10), cell(r.Error), strconv.FormatInt(r.LatencyMicros, 10),
			strconv.FormatInt(r.Bytes, 10), strconv.FormatInt(r.Skipped, 10), r.PrevHash, r.Hash, r.MAC, cell(r.PolicyInput), cell(r.Findings),
			cell(r.Approval))
		return w.cw.Write(f)
	}
	b := w.buf[:0]
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, r.Seq, 10)
	str := func(k, v string) {
		b = append(b, `,"`...)
		b = append(b, k...)
		b = append(b, `":`...)
		b = jsonrpc.AppendQuote(b, v)
	}
	num := func(k string, v int64) {
		b = append(b, `,"`...)
		b = append(b, k...)
		b = append(b, `":`...)
		b = strconv.AppendInt(b, v, 10)
	}
	list := func(k string, vs []string) {
		b = append(b, `,"`...)
		b = append(b, k...)
		b = append(b, `":`...)
		b = append(b, gateway.AuditListText(vs)...)
		if len(vs) == 0 {
			b = append(b, "[]"...)
		}
	}
	str("time", r.Time.UTC().Format(gateway.AuditTimeLayout))
	str("session", r.Session)
	str("transport", r.Transport)
	str("protocol_version", r.ProtocolVersion)
	str("client_name", r.ClientName)
	str("client_version", r.ClientVersion)
	str("principal", r.Principal)
	str("token_id", r.TokenID)
	str("direction", r.Direction)
	str("kind", r.Kind)
	str("method", r.Method)
	str("message_id", r.MessageID)
	num("ref", r.Ref)
	str("backend", r.Backend)
	str("target", r.Target)
	str("arguments", r.Arguments)
	str("decision", r.Decision)
	list("reasons", r.Reasons)
	list("rules", r.Rules)
	str("policy_version", r.PolicyVersion)
	str("outcome", r.Outcome)
	num("error_code", r.ErrorCode)
	str("error", r.Error)
	num("latency_us", r.LatencyMicros)
	num("bytes", r.Bytes)
	num("skipped", r.Skipped)
	str("prev_hash", r.PrevHash)
	str("hash", r.Hash)
	str("mac", r.MAC)
	str("policy_input", r.PolicyInput)
	str("findings", r.Findings)
	str("approval", r.Approval)
	b = append(b, "}\n"...)
	w.buf = b
	_, err := w.bw.Write(b)
	return err
}

// Rows returns how many rows were written.
func (w *Writer) Rows() int64 { return w.n }

// Flush writes out what is buffered.
func (w *Writer) Flush() error {
	if w.cw != nil {
		w.cw.Flush()
		if err := w.cw.Error(); err != nil {
			return err
		}
	}
	return w.bw.Flush()
}

// cell protects a text cell from being taken for a formula by a
// spreadsheet (CSV injection): a value starting with = + - @ TAB CR or a
// quote mark gets a leading quote mark, which ReadExport takes off again.
// A value holding a CR is written as a quote mark and the value as a JSON
// string: encoding/csv cannot carry a CR (the writer drops a lone one, the
// reader turns CRLF into LF), and the row would no longer match its hash.
// No other cell starts with a quote mark and a double quote.
func cell(s string) string {
	if strings.IndexByte(s, '\r') >= 0 {
		return "'" + string(jsonrpc.Quote(s))
	}
	if s != "" && strings.IndexByte("=+-@\t\r'", s[0]) >= 0 {
		return "'" + s
	}
	return s
}

func uncell(s string) string {
	if strings.HasPrefix(s, `'"`) {
		if u, ok := jsonrpc.Unquote(json.RawMessage(s[1:])); ok {
			return u
		}
	}
	return strings.TrimPrefix(s, "'")
}

// ReadExport reads an export written by Writer, in either format (told
// apart by its first byte), calling fn for each row in order. fn must not
// keep r.
func ReadExport(rd io.Reader, fn func(r *gateway.AuditRecord) error) error {
	br := bufio.NewReaderSize(rd, 64<<10)
	first, err := br.Peek(1)
	if errors.Is(err, io.EOF) {
		return errors.New("export is empty")
	}
	if err != nil {
		return err
	}
	if first[0] == '{' {
		return readJSONL(br, fn)
	}
	return readCSV(br, fn)
}

type jsonRow struct {
	Seq             int64    `json:"seq"`
	Time            string   `json:"time"`
	Session         string   `json:"session"`
	Transport       string   `json:"transport"`
	ProtocolVersion string   `json:"protocol_version"`
	ClientName      string   `json:"client_name"`
	ClientVersion   string   `json:"client_version"`
	Principal       string   `json:"principal"`
	TokenID         string   `json:"token_id"`
	Direction       string   `json:"direction"`
	Kind            string   `json:"kind"`
	Method          string   `json:"method"`
	MessageID       string   `json:"message_id"`
	Ref             int64    `json:"ref"`
	Backend         string   `json:"backend"`
	Target          string   `json:"target"`
	Arguments       string   `json:"arguments"`
	Decision        string   `json:"decision"`
	Reasons         []string `json:"reasons"`
	Rules           []string `json:"rules"`
	PolicyVersion   string   `json:"policy_version"`
	Outcome         string   `json:"outcome"`
	ErrorCode       int64    `json:"error_code"`
	Error           string   `json:"error"`
	LatencyMicros   int64    `json:"latency_us"`
	Bytes           int64    `json:"bytes"`
	Skipped         int64    `json:"skipped"`
	PrevHash        string   `json:"prev_hash"`
	Hash            string   `json:"hash"`
	MAC             string   `json:"mac"`
	PolicyInput     string   `json:"policy_input"`
	Findings        string   `json:"findings"`
	Approval        string   `json:"approval"`
}

func readJSONL(br *bufio.Reader, fn func(*gateway.AuditRecord) error) error {
	var r gateway.AuditRecord
	for line := 1; ; line++ {
		text, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long := append([]byte(nil), text...)
			for errors.Is(err, bufio.ErrBufferFull) {
				text, err = br.ReadSlice('\n')
				long = append(long, text...)
			}
			text = long
		}
		if len(strings.TrimSpace(string(text))) > 0 {
			if kerr := checkKeys(text); kerr != nil {
				return fmt.Errorf("line %d: %w", line, kerr)
			}
			var j jsonRow
			if derr := json.Unmarshal(text, &j); derr != nil {
				return fmt.Errorf("line %d: %w", line, derr)
			}
			t, terr := time.Parse(gateway.AuditTimeLayout, j.Time)
			if terr != nil {
				return fmt.Errorf("line %d: time: %w", line, terr)
			}
			r = gateway.AuditRecord{Seq: j.Seq, Time: t, Session: j.Session, Transport: j.Transport,
				ProtocolVersion: j.ProtocolVersion, ClientName: j.ClientName, ClientVersion: j.ClientVersion,
				Principal: j.Principal, TokenID: j.TokenID, Direction: j.Direction, Kind: j.Kind, Method: j.Method,
				MessageID: j.MessageID, Ref: j.Ref, Backend: j.Backend, Target: j.Target, Arguments: j.Arguments,
				Decision: j.Decision, Reasons: j.Reasons, Rules: j.Rules, PolicyVersion: j.PolicyVersion,
				Outcome: j.Outcome, ErrorCode: j.ErrorCode, Error: j.Error, LatencyMicros: j.LatencyMicros,
				Bytes: j.Bytes, Skipped: j.Skipped, PrevHash: j.PrevHash, Hash: j.Hash, MAC: j.MAC, PolicyInput: j.PolicyInput, Findings: j.Findings,
				Approval: j.Approval}
			if ferr := fn(&r); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// columnSet holds Columns, for checkKeys.
var columnSet = func() map[string]bool {
	m := make(map[string]bool, len(Columns))
	for _, c := range Columns {
		m[c] = true
	}
	return m
}()

// checkKeys refuses a JSONL line that encoding/json would read leniently:
// a key that is not a column exactly as written (it matches keys case
// insensitively), or a key given twice (the last would win), so that what
// a person reads in the line is what was verified.
func checkKeys(line []byte) error {
	seen := make(map[string]bool, len(Columns))
	var bad error
	err := jsonrpc.EachMember(json.RawMessage(line), func(k string, _ json.RawMessage) bool {
		switch {
		case !columnSet[k]:
			bad = fmt.Errorf("unknown key %q", k)
		case seen[k]:
			bad = fmt.Errorf("key %q given twice", k)
		}
		seen[k] = true
		return bad == nil
	})
	if err != nil {
		return err
	}
	return bad
}

// legacyColumns is how many columns the first export format had (through
// mac).
const legacyColumns = 30

// at returns f[i], or "" past the end of an earlier format's record.
func at(f []string, i int) string {
	if i < len(f) {
		return f[i]
	}
	return ""
}

func readCSV(br *bufio.Reader, fn func(*gateway.AuditRecord) error) error {
	cr := csv.NewReader(br)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = 0 // every record as long as the header
	head, err := cr.Read()
	if err != nil {
		return fmt.Errorf("csv header: %w", err)
	}
	// Exports of earlier versions end before the columns added since
	// (policy_input with migration 0002, findings with 0003, approval with
	// 0004); their rows hash the same without them.
	if len(head) < legacyColumns || len(head) > len(Columns) || !slices.Equal(head, Columns[:len(head)]) {
		return errors.New("csv header does not name the audit export's columns")
	}
	var r gateway.AuditRecord
	for {
		f, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		line, _ := cr.FieldPos(0)
		nums := make([]int64, 0, 6)
		for i, c := range Columns {
			if numeric[c] {
				n, err := strconv.ParseInt(f[i], 10, 64)
				if err != nil {
					return fmt.Errorf("line %d: %s: %w", line, c, err)
				}
				nums = append(nums, n)
			}
		}
		t, err := time.Parse(gateway.AuditTimeLayout, f[1])
		if err != nil {
			return fmt.Errorf("line %d: time: %w", line, err)
		}
		reasons, err := gateway.AppendAuditList(nil, uncell(f[18]))
		if err != nil {
			return fmt.Errorf("line %d: reasons: %w", line, err)
		}
		rules, err := gateway.AppendAuditList(nil, uncell(f[19]))
		if err != nil {
			return fmt.Errorf("line %d: rules: %w", line, err)
		}
		r = gateway.AuditRecord{Seq: nums[0], Time: t, Session: uncell(f[2]), Transport: uncell(f[3]),
			ProtocolVersion: uncell(f[4]), ClientName: uncell(f[5]), ClientVersion: uncell(f[6]),
			Principal: uncell(f[7]), TokenID: uncell(f[8]), Direction: uncell(f[9]), Kind: uncell(f[10]),
			Method: uncell(f[11]), MessageID: uncell(f[12]), Ref: nums[1], Backend: uncell(f[14]),
			Target: uncell(f[15]), Arguments: uncell(f[16]), Decision: uncell(f[17]), Reasons: reasons, Rules: rules,
			PolicyVersion: uncell(f[20]), Outcome: uncell(f[21]), ErrorCode: nums[2], Error: uncell(f[23]),
			LatencyMicros: nums[3], Bytes: nums[4], Skipped: nums[5], PrevHash: f[27], Hash: f[28], MAC: f[29], PolicyInput: uncell(at(f, 30)), Findings: uncell(at(f, 31)),
			Approval: uncell(at(f, 32))}
		if err := fn(&r); err != nil {
			return err
		}
	}
}
