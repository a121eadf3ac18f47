package audit_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/audit"
	"github.com/sallyport/sallyport/gateway/sqlite"
)

// TestVerifyLogInParallel tampers with a log large enough to be read in
// several ranges at once, in the middle of a range and at the seams
// between ranges: the report must name the same row a single pass would.
func TestVerifyLogInParallel(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("one CPU: VerifyLog reads in one pass")
	}
	const n = 40000
	parts := int64(min(runtime.GOMAXPROCS(0), 4))
	size := (n + parts - 1) / parts
	seam := size + 1 // the first row of the second range
	tests := []struct {
		name   string
		tamper func(t *testing.T, raw rawExec)
		bad    int64
	}{
		{"ok / an untouched log verifies, every row counted", func(*testing.T, rawExec) {}, 0},
		{"altered / a row in the middle of a range", func(t *testing.T, raw rawExec) {
			raw("UPDATE audit SET principal = 'mallory' WHERE seq = ?", seam+100)
		}, seam + 100},
		{"altered / the first row of a range", func(t *testing.T, raw rawExec) {
			raw("UPDATE audit SET principal = 'mallory' WHERE seq = ?", seam)
		}, seam},
		{"deleted / the last row of a range", func(t *testing.T, raw rawExec) {
			raw("DELETE FROM audit WHERE seq = ?", seam-1)
		}, seam - 1},
		{"deleted / the first rows of a range", func(t *testing.T, raw rawExec) {
			raw("DELETE FROM audit WHERE seq BETWEEN ? AND ?", seam, seam+2)
		}, seam},
		{"replaced / the first row of a range, with a hash of its own", func(t *testing.T, raw rawExec) {
			raw("UPDATE audit SET prev_hash = ? WHERE seq = ?", gateway.GenesisHash, seam)
		}, seam},
	}
	db, path := openDB(t, sqlite.Options{})
	appendAll(t, db.Audit(), synthetic(n), 5000)
	db.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cp := copyDB(t, path)
			tt.tamper(t, func(q string, args ...any) { exec(t, rawDB(t, cp), q, args...) })
			db, err := sqlite.Open(context.Background(), cp, sqlite.Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			rep, err := audit.VerifyLog(context.Background(), db.Audit(), nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			if tt.bad == 0 {
				if !rep.OK() || rep.Rows != n || rep.First != 1 || rep.Last != n {
					t.Fatalf("report %+v, want %d rows, 1 to %d, intact", rep, n, n)
				}
				return
			}
			if rep.OK() || rep.Bad != tt.bad {
				t.Fatalf("report %+v, want a failure at row %d", rep, tt.bad)
			}
			// The same verdict as one pass over the rows.
			v := &audit.Verifier{}
			v.Start(gateway.AuditAnchor{})
			for _, r := range rows(t, db.Audit(), gateway.AuditFilter{}) {
				if !v.Check(&r) {
					break
				}
			}
			if one := v.Report(); one.Bad != rep.Bad {
				t.Errorf("in parallel row %d (%s), in one pass row %d (%s)", rep.Bad, rep.Problem, one.Bad, one.Problem)
			}
		})
	}
}

type rawExec func(q string, args ...any)

// copyDB copies a closed database file (and its WAL, if any) to a new
// temporary file and returns its path.
func copyDB(t *testing.T, path string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy.db")
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(path + suffix)
		if err != nil {
			if suffix != "" && os.IsNotExist(err) {
				continue
			}
			t.Fatal(err)
		}
		if err := os.WriteFile(dst+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestExportInParallel: a log large enough to be exported in parallel
// ranges comes out byte for byte as one sequential pass writes it, with
// and without a filter, in both formats.
func TestExportInParallel(t *testing.T) {
	const n = 30000
	db, _ := openDB(t, sqlite.Options{})
	appendAll(t, db.Audit(), synthetic(n), 5000)
	for _, format := range []string{audit.FormatCSV, audit.FormatJSONL} {
		for _, f := range []gateway.AuditFilter{{}, {Principal: synthetic(1)[0].Principal}} {
			t.Run(format+" / filter "+f.Principal, func(t *testing.T) {
				var want bytes.Buffer
				ew, err := audit.NewWriter(&want, format)
				if err != nil {
					t.Fatal(err)
				}
				if err := db.Audit().Scan(context.Background(), f, ew.Write); err != nil {
					t.Fatal(err)
				}
				if err := ew.Flush(); err != nil {
					t.Fatal(err)
				}
				var got bytes.Buffer
				rows, err := audit.Export(context.Background(), db.Audit(), f, &got, format)
				if err != nil {
					t.Fatal(err)
				}
				if rows != ew.Rows() || !bytes.Equal(got.Bytes(), want.Bytes()) {
					t.Fatalf("Export wrote %d rows, %d bytes; one pass wrote %d rows, %d bytes", rows, got.Len(), ew.Rows(), want.Len())
				}
				if f.Principal == "" && rows != n {
					t.Fatalf("exported %d rows, want %d", rows, n)
				}
			})
		}
	}
}

// TestVerifyLogAnchorAttacks: moving the retention anchor past rows, or
// planting one made from a checkpoint row's MAC, does not verify.
func TestVerifyLogAnchorAttacks(t *testing.T) {
	t.Run("an anchor moved past rows that are still there fails at the first of them", func(t *testing.T) {
		db, path := openDB(t, sqlite.Options{})
		appendAll(t, db.Audit(), synthetic(50), 50)
		exec(t, rawDB(t, path), "INSERT INTO audit_anchor (id, seq, hash, mac, ts) VALUES (1, 20, ?, '', 0)", gateway.GenesisHash)
		rep, err := audit.VerifyLog(context.Background(), db.Audit(), nil, 0)
		if err != nil || rep.OK() || rep.Bad != 1 {
			t.Fatalf("report %+v, %v; want a failure at row 1", rep, err)
		}
	})
	t.Run("rows deleted up to a checkpoint and an anchor made of its MAC fail with the key", func(t *testing.T) {
		db, path := openDB(t, sqlite.Options{AuditKey: testKey, CheckpointEvery: 10})
		appendAll(t, db.Audit(), synthetic(50), 50)
		raw := rawDB(t, path)
		var hash, mac string
		if err := raw.QueryRow("SELECT hash, mac FROM audit WHERE seq = 20").Scan(&hash, &mac); err != nil {
			t.Fatal(err)
		}
		exec(t, raw, "DELETE FROM audit WHERE seq <= 20")
		exec(t, raw, "INSERT INTO audit_anchor (id, seq, hash, mac, ts) VALUES (1, 20, ?, ?, 0)", hash, mac)
		rep, err := audit.VerifyLog(context.Background(), db.Audit(), testKey, 10)
		if err != nil || rep.OK() || !strings.Contains(rep.Problem, "anchor") {
			t.Fatalf("report %+v, %v; want the anchor refused", rep, err)
		}
	})
}

// TestReadExportRefusesLenientJSONL: a line with a key in another case, a
// key given twice or an unknown key is refused rather than read the way
// encoding/json would (case-insensitively, last one wins).
func TestReadExportRefusesLenientJSONL(t *testing.T) {
	var buf bytes.Buffer
	w, err := audit.NewWriter(&buf, audit.FormatJSONL)
	if err != nil {
		t.Fatal(err)
	}
	r := synthetic(1)[0]
	r.Seq, r.PrevHash = 1, gateway.GenesisHash
	r.Hash = r.ComputeHash()
	if err := w.Write(r); err != nil || w.Flush() != nil {
		t.Fatal(err)
	}
	line := strings.TrimSuffix(buf.String(), "\n")
	for name, bad := range map[string]string{
		"a key in another case": strings.Replace(line, `{"seq":1,`, `{"seq":1,"Principal":"mallory",`, 1),
		"a key given twice":     strings.Replace(line, `{"seq":1,`, `{"seq":1,"principal":"mallory",`, 1),
		"an unknown key":        strings.Replace(line, `{"seq":1,`, `{"seq":1,"note":"x",`, 1),
	} {
		err := audit.ReadExport(strings.NewReader(bad+"\n"), func(*gateway.AuditRecord) error { return nil })
		if err == nil {
			t.Errorf("%s: ReadExport accepted %s", name, bad)
		}
	}
	if err := audit.ReadExport(strings.NewReader(line+"\n"), func(*gateway.AuditRecord) error { return nil }); err != nil {
		t.Errorf("the untouched line: %v", err)
	}
}
