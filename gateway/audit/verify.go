package audit

import (
	"context"
	"crypto/hmac"
	"fmt"

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
	if len(v.Key) > 0 && a.Seq > 0 && !hmac.Equal([]byte(a.MAC), []byte(gateway.CheckpointMAC(v.Key, a.Seq, a.Hash))) {
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
		case r.Seq == v.prevSeq+1 && r.PrevHash != v.prevHash:
			v.fail(r.Seq, "row %d does not chain onto row %d (a row was altered, inserted or replaced)", r.Seq, v.prevSeq)
			return false
		case r.Seq > v.prevSeq+1 && !v.AllowGaps:
			if v.prevSeq+1 == r.Seq-1 {
				v.fail(v.prevSeq+1, "row %d is missing (deleted)", v.prevSeq+1)
			} else {
				v.fail(v.prevSeq+1, "rows %d to %d are missing (deleted)", v.prevSeq+1, r.Seq-1)
			}
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

// Report returns the outcome so far.
func (v *Verifier) Report() Report {
	rep := v.rep
	rep.Keyed = len(v.Key) > 0
	return rep
}

// VerifyLog verifies a whole audit log from its anchor to its last row;
// with a key, every checkpointEvery-th row must carry a valid MAC.
func VerifyLog(ctx context.Context, log gateway.AuditLog, key []byte, checkpointEvery int64) (Report, error) {
	v := &Verifier{Key: key, CheckpointEvery: checkpointEvery}
	a, err := log.Anchor(ctx)
	if err != nil {
		return Report{}, err
	}
	if !v.Start(a) {
		return v.Report(), nil
	}
	errStop := fmt.Errorf("stop")
	err = log.Scan(ctx, gateway.AuditFilter{}, func(r *gateway.AuditRecord) error {
		if !v.Check(r) {
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		return v.Report(), err
	}
	return v.Report(), nil
}
