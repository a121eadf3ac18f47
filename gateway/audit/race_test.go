//go:build race

package audit_test

// raceEnabled reports whether the race detector is on; it slows the
// million-row test several-fold, which then runs on fewer rows.
const raceEnabled = true
