package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/audit"
	"github.com/sallyport/sallyport/gateway/config"
)

// errVerifyFailed makes `audit verify` exit 1 after printing its report.
var errVerifyFailed = errors.New("audit log verification failed")

func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: audit needs verify, export or prune", errUsage)
	}
	sub, args := args[0], args[1:]
	fs := newFlags("audit " + sub)
	cfgPath := fs.String("c", "", "config file (its database holds the audit log)")
	dbPath := fs.String("db", "", dbFlagHelp)
	var file, keyEnv, format, out, olderThan *string
	var every *int64
	var filtered *bool
	filter := map[string]*string{}
	switch sub {
	case "verify":
		file = fs.String("file", "", "verify an export (CSV or JSONL) instead of the database")
		filtered = fs.Bool("filtered", false, "with --file: the export was filtered, so gaps in seq are expected (the chain is checked across consecutive rows only)")
		keyEnv = fs.String("key-env", "", "environment variable holding the audit key (default: the config's audit.key)")
		every = fs.Int64("checkpoint-every", 0, "rows between checkpoint MACs (default: the config's audit.checkpoint_every)")
	case "export":
		format = fs.String("format", "", "csv or jsonl")
		out = fs.String("out", "", "write to this file instead of standard output")
		for _, name := range audit.FilterParams {
			filter[name] = fs.String(name, "", "only rows with this "+name)
		}
		fs.Lookup("since").Usage = "only rows at or after this time (RFC 3339, 2006-01-02, or an age like 7d)"
		fs.Lookup("until").Usage = "only rows before this time (RFC 3339, 2006-01-02, or an age like 7d)"
		fs.Lookup("approval").Usage = "only the rows of this approval item (its id, apr_…): the held request, each transition, the delivered call and its answer"
	case "prune":
		olderThan = fs.String("older-than", "", "delete rows older than this age (e.g. 90d), keeping the chain verifiable")
	default:
		return fmt.Errorf("%w: unknown audit command %q", errUsage, sub)
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	cfg, err := loadAuditConfig(*cfgPath)
	if err != nil {
		return err
	}
	switch sub {
	case "verify":
		key := auditKey(cfg)
		if *keyEnv != "" {
			v, ok := os.LookupEnv(*keyEnv)
			if !ok || v == "" {
				return fmt.Errorf("verify: environment variable %s is not set", *keyEnv)
			}
			key = []byte(v)
		}
		n := int64(cfg.Audit.CheckpointEvery)
		if *every > 0 {
			n = *every
		}
		return auditVerify(ctx, cfg, *dbPath, *file, *filtered, key, n, stdout)
	case "export":
		if *format != audit.FormatCSV && *format != audit.FormatJSONL {
			return fmt.Errorf("%w: audit export needs --format csv or --format jsonl", errUsage)
		}
		f, err := audit.ParseFilter(func(name string) string { return *filter[name] }, time.Now())
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		db, err := openDB(ctx, cfg, *dbPath, true)
		if err != nil {
			return err
		}
		defer db.Close()
		w := stdout
		var tmp *os.File
		if *out != "" {
			// Written beside the target and renamed at the end: a failed
			// export never leaves a file that looks complete.
			if tmp, err = os.CreateTemp(filepath.Dir(*out), ".sallyport-export-*"); err != nil {
				return fmt.Errorf("export: %w", err)
			}
			defer os.Remove(tmp.Name())
			defer tmp.Close()
			w = tmp
		}
		rows, err := audit.Export(ctx, db.Audit(), f, w, *format)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if tmp != nil {
			if err := tmp.Sync(); err != nil {
				return fmt.Errorf("export: %w", err)
			}
			if err := tmp.Close(); err != nil {
				return fmt.Errorf("export: %w", err)
			}
			if err := os.Rename(tmp.Name(), *out); err != nil {
				return fmt.Errorf("export: %w", err)
			}
		}
		fmt.Fprintf(stderr, "sallyport: exported %d rows\n", rows)
		return nil
	default: // prune
		age, err := config.ParseDuration(*olderThan)
		if err != nil || age <= 0 {
			return fmt.Errorf("%w: audit prune needs --older-than AGE (e.g. 90d)", errUsage)
		}
		db, err := openDB(ctx, cfg, *dbPath, false)
		if err != nil {
			return err
		}
		defer db.Close()
		n, err := db.Audit().Prune(ctx, time.Now().Add(-age.D()))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "pruned %d rows\n", n)
		return nil
	}
}

// loadAuditConfig loads the config file, or without one the defaults (the
// database then is sallyport.db in the working directory).
func loadAuditConfig(path string) (*config.Config, error) {
	if path != "" {
		return config.Load(path)
	}
	return config.Default(), nil
}

func auditVerify(ctx context.Context, cfg *config.Config, dbPath, file string, filtered bool, key []byte, every int64, stdout io.Writer) error {
	var rep audit.Report
	var source string
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		defer f.Close()
		source = file
		v := &audit.Verifier{Key: key, CheckpointEvery: every, AllowGaps: filtered}
		errStop := errors.New("stop")
		err = audit.ReadExport(f, func(r *gateway.AuditRecord) error {
			if !v.Check(r) {
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			return fmt.Errorf("verify %s: %w", file, err)
		}
		rep = v.Report()
	} else {
		db, err := openDB(ctx, cfg, dbPath, true)
		if err != nil {
			return err
		}
		defer db.Close()
		source = db.Path()
		if rep, err = audit.VerifyLog(ctx, db.Audit(), key, every); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
	}
	return printReport(stdout, source, rep)
}

func printReport(w io.Writer, source string, rep audit.Report) error {
	if !rep.OK() {
		fmt.Fprintf(w, "FAIL %s: %s\n", source, rep.Problem)
		if rep.Rows > 0 {
			fmt.Fprintf(w, "  rows %d to %d before it fit the chain\n", rep.First, rep.Last)
		}
		return errVerifyFailed
	}
	if rep.Rows == 0 {
		fmt.Fprintf(w, "OK %s: no rows\n", source)
		return nil
	}
	fmt.Fprintf(w, "OK %s: %d rows, %d to %d, chain intact\n", source, rep.Rows, rep.First, rep.Last)
	if rep.Gaps > 0 {
		fmt.Fprintf(w, "  a filtered export: %d gaps, across which the chain cannot be checked\n", rep.Gaps)
	}
	switch {
	case rep.Keyed && rep.Checkpoints > 0:
		fmt.Fprintf(w, "  %d checkpoint MACs valid, the last at row %d; rows after it are covered by the chain only\n", rep.Checkpoints, rep.LastCheckpoint)
	case rep.Keyed:
		fmt.Fprintf(w, "  no checkpoint rows yet to check with the key\n")
	default:
		fmt.Fprintf(w, "  no key given: checkpoint MACs not checked, so a chain rewritten from scratch would not be detected\n")
	}
	return nil
}
