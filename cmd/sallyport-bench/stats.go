package main

import (
	"math"
	"slices"
	"time"
)

// Summary describes one workload's latencies and throughput. Latencies are
// in microseconds. Only successful calls contribute to the latencies and to
// CallsPerSec; failed ones are counted in Errors, and calls an in-process
// policy stage refused past its deadline in Timeouts.
type Summary struct {
	Calls        int     `json:"calls"`                   // successful measured calls
	Errors       int     `json:"errors"`                  // failed measured calls
	Timeouts     int     `json:"timeouts,omitempty"`      // calls refused past the policy stage's deadline
	Aborted      bool    `json:"aborted,omitempty"`       // stopped early: too many errors or timeouts, or interrupted
	FirstError   string  `json:"first_error,omitempty"`   // the first failed call's error
	FirstTimeout string  `json:"first_timeout,omitempty"` // the first timed-out call's error
	WallSeconds  float64 `json:"wall_seconds"`
	CallsPerSec  float64 `json:"calls_per_sec"`
	MinUS        float64 `json:"min_us"`
	MeanUS       float64 `json:"mean_us"`
	P50US        float64 `json:"p50_us"`
	P90US        float64 `json:"p90_us"`
	P99US        float64 `json:"p99_us"`
	MaxUS        float64 `json:"max_us"`
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted, by the
// nearest-rank method: the smallest value such that at least p percent of
// the values are at or below it. It returns 0 for an empty slice.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// summarize computes a Summary from the latencies of the successful calls,
// the number of failed calls and the wall-clock time the workload took. It
// sorts latencies in place.
func summarize(latencies []time.Duration, errors int, wall time.Duration) Summary {
	s := Summary{Calls: len(latencies), Errors: errors, WallSeconds: round(wall.Seconds(), 3)}
	if len(latencies) == 0 {
		return s
	}
	slices.Sort(latencies)
	var total time.Duration
	for _, d := range latencies {
		total += d
	}
	if wall > 0 {
		s.CallsPerSec = round(float64(len(latencies))/wall.Seconds(), 1)
	}
	s.MinUS = micros(latencies[0])
	s.MeanUS = micros(total / time.Duration(len(latencies)))
	s.P50US = micros(percentile(latencies, 50))
	s.P90US = micros(percentile(latencies, 90))
	s.P99US = micros(percentile(latencies, 99))
	s.MaxUS = micros(latencies[len(latencies)-1])
	return s
}

// micros converts d to microseconds, rounded to 0.1 µs.
func micros(d time.Duration) float64 { return round(float64(d)/float64(time.Microsecond), 1) }

func round(x float64, digits int) float64 {
	f := math.Pow10(digits)
	return math.Round(x*f) / f
}

// ratio returns a/b, or nil when either is missing or b is zero, so that a
// ratio that could not be measured shows as null rather than as 0 or +Inf.
func ratio(a, b float64) *float64 {
	if a == 0 || b == 0 {
		return nil
	}
	r := round(a/b, 3)
	return &r
}
