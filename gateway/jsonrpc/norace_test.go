//go:build !race

package jsonrpc

// raceEnabled reports whether the race detector is on.
const raceEnabled = false
