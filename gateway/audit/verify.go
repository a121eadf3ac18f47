package audit

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/sallyport/sallyport/gateway"
)

// Report is the result of a verification.
type Report struct {
	// Rows is how many rows were checked; First and Last their Seq range.
	Rows, First, Last int64
	// Checkpoints is how many checkpoint MACs were verified with the key;
	// LastCheckpoint the Seq of the last one.
	Checkpoints    int64
	LastCheckpoint int64
	// Gaps counts the places where a filtered export skips rows (the chain
	// is checked across consecutive rows only there).
	Gaps int64
	// Keyed reports whether a key was given to check MACs.
	Keyed bool
	// Bad is the Seq of the first row that does not fit (0 if none), and
	// Problem says why.
	Bad     int64
	Problem string
}

// OK reports whether every row fit.
func (r *Report) OK() bool { return r.Problem == "" }

// Verifier checks a sequence of audit rows, fed in order with Check.
type Verifier struct {
	// Key, when set, checks the MAC of every checkpoint row and of the
	// anchor.
	Key []byte
	// CheckpointEvery, with Key, requires a valid MAC on every row whose
	// Seq is a multiple of it, so that a forger cannot drop the MACs of a
	// rewritten chain.
	CheckpointEvery int64
	// AllowGaps accepts jumps in Seq (a filtered export); without it a
	// jump is a deleted row.
	AllowGaps bool

	rep      Report
	prevSeq  int64
	prevHash string
	started  bool
}

// Start sets where the chain begins: the anchor of a pruned log, or the
// zero anchor (Seq 0, GenesisHash). It reports a problem with the anchor's
// MAC. Without Start, the first row is taken as it is.
func (v *Verifier) Start(a gateway.AuditAnchor) bool {
	v.started = true
	v.prevSeq, v.prevHash = a.Seq, a.Hash
	if v.prevHash == "" {
		v.prevHash = gateway.GenesisHash
	}
	if len(v.Key) > 0 && a.Seq > 0 && !hmac.Equal([]byte(a.MAC), []byte(gateway.AnchorMAC(v.Key, a.Seq, a.Hash))) {
		v.fail(a.Seq, "the anchor left by retention pruning does not carry a valid MAC (it was altered, or another key made it)")
		return false
	}
	return true
}

func (v *Verifier) fail(seq int64, format string, args ...any) {
	v.rep.Bad = seq
	v.rep.Problem = fmt.Sprintf(format, args...)
}

// Check checks the next row; it reports false at the first row that does
// not fit, after which the report names it.
func (v *Verifier) Check(r *gateway.AuditRecord) bool {
	if v.rep.Problem != "" {
		return false
	}
	if r.Hash != r.ComputeHash() {
		v.fail(r.Seq, "row %d: its content does not match its hash (the row was altered)", r.Seq)
		return false
	}
	if !v.started {
		v.started = true
	} else {
		switch {
		case r.Seq <= v.prevSeq:
			v.fail(r.Seq, "row %d comes after row %d: rows are out of order or duplicated (a row was inserted)", r.Seq, v.prevSeq)
			return false
		case r.Seq == v.prevSeq+1 && v.prevHash != "" && r.PrevHash != v.prevHash:
			v.fail(r.Seq, "row %d does not chain onto row %d (a row was altered, inserted or replaced)", r.Seq, v.prevSeq)
			return false
		case r.Seq > v.prevSeq+1 && !v.AllowGaps:
			v.fail(v.prevSeq+1, "%s", missing(v.prevSeq+1, r.Seq-1))
			return false
		case r.Seq > v.prevSeq+1:
			v.rep.Gaps++
		}
	}
	if len(v.Key) > 0 && r.MAC == "" && v.CheckpointEvery > 0 && r.Seq%v.CheckpointEvery == 0 {
		v.fail(r.Seq, "row %d: a checkpoint row without its MAC (the chain was rewritten, or the key or checkpoint interval differ from when it was written)", r.Seq)
		return false
	}
	if len(v.Key) > 0 && r.MAC != "" {
		if !hmac.Equal([]byte(r.MAC), []byte(gateway.CheckpointMAC(v.Key, r.Seq, r.Hash))) {
			v.fail(r.Seq, "row %d: its checkpoint MAC is not valid under the key (the chain was rewritten, or another key made it)", r.Seq)
			return false
		}
		v.rep.Checkpoints++
		v.rep.LastCheckpoint = r.Seq
	}
	if v.rep.Rows == 0 {
		v.rep.First = r.Seq
	}
	v.rep.Rows++
	v.rep.Last = r.Seq
	v.prevSeq, v.prevHash = r.Seq, r.Hash
	return true
}

// missing describes the deleted rows from through to.
func missing(from, to int64) string {
	if from == to {
		return fmt.Sprintf("row %d is missing (deleted)", from)
	}
	return fmt.Sprintf("rows %d to %d are missing (deleted)", from, to)
}

// Report returns the outcome so far.
func (v *Verifier) Report() Report {
	rep := v.rep
	rep.Keyed = len(v.Key) > 0
	return rep
}

// parallelMin is the size of log below which VerifyLog uses one reader.
const parallelMin = 20000

// VerifyLog verifies a whole audit log from its anchor to its last row;
// with a key, every checkpointEvery-th row must carry a valid MAC. A large
// log is read in consecutive Seq ranges, each on a reader and core of its
// own, and the ranges are then stitched together: the report is the same
// as reading it in one pass (the first row that does not fit).
func VerifyLog(ctx context.Context, log gateway.AuditLog, key []byte, checkpointEvery int64) (Report, error) {
	// Retention may prune the start while the log is read: a verdict given
	// while the anchor moved is not one, so read again.
	for try := 0; ; try++ {
		a, err := log.Anchor(ctx)
		if err != nil {
			return Report{}, err
		}
		rep, err := verifyFrom(ctx, log, a, key, checkpointEvery)
		if err != nil || rep.OK() || try == 2 {
			return rep, err
		}
		if b, err := log.Anchor(ctx); err != nil || b == a {
			return rep, err
		}
	}
}

func verifyFrom(ctx context.Context, log gateway.AuditLog, a gateway.AuditAnchor, key []byte, checkpointEvery int64) (Report, error) {
	v := &Verifier{Key: key, CheckpointEvery: checkpointEvery}
	if a.Seq > 0 {
		// Rows at or before the anchor were pruned; one that is there was
		// put back, or the anchor was moved past rows to hide them.
		var early int64
		errStop := errors.New("stop")
		err := log.Scan(ctx, gateway.AuditFilter{ThroughSeq: a.Seq, Limit: 1}, func(r *gateway.AuditRecord) error {
			early = r.Seq
			return errStop
		})
		if err != nil && !errors.Is(err, errStop) {
			return Report{}, err
		}
		if early > 0 {
			v.fail(early, "row %d is at or before the retention anchor (row %d): the anchor was moved, or the row put back", early, a.Seq)
			return v.Report(), nil
		}
	}
	if !v.Start(a) {
		return v.Report(), nil
	}
	last, _, err := log.Head(ctx)
	if err != nil {
		return Report{}, err
	}
	parts := min(runtime.GOMAXPROCS(0), 4)
	if last-a.Seq < parallelMin || parts < 2 {
		parts = 1
	}
	type part struct {
		v        *Verifier
		first    *gateway.AuditRecord // its first row's Seq and PrevHash
		lastSeq  int64
		lastHash string
		err      error
	}
	ps := make([]part, parts)
	size := (last - a.Seq + int64(parts) - 1) / int64(parts)
	var wg sync.WaitGroup
	for i := range ps {
		lo, hi := a.Seq+int64(i)*size, a.Seq+int64(i+1)*size
		if i == parts-1 {
			hi = 0 // through the end, rows appended meanwhile included
		}
		p := &ps[i]
		p.v = &Verifier{Key: key, CheckpointEvery: checkpointEvery, started: true, prevSeq: lo}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errStop := errors.New("stop")
			p.err = log.Scan(ctx, gateway.AuditFilter{AfterSeq: lo, ThroughSeq: hi}, func(r *gateway.AuditRecord) error {
				if p.first == nil {
					p.first = &gateway.AuditRecord{Seq: r.Seq, PrevHash: r.PrevHash}
				}
				if !p.v.Check(r) {
					return errStop
				}
				p.lastSeq, p.lastHash = r.Seq, r.Hash
				return nil
			})
			if errors.Is(p.err, errStop) {
				p.err = nil
			}
		}()
	}
	wg.Wait()
	// Stitch: each range must carry on where the one before ended. The
	// first problem in Seq order is the one reported.
	rep := v.Report()
	prevSeq, prevHash := a.Seq, a.Hash
	if prevHash == "" {
		prevHash = gateway.GenesisHash
	}
	fail := func(seq int64, format string, args ...any) (Report, error) {
		rep.Bad, rep.Problem = seq, fmt.Sprintf(format, args...)
		return rep, nil
	}
	for _, p := range ps {
		if p.err != nil {
			return rep, p.err
		}
		pr := p.v.Report()
		if f := p.first; f != nil {
			switch {
			case f.Seq > prevSeq+1:
				return fail(prevSeq+1, "%s", missing(prevSeq+1, f.Seq-1))
			case pr.Bad != f.Seq && f.PrevHash != prevHash:
				return fail(f.Seq, "row %d does not chain onto row %d (a row was altered, inserted or replaced)", f.Seq, prevSeq)
			}
		}
		if pr.Rows > 0 {
			if rep.First == 0 {
				rep.First = pr.First
			}
			rep.Last = pr.Last
			prevSeq, prevHash = p.lastSeq, p.lastHash
		}
		rep.Rows += pr.Rows
		rep.Checkpoints += pr.Checkpoints
		if pr.LastCheckpoint > 0 {
			rep.LastCheckpoint = pr.LastCheckpoint
		}
		if !pr.OK() {
			return fail(pr.Bad, "%s", pr.Problem)
		}
	}
	return rep, nil
}
