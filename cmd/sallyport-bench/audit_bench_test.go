package main

import (
	"context"
	"fmt"
	"runtime"
	"testing"
)

// benchConcurrency is the goroutines of the concurrent benchmarks, as the
// issue asks (rounded up to a multiple of GOMAXPROCS).
const benchConcurrency = 32

// BenchmarkAuditStage runs the pipeline sallyport serve compiles, without
// the audit stages and with them (synchronous full and normal, over a real
// database in a temporary folder), on a delivery that does nothing. One op
// is one call: a tools/call request and its result, two audit rows. The
// difference in ns/op between an audit variant and none is what the stage
// adds to a call; rows/s is what the log wrote durably, counted in the
// database.
func BenchmarkAuditStage(b *testing.B) {
	for _, v := range stageVariants {
		b.Run(v+"/sequential", func(b *testing.B) {
			rig := benchRig(b, v)
			ctx := b.Context()
			for b.Loop() {
				if err := rig.call(ctx); err != nil {
					b.Fatal(err)
				}
			}
			reportRows(b, rig)
		})
		b.Run(fmt.Sprintf("%s/concurrent-%d", v, benchConcurrency), func(b *testing.B) {
			rig := benchRig(b, v)
			ctx := b.Context()
			procs := runtime.GOMAXPROCS(0)
			b.SetParallelism((benchConcurrency + procs - 1) / procs)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := rig.call(ctx); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			reportRows(b, rig)
		})
	}
}

func benchRig(b *testing.B, variant string) *stageRig {
	b.Helper()
	rig, err := newVariantRig(b.Context(), b.TempDir(), variant)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rig.close() })
	return rig
}

// reportRows reports calls/s and, for the audit variants, the rows/s the
// database holds for the timed calls.
func reportRows(b *testing.B, rig *stageRig) {
	b.Helper()
	secs := b.Elapsed().Seconds()
	if secs <= 0 {
		return
	}
	b.ReportMetric(float64(b.N)/secs, "calls/s")
	if rig.path == "" {
		return
	}
	n, err := countRows(context.Background(), rig.path)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n)/secs, "rows/s")
}
