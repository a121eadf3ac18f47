package main

import (
	"context"
	"testing"

	"github.com/sallyport/sallyport/gateway"
)

// BenchmarkApprovalStageUnused measures what the approval stage costs a
// message that needs no approval, with the Service sallyport serve builds
// (over a real database in a temporary folder, Run going): one exchange
// whose decision allows it without approval, through an empty chain
// (without) and through a chain of the stage alone (with); delivery does
// nothing. The difference in ns/op is the stage's own cost per message,
// and allocs/op what it allocates. The harness measures the same stage in
// a pipeline with the policy stage, interleaved (--approval-stage-calls),
// where this cost is far below the noise of one call.
func BenchmarkApprovalStageUnused(b *testing.B) {
	q, stop, err := newApprovalService(b.Context(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := stop(); err != nil {
			b.Error(err)
		}
	})
	for _, c := range []struct {
		name  string
		chain gateway.Handler
	}{{"without", gateway.Chain()}, {"with", gateway.Chain(q.Stage())}} {
		b.Run(c.name, func(b *testing.B) {
			ctx := b.Context()
			x := allowedExchange(ctx)
			b.ReportAllocs()
			for b.Loop() {
				if err := c.chain.Handle(ctx, x); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// allowedExchange is the echo call's request as it leaves the policy stage
// when policy allows it without approval.
func allowedExchange(ctx context.Context) *gateway.Exchange {
	rig, _ := newStageRig(ctx, "", "") // no database: the principal and sessions only
	x := gateway.NewExchange(deliverNothing)
	x.Direction, x.Kind, x.Method = gateway.ClientToBackend, gateway.KindRequest, "tools/call"
	x.Principal, x.Session = rig.principal, rig.sessions[0]
	x.Backend, x.Target, x.Arguments, x.Definition = "everything", "echo", stageArgs, stageDef
	x.Decision = &gateway.Decision{Allow: true, Rules: []string{"default/allow"}}
	return x
}
