//go:build race

package jsonrpc

// raceEnabled reports whether the race detector is on: it makes sync.Pool
// drop some of what is put back, so allocation counts are not exact.
const raceEnabled = true
