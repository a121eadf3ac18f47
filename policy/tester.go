package policy

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestOptions configure Test.
type TestOptions struct {
	// Verbose reports every test, with its trace when it fails, as
	// `opa test -v` does.
	Verbose bool
	// Run, when set, is a regular expression selecting the tests to run.
	Run string
	// Timeout bounds each test; default 5s.
	Timeout time.Duration
}

// TestSummary counts what Test ran.
type TestSummary struct {
	Passed, Failed, Errored, Skipped int
}

// Test runs the Rego unit tests (rules named test_*) of the policy src
// names, with the same capabilities the gateway compiles policies with,
// and reports to w as `opa test` does. err is set when the policy does not
// load or compile.
func Test(ctx context.Context, src Source, w io.Writer, opts TestOptions) (TestSummary, error) {
	var sum TestSummary
	res, _, err := loadFiles(src, true)
	if err != nil {
		return sum, &LoadError{Source: src.String(), Err: err}
	}
	store := inmem.NewFromObject(res.Documents)
	compiler := ast.NewCompiler().
		WithCapabilities(capabilities).
		WithEnablePrintStatements(true).
		WithDefaultRegoVersion(ast.RegoV1)
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	runner := tester.NewRunner().
		SetCompiler(compiler).
		SetStore(store).
		SetDefaultRegoVersion(ast.RegoV1).
		CapturePrintOutput(true).
		EnableTracing(opts.Verbose).
		RaiseBuiltinErrors(true).
		SetTimeout(timeout).
		Filter(opts.Run).
		SetModules(res.ParsedModules())
	ch, err := runner.RunTests(ctx, nil)
	if err != nil {
		return sum, &LoadError{Source: src.String(), Err: explain(err)}
	}
	counted := make(chan *tester.Result)
	go func() {
		defer close(counted)
		for r := range ch {
			switch {
			case r.Skip:
				sum.Skipped++
			case r.Error != nil:
				sum.Errored++
			case r.Fail:
				sum.Failed++
			default:
				sum.Passed++
			}
			counted <- r
		}
	}()
	rep := tester.PrettyReporter{Output: w, Verbose: opts.Verbose, FailureLine: true}
	if err := rep.Report(counted); err != nil {
		for range counted { // let the counting goroutine finish
		}
		return sum, err
	}
	if sum.Passed+sum.Failed+sum.Errored == 0 {
		return sum, errors.New("no tests found (rules named test_*)")
	}
	return sum, nil
}
