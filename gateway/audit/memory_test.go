package audit_test

import (
	"context"
	"runtime"
	"testing"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/audit"
	"github.com/sallyport/sallyport/gateway/sqlite"
)

// countingWriter counts the bytes written to it and drops them.
type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// TestExportBoundedMemory exports a log of a million rows (over 300 MB of
// export) and checks that the heap stays small throughout: the store
// streams rows and the writers keep none. Under the race detector, which
// slows it six-fold, it exports 100,000 rows.
func TestExportBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("appends a million rows")
	}
	const (
		batch      = 10_000
		sampleRows = 50_000
		// heapBound is far below the size of the rows: an export that
		// held them would pass it within the first tenth.
		heapBound = 32 << 20
	)
	total := 1_000_000
	if raceEnabled {
		total = 100_000
	}
	db, _ := openDB(t, sqlite.Options{})
	log := db.Audit()
	ctx := context.Background()
	for from := 0; from < total; from += batch {
		if err := log.Append(ctx, syntheticFrom(from, batch)...); err != nil {
			t.Fatalf("append rows %d..: %v", from, err)
		}
	}

	// One scan feeds both formats, as two exports would.
	runtime.GC()
	var ms runtime.MemStats
	var peakInuse, peakAlloc uint64
	sample := func() {
		runtime.ReadMemStats(&ms)
		peakInuse, peakAlloc = max(peakInuse, ms.HeapInuse), max(peakAlloc, ms.HeapAlloc)
	}
	sample()
	var jsonlBytes, csvBytes countingWriter
	jw, err := audit.NewWriter(&jsonlBytes, audit.FormatJSONL)
	if err != nil {
		t.Fatal(err)
	}
	cw, err := audit.NewWriter(&csvBytes, audit.FormatCSV)
	if err != nil {
		t.Fatal(err)
	}
	var n, lastSeq int64
	err = log.Scan(ctx, gateway.AuditFilter{}, func(r *gateway.AuditRecord) error {
		n++
		if r.Seq != lastSeq+1 {
			t.Fatalf("row %d follows row %d", r.Seq, lastSeq)
		}
		lastSeq = r.Seq
		if n%sampleRows == 0 {
			sample()
		}
		if err := jw.Write(r); err != nil {
			return err
		}
		return cw.Write(r)
	})
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	if err := jw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := cw.Flush(); err != nil {
		t.Fatal(err)
	}
	sample()
	if n != int64(total) || jw.Rows() != n || cw.Rows() != n {
		t.Errorf("exported %d rows (writers counted %d and %d), want %d", n, jw.Rows(), cw.Rows(), total)
	}
	t.Logf("%d rows: %.0f MB of jsonl, %.0f MB of csv; peak HeapInuse %.1f MiB, peak HeapAlloc %.1f MiB", n,
		float64(jsonlBytes.n)/1e6, float64(csvBytes.n)/1e6, float64(peakInuse)/(1<<20), float64(peakAlloc)/(1<<20))
	if peakInuse > heapBound || peakAlloc > heapBound {
		t.Errorf("peak heap %d B in use, %d B allocated; want both under %d B", peakInuse, peakAlloc, heapBound)
	}
}
