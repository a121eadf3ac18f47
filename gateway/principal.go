package gateway

import (
	"context"
	"log/slog"
	"slices"
)

// Principal is the authenticated identity a client session acts for.
type Principal struct {
	// ID names the principal, e.g. "alice".
	ID string
	// Groups are the groups the principal belongs to, e.g. ["dev","ops"].
	Groups []string
	// TokenID identifies the credential used (never the credential itself).
	TokenID string
	// Anonymous is true when no credential was presented and the
	// configuration allows anonymous access.
	Anonymous bool
}

// InGroup reports whether the principal belongs to group g.
func (p Principal) InGroup(g string) bool { return slices.Contains(p.Groups, g) }

// Equal reports whether p and q name the same principal with the same
// credential; a session bound to p may only be used by q when Equal holds.
func (p Principal) Equal(q Principal) bool {
	return p.ID == q.ID && p.TokenID == q.TokenID && p.Anonymous == q.Anonymous
}

// LogValue implements slog.LogValuer.
func (p Principal) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", p.ID), slog.String("token_id", p.TokenID))
}

type principalKey struct{}

// WithPrincipal returns ctx carrying the authenticated principal p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal ctx carries, if any.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

type clientGoneKey struct{}

// WithClientGone returns ctx carrying gone, a channel closed when the
// client's connection for this request is gone (an HTTP POST whose client
// hung up). Under MCP a disconnection is not a cancellation; a stage that
// would otherwise wait for a long time (an approval) may still give up.
func WithClientGone(ctx context.Context, gone <-chan struct{}) context.Context {
	return context.WithValue(ctx, clientGoneKey{}, gone)
}

// ClientGone returns the channel WithClientGone put in ctx, or nil (which
// never becomes ready in a select).
func ClientGone(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(clientGoneKey{}).(<-chan struct{})
	return ch
}
