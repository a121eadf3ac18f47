package audit_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/audit"
	"github.com/sallyport/sallyport/gateway/sqlite"
)

// benchRows is the size of the log the export and verify benchmarks read.
const benchRows = 200_000

// benchLog returns a log of benchRows synthetic rows with a checkpoint
// every 1000.
func benchLog(b *testing.B) gateway.AuditLog {
	b.Helper()
	db, _ := openDB(b, sqlite.Options{AuditKey: testKey, CheckpointEvery: 1000})
	for from := 0; from < benchRows; from += 10_000 {
		if err := db.Audit().Append(context.Background(), syntheticFrom(from, 10_000)...); err != nil {
			b.Fatal(err)
		}
	}
	// One scan first, so that the first benchmark does not pay for a cold
	// cache.
	if err := db.Audit().Scan(context.Background(), gateway.AuditFilter{}, func(*gateway.AuditRecord) error { return nil }); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	return db.Audit()
}

// reportRows reports rows handled per second over the loop.
func reportRows(b *testing.B, rowsPerOp, ops int) {
	b.ReportMetric(float64(rowsPerOp)*float64(ops)/b.Elapsed().Seconds(), "rows/s")
}

func BenchmarkExport(b *testing.B) {
	log := benchLog(b)
	for _, format := range []string{audit.FormatJSONL, audit.FormatCSV} {
		b.Run(format, func(b *testing.B) {
			ops := 0
			for b.Loop() {
				rows, err := audit.Export(context.Background(), log, gateway.AuditFilter{}, io.Discard, format)
				if err != nil {
					b.Fatal(err)
				}
				if rows != benchRows {
					b.Fatalf("exported %d rows", rows)
				}
				ops++
			}
			reportRows(b, benchRows, ops)
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	log := benchLog(b)
	for _, keyed := range []struct {
		name string
		key  []byte
	}{{"log", nil}, {"log with key", testKey}} {
		b.Run(keyed.name, func(b *testing.B) {
			ops := 0
			for b.Loop() {
				rep, err := audit.VerifyLog(context.Background(), log, keyed.key, 0)
				if err != nil || !rep.OK() || rep.Rows != benchRows {
					b.Fatalf("VerifyLog: %+v, %v", rep, err)
				}
				ops++
			}
			reportRows(b, benchRows, ops)
		})
	}
	// verify --file: read an export back and check it.
	for _, format := range []string{audit.FormatJSONL, audit.FormatCSV} {
		var buf bytes.Buffer
		w, _ := audit.NewWriter(&buf, format)
		if err := log.Scan(context.Background(), gateway.AuditFilter{}, w.Write); err != nil {
			b.Fatal(err)
		}
		w.Flush()
		data := buf.Bytes()
		b.Run(format+" file", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			ops := 0
			errStop := errors.New("stop")
			for b.Loop() {
				v := &audit.Verifier{Key: testKey, AllowGaps: true}
				err := audit.ReadExport(bytes.NewReader(data), func(r *gateway.AuditRecord) error {
					if !v.Check(r) {
						return errStop
					}
					return nil
				})
				if rep := v.Report(); err != nil || !rep.OK() || rep.Rows != benchRows {
					b.Fatalf("verify: %+v, %v", rep, err)
				}
				ops++
			}
			reportRows(b, benchRows, ops)
		})
	}
}

func BenchmarkComputeHash(b *testing.B) {
	r := synthetic(10)[9] // a deny row: reasons, rules, error
	r.Seq, r.PrevHash = 10, gateway.GenesisHash
	b.ReportAllocs()
	for b.Loop() {
		r.ComputeHash()
	}
}

// BenchmarkGate measures requests through Outer and Gate from concurrent
// callers, each waiting for its row to be durable (group commit).
func BenchmarkGate(b *testing.B) {
	db, _ := openDB(b, sqlite.Options{})
	a := audit.New(audit.Options{Log: db.Audit()})
	h := gateway.Chain(a.Outer(), pass, a.Gate())
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := h.Handle(context.Background(), request("1", delivered)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRows(b, 1, b.N)
}
