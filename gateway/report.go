package gateway

import "io"

// Reporter is a component that reports its state: in /readyz detail and
// as Prometheus metrics on /metrics.
type Reporter interface {
	// Name is the component's key in /readyz ("policy").
	Name() string
	// Status returns the component's state as a JSON-encodable value, and
	// whether the component is ready to serve.
	Status() (detail any, ready bool)
	// WriteMetrics writes the component's metrics in the Prometheus text
	// exposition format.
	WriteMetrics(w io.Writer)
}
