package gateway

import (
	"context"
	"log/slog"
	"time"
)

// LogStage logs every exchange at debug level. It is the pipeline's only
// stage until audit, policy and DLP plug in, and costs nothing when debug
// logging is off.
type LogStage struct {
	Logger *slog.Logger
}

// Handle implements Stage.
func (s LogStage) Handle(ctx context.Context, x *Exchange, next Handler) error {
	if !s.Logger.Enabled(ctx, slog.LevelDebug) {
		return next.Handle(ctx, x)
	}
	err := next.Handle(ctx, x)
	attrs := []slog.Attr{
		slog.String("dir", x.Direction.String()),
		slog.String("kind", x.Kind.String()),
		slog.String("method", x.Method),
	}
	if x.Session != nil {
		attrs = append(attrs, slog.String("session", x.Session.ID))
	}
	if x.Principal != nil {
		attrs = append(attrs, slog.String("principal", x.Principal.ID))
	}
	if x.Backend != "" {
		attrs = append(attrs, slog.String("backend", x.Backend))
	}
	if x.Target != "" {
		attrs = append(attrs, slog.String("target", x.Target))
	}
	if x.Request != nil {
		attrs = append(attrs, slog.Duration("latency", time.Since(x.Request.Time)))
	}
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	s.Logger.LogAttrs(ctx, slog.LevelDebug, "exchange", attrs...)
	return err
}

var _ Stage = LogStage{}
