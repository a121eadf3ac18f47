package main

import (
	"context"
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

// runWorkload warms up, then measures. Every worker first makes warmupEach
// calls (all concurrently); any error there fails the workload, since the
// path is then broken rather than slow. Then the workers, released
// together, take the total measured calls from one shared counter, each
// call bounded by timeout. With one worker this is the sequential workload.
func runWorkload(ctx context.Context, workers []caller, warmupEach, total int, timeout time.Duration) (Summary, error) {
	call := func(c caller) (time.Duration, error) {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		t0 := time.Now()
		err := c(cctx)
		return time.Since(t0), err
	}

	// Warm-up.
	warmErr := make(chan error, len(workers))
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range warmupEach {
				if _, err := call(w); err != nil {
					warmErr <- fmt.Errorf("warm-up call: %w", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(warmErr)
	if err := <-warmErr; err != nil {
		return Summary{}, err
	}
	if err := context.Cause(ctx); err != nil {
		return Summary{}, err
	}

	// Measured calls.
	var (
		next      atomic.Int64
		errs      atomic.Int64
		aborted   atomic.Bool
		firstErr  error
		firstOnce sync.Once
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
				d, err := call(w)
				if err != nil {
					firstOnce.Do(func() { firstErr = err })
					if errs.Add(1) >= errLimit {
						aborted.Store(true)
					}
					continue
				}
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
	s.Aborted = aborted.Load()
	if firstErr != nil {
		s.FirstError = firstErr.Error()
	}
	return s, nil
}
