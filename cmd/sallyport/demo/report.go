package demo

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
)

const (
	defaultReportSeconds = 1.0
	maxReportSeconds     = 60.0
	defaultReportSteps   = 5
	maxReportSteps       = 100
)

var generateReportTool = mcp.NewTool("generate_report",
	mcp.WithToolTitle("Generate the customer report"),
	mcp.WithDescription("Generate a short report on the customer base (how many customers, by plan). "+
		"The report is slow on purpose: it takes `seconds` to build, in `steps` equal steps, and reports "+
		"progress after each step when the request carries a progressToken. Cancelling the request stops it."),
	mcp.WithNumber("seconds",
		mcp.DefaultNumber(defaultReportSeconds),
		mcp.Min(0.0),
		mcp.Max(maxReportSeconds),
		mcp.Description("How long the report takes to build, in seconds (0 to 60). Defaults to 1."),
	),
	mcp.WithInteger("steps",
		mcp.DefaultNumber(defaultReportSteps),
		mcp.Min(1),
		mcp.Max(maxReportSteps),
		mcp.Description("How many steps the work is split into, each followed by a progress notification (1 to 100). Defaults to 5."),
	),
	mcp.WithSchemaAdditionalProperties(false),
	mcp.WithRawOutputSchema([]byte(`{
  "type": "object",
  "properties": {
    "title": {"type": "string", "description": "Title of the report."},
    "generated_at": {"type": "string", "format": "date-time", "description": "When the report was finished (RFC 3339, UTC)."},
    "customers": {"type": "integer", "minimum": 0, "description": "Number of customers on file."},
    "by_plan": {
      "type": "object",
      "additionalProperties": {"type": "integer", "minimum": 0},
      "description": "Number of customers on each plan."
    },
    "steps": {"type": "integer", "minimum": 1, "description": "Steps the work was split into."},
    "seconds": {"type": "number", "minimum": 0, "description": "Time the report was asked to take."}
  },
  "required": ["title", "generated_at", "customers", "by_plan", "steps", "seconds"],
  "additionalProperties": false
}`)),
	mcp.WithToolAnnotation(mcp.ToolAnnotation{
		Title:           "Generate the customer report",
		ReadOnlyHint:    mcp.ToBoolPtr(true),
		DestructiveHint: mcp.ToBoolPtr(false),
		IdempotentHint:  mcp.ToBoolPtr(true),
		OpenWorldHint:   mcp.ToBoolPtr(false),
	}),
)

type generateReportArgs struct {
	Seconds *float64 `json:"seconds"`
	// Steps is a float so that 5.0, which JSON Schema counts as an integer,
	// decodes; it is checked to be whole.
	Steps *float64 `json:"steps"`
}

type reportResult struct {
	Title       string         `json:"title"`
	GeneratedAt string         `json:"generated_at"`
	Customers   int            `json:"customers"`
	ByPlan      map[string]int `json:"by_plan"`
	Steps       int            `json:"steps"`
	Seconds     float64        `json:"seconds"`
}

func (d *demo) generateReport(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	var args generateReportArgs
	if err := req.BindArguments(&args); err != nil {
		return toolError("generate_report: invalid arguments: %v", err), nil
	}
	seconds, steps := defaultReportSeconds, float64(defaultReportSteps)
	if args.Seconds != nil {
		seconds = *args.Seconds
	}
	if args.Steps != nil {
		steps = *args.Steps
	}
	if seconds < 0 || seconds > maxReportSeconds || math.IsNaN(seconds) {
		return toolError("generate_report: seconds must be between 0 and %g", maxReportSeconds), nil
	}
	if steps < 1 || steps > maxReportSteps || steps != math.Trunc(steps) {
		return toolError("generate_report: steps must be a whole number between 1 and %d", maxReportSteps), nil
	}
	n := int(steps)

	var token mcp.ProgressToken
	if req.Params.Meta != nil {
		token = req.Params.Meta.ProgressToken
	}
	interval := time.Duration(seconds * float64(time.Second) / steps)
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for step := 1; step <= n; step++ {
		if step > 1 {
			timer.Reset(interval)
		}
		select {
		case <-ctx.Done():
			d.log.Info("report cancelled", logKeyStep, step-1, logKeySteps, n)
			return nil, fmt.Errorf("generate report: cancelled after %d of %d steps: %w", step-1, n, context.Cause(ctx))
		case <-timer.C:
		}
		if token != nil {
			d.notifyProgress(ctx, token, step, n)
		}
	}

	out := reportResult{
		Title:       "Customer base report",
		GeneratedAt: time.Now().UTC().Format(time.RFC3339),
		ByPlan:      map[string]int{},
		Steps:       n,
		Seconds:     seconds,
	}
	for _, c := range d.store.all() {
		out.Customers++
		out.ByPlan[c.Plan]++
	}
	return mcp.NewToolResultStructured(out, out.text()), nil
}

// notifyProgress sends notifications/progress for a finished step. A
// notification that cannot be queued is logged and dropped: progress is
// advisory and must not fail the call.
func (d *demo) notifyProgress(ctx context.Context, token mcp.ProgressToken, step, steps int) {
	err := d.mcp.SendNotificationToClient(ctx, string(mcp.MethodNotificationProgress), map[string]any{
		"progressToken": token,
		"progress":      step,
		"total":         steps,
		"message":       fmt.Sprintf("step %d of %d", step, steps),
	})
	if err != nil {
		d.log.Warn("progress notification dropped", logKeyStep, step, logKeySteps, steps, logKeyError, err)
	}
}

// text renders the report for the result's text content.
func (r reportResult) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nGenerated: %s\nCustomers on file: %d\n", r.Title, r.GeneratedAt, r.Customers)
	for _, plan := range slices.Sorted(maps.Keys(r.ByPlan)) {
		fmt.Fprintf(&b, "  %-10s %d\n", plan, r.ByPlan[plan])
	}
	return b.String()
}
