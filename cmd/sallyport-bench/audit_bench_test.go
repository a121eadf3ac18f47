package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
)

// benchConcurrency is the goroutines of the concurrent benchmarks, as the
// issue asks (rounded up to a multiple of GOMAXPROCS).
const benchConcurrency = 32

// BenchmarkAuditStage runs the pipeline sallyport serve compiles, without
// the audit stages and with them (synchronous full and normal, over a real
// database in a temporary folder), and the policy and DLP stages alone, on
// a delivery that does nothing. One op is one call: a tools/call request
// and its result, two audit rows. The difference in ns/op between a
// variant and none is what its stage adds to a call; rows/s is what the
// log wrote durably, counted in the database. The policy stages run with
// the harness's default deadline (defaultPolicyStageTimeout); a call
// refused past it is reported as timeouts/op, and any other error fails
// the benchmark.
func BenchmarkAuditStage(b *testing.B) {
	for _, v := range stageVariants {
		b.Run(v.name+"/sequential", func(b *testing.B) {
			rig := benchRig(b, v)
			ctx := b.Context()
			var timeouts int64
			for b.Loop() {
				if err := rig.call(ctx); errors.Is(err, errPolicyDeadline) {
					timeouts++
				} else if err != nil {
					b.Fatal(err)
				}
			}
			reportRows(b, rig, timeouts)
		})
		b.Run(fmt.Sprintf("%s/concurrent-%d", v.name, benchConcurrency), func(b *testing.B) {
			rig := benchRig(b, v)
			ctx := b.Context()
			procs := runtime.GOMAXPROCS(0)
			b.SetParallelism((benchConcurrency + procs - 1) / procs)
			var timeouts atomic.Int64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := rig.call(ctx); errors.Is(err, errPolicyDeadline) {
						timeouts.Add(1)
					} else if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			reportRows(b, rig, timeouts.Load())
		})
	}
}

func benchRig(b *testing.B, v stageVariant) *stageRig {
	b.Helper()
	rig, err := v.build(b.Context(), b.TempDir(), rigOptions{policyTimeout: defaultPolicyStageTimeout})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rig.close() })
	return rig
}

// reportRows reports calls/s, the timeouts per call when there were any
// and, for the audit variants, the rows/s the database holds for the timed
// calls.
func reportRows(b *testing.B, rig *stageRig, timeouts int64) {
	b.Helper()
	secs := b.Elapsed().Seconds()
	if secs <= 0 {
		return
	}
	b.ReportMetric(float64(b.N)/secs, "calls/s")
	if timeouts > 0 {
		b.ReportMetric(float64(timeouts)/float64(b.N), "timeouts/op")
	}
	if rig.path == "" {
		return
	}
	n, err := countRows(context.Background(), rig.path)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n)/secs, "rows/s")
}
