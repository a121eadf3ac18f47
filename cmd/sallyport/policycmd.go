package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sallyport/sallyport/gateway/audit"
	"github.com/sallyport/sallyport/policy"
)

// exitError ends the process with a given exit code after printing its
// message (when it has one).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// pathList is a repeatable -p flag.
type pathList []string

func (p *pathList) String() string { return strings.Join(*p, ",") }

func (p *pathList) Set(v string) error {
	if v == "" {
		return errors.New("empty path")
	}
	*p = append(*p, v)
	return nil
}

func runPolicy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: policy needs test, eval, replay or check", errUsage)
	}
	sub, args := args[0], args[1:]
	fs := newFlags("policy " + sub)
	var paths pathList
	fs.Var(&paths, "p", "policy file or directory (repeatable; default: the config's policy.paths, else the embedded default)")
	cfgPath := fs.String("c", "", "config file (for its policy paths, query and database)")
	query := fs.String("query", "", "decision to evaluate (default: the config's policy.query, data.sallyport.decision)")
	var verbose *bool
	var run, inputFile, dbPath, since *string
	var examples *int
	var failOnChange *bool
	filter := map[string]*string{}
	switch sub {
	case "test":
		verbose = fs.Bool("v", false, "report every test, and the trace of failures")
		run = fs.String("run", "", "only tests whose name matches this regular expression")
	case "eval":
		inputFile = fs.String("input", "", "input document, JSON (- for standard input)")
	case "replay":
		dbPath = fs.String("db", "", dbFlagHelp)
		since = fs.String("since", "7d", "replay rows at or after this time (RFC 3339, 2006-01-02, or an age like 7d)")
		for _, name := range []string{"until", "principal", "backend", "tool", "method"} {
			filter[name] = fs.String(name, "", "only rows with this "+name)
		}
		examples = fs.Int("examples", 3, "examples shown per change and rule")
		failOnChange = fs.Bool("fail-on-change", false, "exit 3 when any decision changes (for CI)")
	case "check":
	default:
		return fmt.Errorf("%w: unknown policy command %q", errUsage, sub)
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// policy test also takes the paths as arguments, as opa test does.
	if sub == "test" {
		paths = append(paths, fs.Args()...)
	} else if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	cfg, err := loadAuditConfig(*cfgPath)
	if err != nil {
		return err
	}
	src := policy.Source{Paths: paths, Query: cfg.Policy.Query}
	if len(paths) == 0 {
		src.Paths = cfg.Policy.Paths
	}
	if *query != "" {
		src.Query = *query
	}

	switch sub {
	case "test":
		sum, err := policy.Test(ctx, src, stdout, policy.TestOptions{Verbose: *verbose, Run: *run})
		if err != nil {
			return err
		}
		if sum.Failed+sum.Errored > 0 {
			return &exitError{code: 2}
		}
		return nil
	case "check":
		set, err := policy.Load(ctx, src)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: ok (%d files, version %s)\n", set.Source(), len(set.Files()), set.Version())
		return nil
	case "eval":
		if *inputFile == "" {
			return fmt.Errorf("%w: policy eval needs --input FILE", errUsage)
		}
		var data []byte
		if *inputFile == "-" {
			data, err = io.ReadAll(os.Stdin)
		} else {
			data, err = os.ReadFile(*inputFile)
		}
		if err != nil {
			return fmt.Errorf("read input: %w", err)
		}
		doc, err := policy.DecodeInput(data)
		if err != nil {
			return fmt.Errorf("input %s is not one JSON document: %w", *inputFile, err)
		}
		set, err := policy.Load(ctx, src)
		if err != nil {
			return err
		}
		ectx, cancel := context.WithTimeout(ctx, cfg.Policy.Timeout.D())
		raw, d := set.EvalDocument(ectx, doc)
		cancel()
		out, _ := json.MarshalIndent(raw, "", "  ")
		fmt.Fprintf(stdout, "%s\n", out)
		fmt.Fprintf(stderr, "verdict: %s", d.Verdict())
		if len(d.Reasons) > 0 {
			fmt.Fprintf(stderr, " (%s)", strings.Join(d.Reasons, "; "))
		}
		if len(d.Rules) > 0 {
			fmt.Fprintf(stderr, " rules: %s", strings.Join(d.Rules, ", "))
		}
		fmt.Fprintf(stderr, "; policy version %s\n", set.Version())
		if raw == nil || slices.Contains(d.Rules, policy.RuleError) {
			return &exitError{code: 1, msg: "the policy gave no valid decision (a gateway would deny)"}
		}
		return nil
	default: // replay
		f, err := audit.ParseFilter(func(name string) string {
			if name == "since" {
				return *since
			}
			if p := filter[name]; p != nil {
				return *p
			}
			return ""
		}, time.Now())
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		set, err := policy.Load(ctx, src)
		if err != nil {
			return err
		}
		db, err := openDB(ctx, cfg, *dbPath, true)
		if err != nil {
			return err
		}
		defer db.Close()
		rep, err := policy.Replay(ctx, set, db.Audit(), policy.ReplayOptions{Filter: f, Examples: *examples, Timeout: cfg.Policy.Timeout.D()})
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		fmt.Fprintf(stdout, "candidate policy %s, version %.12s\n", set.Source(), set.Version())
		fmt.Fprint(stdout, rep.String())
		if *failOnChange && len(rep.Changes) > 0 {
			return &exitError{code: 3}
		}
		return nil
	}
}

var _ flag.Value = (*pathList)(nil)
