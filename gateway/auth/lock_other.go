//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package auth

// lockFile is a no-op where flock is not available: writes are serialized
// within the process only, and re-read the file before changing it.
func lockFile(string) (unlock func(), err error) { return func() {}, nil }
