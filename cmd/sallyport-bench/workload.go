package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// errLimit is how many failed calls end a workload early, so that a dead
// backend costs a few call timeouts rather than thousands.
const errLimit = 100

// caller makes one call.
type caller func(ctx context.Context) error

// runWorkload warms up (warmUp), then measures (measure). When db is not
// "" it also counts the audit rows the measured calls wrote there, from
// the log's max(seq) before and after (the warm-up's rows are left out).
func runWorkload(ctx context.Context, db string, workers []caller, warmupEach, total int, timeout time.Duration) (Summary, *AuditRows, error) {
	if err := warmUp(ctx, workers, warmupEach, timeout); err != nil {
		return Summary{}, nil, err
	}
	if db == "" {
		return measure(ctx, workers, total, timeout), nil, nil
	}
	before, err := countRows(ctx, db)
	if err != nil {
		return Summary{}, nil, err
	}
	s := measure(ctx, workers, total, timeout)
	after, err := countRows(ctx, db)
	if err != nil {
		return s, nil, err
	}
	return s, rowsDuring(after-before, s), nil
}

// timed makes one call bounded by timeout and returns how long it took.
func timed(ctx context.Context, c caller, timeout time.Duration) (time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t0 := time.Now()
	err := c(cctx)
	return time.Since(t0), err
}

// warmUp has every worker make warmupEach calls, all concurrently. Any
// error but a policy deadline (errPolicyDeadline) fails the workload,
// since the path is then broken rather than slow.
func warmUp(ctx context.Context, workers []caller, warmupEach int, timeout time.Duration) error {
	warmErr := make(chan error, len(workers))
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			for range warmupEach {
				if _, err := timed(ctx, w, timeout); err != nil && !errors.Is(err, errPolicyDeadline) {
					warmErr <- fmt.Errorf("warm-up call: %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(warmErr)
	if err := <-warmErr; err != nil {
		return err
	}
	return context.Cause(ctx)
}

// measure releases the workers together; they take the total measured
// calls from one shared counter, each call bounded by timeout. With one
// worker this is the sequential workload. Failed calls are counted, and
// errLimit of them (or ctx ending) stops the workload early. Calls the
// policy stage refused past its deadline (errPolicyDeadline) are counted
// as timeouts instead; they stop the workload only when errLimit of them
// outnumber the calls that went through.
func measure(ctx context.Context, workers []caller, total int, timeout time.Duration) Summary {
	var (
		wg          sync.WaitGroup
		next        atomic.Int64
		errs        atomic.Int64
		timeouts    atomic.Int64
		ok          atomic.Int64
		aborted     atomic.Bool
		firstErr    error
		firstOnce   sync.Once
		firstTO     error
		firstTOOnce sync.Once
	)
	lat := make([][]time.Duration, len(workers))
	start := make(chan struct{})
	for i, w := range workers {
		lat[i] = make([]time.Duration, 0, total/len(workers)+1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for next.Add(1) <= int64(total) {
				if aborted.Load() || ctx.Err() != nil {
					aborted.Store(true)
					return
				}
				d, err := timed(ctx, w, timeout)
				switch {
				case errors.Is(err, errPolicyDeadline):
					firstTOOnce.Do(func() { firstTO = err })
					if n := timeouts.Add(1); n >= errLimit && n > ok.Load() {
						aborted.Store(true)
					}
					continue
				case err != nil:
					firstOnce.Do(func() { firstErr = err })
					if errs.Add(1) >= errLimit {
						aborted.Store(true)
					}
					continue
				}
				ok.Add(1)
				lat[i] = append(lat[i], d)
			}
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	wall := time.Since(t0)

	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	s := summarize(all, int(errs.Load()), wall)
	s.Timeouts = int(timeouts.Load())
	s.Aborted = aborted.Load()
	if firstErr != nil {
		s.FirstError = firstErr.Error()
	}
	if firstTO != nil {
		s.FirstTimeout = firstTO.Error()
	}
	return s
}
