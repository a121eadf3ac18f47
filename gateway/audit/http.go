package audit

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// Groups whose principals may read the audit log over HTTP.
var ReaderGroups = []string{"auditor", "admin"}

// FilterParams are the names of the filter parameters, the same for the
// CLI flags and the HTTP query. approval takes an approval item's id and
// selects its rows (the held request, each transition, the delivered call
// and its answer).
var FilterParams = []string{"since", "until", "principal", "backend", "tool", "method", "decision", "approval"}

// ParseFilter builds a filter from parameter values (get returns "" for an
// absent one). since and until take an RFC 3339 time, a date
// (2006-01-02, UTC midnight) or an age ("7d", "36h": that long before now).
func ParseFilter(get func(name string) string, now time.Time) (gateway.AuditFilter, error) {
	var f gateway.AuditFilter
	var err error
	if f.Since, err = parseTime(get("since"), now); err != nil {
		return f, fmt.Errorf("since: %w", err)
	}
	if f.Until, err = parseTime(get("until"), now); err != nil {
		return f, fmt.Errorf("until: %w", err)
	}
	f.Principal, f.Backend, f.Target = get("principal"), get("backend"), get("tool")
	f.Method, f.Decision, f.Approval = get("method"), get("decision"), get("approval")
	return f, nil
}

func parseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, err := config.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d.D()), nil
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time, a date (2006-01-02) or an age (7d, 36h)", s)
}

// Handler serves GET /api/audit: the audit log, filtered by the query
// parameters of ParseFilter, as CSV or JSONL (format=csv|jsonl, default
// jsonl), streamed. Only principals in ReaderGroups may read it; the
// principal comes from the request context (gateway.PrincipalFrom), put
// there by the frontend's authentication.
type Handler struct {
	Log    gateway.AuditLog
	Logger *slog.Logger
}

func (h Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/audit" {
		apiError(w, http.StatusNotFound, "not found")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		apiError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	p, ok := gateway.PrincipalFrom(r.Context())
	if !ok || p.Anonymous || !inAny(p, ReaderGroups) {
		apiError(w, http.StatusForbidden, "reading the audit log needs membership of group auditor or admin")
		return
	}
	q := r.URL.Query()
	for k, vs := range q {
		if k != "format" && !slices.Contains(FilterParams, k) {
			apiError(w, http.StatusBadRequest, fmt.Sprintf("unknown parameter %q", k))
			return
		}
		if len(vs) > 1 {
			apiError(w, http.StatusBadRequest, fmt.Sprintf("parameter %q given more than once", k))
			return
		}
	}
	f, err := ParseFilter(q.Get, time.Now())
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	format := q.Get("format")
	if format == "" {
		format = FormatJSONL
	}
	if format != FormatCSV && format != FormatJSONL {
		apiError(w, http.StatusBadRequest, fmt.Sprintf("unknown export format %q (want csv or jsonl)", format))
		return
	}
	w.Header().Set("Content-Type", ContentType(format))
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="sallyport-audit.%s"`, format))
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.Method == http.MethodHead {
		return
	}
	// Reading the audit log is itself on record, before anything is read.
	rec := &gateway.AuditRecord{Time: time.Now(), Transport: "http", Principal: p.ID, TokenID: p.TokenID,
		Direction: gateway.ClientToBackend.String(), Kind: gateway.KindRequest.String(), Method: "sallyport/audit.export",
		Target: "/api/audit", Arguments: queryJSON(q), Decision: gateway.DecisionAllow}
	if err := h.Log.Append(r.Context(), rec); err != nil {
		w.Header().Del("Content-Disposition")
		apiError(w, http.StatusServiceUnavailable, "audit log unavailable")
		return
	}
	if _, err = Export(r.Context(), h.Log, f, w, format); err != nil {
		if h.Logger != nil && r.Context().Err() == nil {
			h.Logger.Error("audit export failed", slog.String("principal", p.ID), slog.String("err", err.Error()))
		}
		// Cut the connection: a client must not take a truncated export
		// for a complete one.
		panic(http.ErrAbortHandler)
	}
}

func inAny(p gateway.Principal, groups []string) bool {
	for _, g := range groups {
		if p.InGroup(g) {
			return true
		}
	}
	return false
}

func apiError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": strings.TrimSpace(msg)})
}

// queryJSON renders the export's parameters as canonical JSON (keys
// sorted), for the row that records the export.
func queryJSON(q map[string][]string) string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b := []byte{'{'}
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonrpc.AppendQuote(b, k)
		b = append(b, ':')
		b = jsonrpc.AppendQuote(b, strings.Join(q[k], ","))
	}
	return string(append(b, '}'))
}
