package audit

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/sallyport/sallyport/gateway"
)

// exportRange is how many Seq numbers one export job covers: its encoded
// rows (a few MiB at most) are what a job holds in memory.
const exportRange = 4096

// buffers recycles the ranges' encoding buffers.
var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Export writes the rows f selects to w in format (FormatCSV with its
// header, or FormatJSONL), in Seq order, and returns how many it wrote.
// The log is read and encoded in consecutive Seq ranges by several workers
// at once and written in order; at most a few ranges are held in memory at
// a time, whatever the size of the log. A filter with AfterSeq, ThroughSeq
// or Limit is exported in one pass.
func Export(ctx context.Context, log gateway.AuditLog, f gateway.AuditFilter, w io.Writer, format string) (int64, error) {
	ew, err := NewWriter(w, format)
	if err != nil {
		return 0, err
	}
	workers := min(runtime.GOMAXPROCS(0), 4)
	var lo, hi int64
	if f.AfterSeq == 0 && f.ThroughSeq == 0 && f.Limit == 0 && workers > 1 {
		a, err := log.Anchor(ctx)
		if err != nil {
			return 0, err
		}
		if hi, _, err = log.Head(ctx); err != nil {
			return 0, err
		}
		lo = a.Seq
	}
	if hi-lo < 4*exportRange {
		if err := log.Scan(ctx, f, ew.Write); err != nil {
			return ew.Rows(), err
		}
		return ew.Rows(), ew.Flush()
	}
	if err := ew.Flush(); err != nil { // the CSV header
		return 0, err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		buf  *bytes.Buffer
		rows int64
		err  error
	}
	type job struct {
		f   gateway.AuditFilter
		out chan result
	}
	jobs := make(chan job)
	order := make(chan chan result, workers+2) // bounds the ranges in memory
	go func() {
		defer close(jobs)
		defer close(order)
		for start := lo; start < hi; start += exportRange {
			rf := f
			rf.AfterSeq = start
			if start+exportRange < hi {
				rf.ThroughSeq = start + exportRange
			} // the last range runs to the end, rows appended meanwhile included
			out := make(chan result, 1)
			select {
			case order <- out:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- job{rf, out}:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range workers {
		go func() {
			for j := range jobs {
				buf := buffers.Get().(*bytes.Buffer)
				buf.Reset()
				rw, err := newWriter(buf, format, false)
				if err != nil {
					j.out <- result{err: err}
					continue
				}
				if err = log.Scan(ctx, j.f, rw.Write); err == nil {
					err = rw.Flush()
				}
				j.out <- result{buf, rw.Rows(), err}
			}
		}()
	}
	var total int64
	for out := range order {
		var r result
		select {
		case r = <-out:
		case <-ctx.Done():
			return total, ctx.Err()
		}
		if r.err != nil {
			return total, fmt.Errorf("export: %w", r.err)
		}
		_, err := w.Write(r.buf.Bytes())
		buffers.Put(r.buf)
		if err != nil {
			return total, fmt.Errorf("export: %w", err)
		}
		total += r.rows
	}
	return total, ctx.Err()
}
