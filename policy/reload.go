package policy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Watch checks the policy files every interval until ctx ends, and
// reloads them when they changed (see Reload).
func (s *Stage) Watch(ctx context.Context, interval time.Duration) {
	if len(s.src.Paths) == 0 {
		return // the embedded default never changes
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Reload(ctx, false)
		}
	}
}

// Reload loads the policy files again when they changed since the current
// set was loaded (always, when force is set). A set that loads is swapped
// in atomically; one that does not is logged, counted and reported in
// Status, and the current set stays. It returns the load error, if any.
func (s *Stage) Reload(ctx context.Context, force bool) error {
	if len(s.src.Paths) == 0 {
		return nil
	}
	s.reload.Lock()
	defer s.reload.Unlock()
	sig, err := signature(s.src.Paths)
	if err != nil {
		sig = "\x00unreadable: " + err.Error() // a path that stays unreadable is reported once
	}
	if sig == s.sig && !force {
		return nil
	}
	if err == nil {
		var set *Set
		set, err = Load(ctx, s.src)
		if err == nil {
			s.sig = sig
			s.lastErr.Store(nil)
			old := s.cur.Load()
			if set.version == old.version {
				return nil // touched, not changed
			}
			s.cur.Store(set)
			s.loadedAt.Store(time.Now().UnixNano())
			s.reloads.Add(1)
			s.log.Info("policy reloaded", slog.String("version", set.version), slog.String("previous", old.version), slog.String("source", set.source))
			if s.onSwap != nil {
				s.onSwap(set.version)
			}
			return nil
		}
	}
	// Remember the signature, so that a broken set is reported once, not
	// every interval; the next change tries again.
	s.sig = sig
	s.reloadFailures.Add(1)
	s.lastErr.Store(&reloadError{msg: err.Error(), at: time.Now().UTC()})
	s.log.Error("policy reload failed; the previous policy stays in force", slog.String("version", s.cur.Load().version), slog.String("err", err.Error()))
	return err
}

// signature describes the policy files under paths (names, sizes, times
// and inodes), so that a change is noticed without reading them.
func signature(paths []string) (string, error) {
	var b strings.Builder
	filter := fileFilter(false)
	for _, root := range paths {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := os.Stat(p) // follows symlinks, as the loader does
			if err != nil {
				return err
			}
			depth := strings.Count(strings.TrimPrefix(p, root), string(filepath.Separator))
			if filter(p, info, depth) {
				if info.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			var ino uint64
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				ino = st.Ino
			}
			fmt.Fprintf(&b, "%s\x00%d\x00%d\x00%d\x00%v\n", p, info.Size(), info.ModTime().UnixNano(), ino, info.IsDir())
			return nil
		})
		if err != nil {
			return "", errors.Join(fmt.Errorf("read %s", root), err)
		}
	}
	return b.String(), nil
}
