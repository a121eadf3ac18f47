package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sallyport/sallyport/cmd/sallyport/demo"
	"github.com/sallyport/sallyport/dlp"
	"github.com/sallyport/sallyport/gateway/auth"
	"github.com/sallyport/sallyport/gateway/config"
)

func runCheck(args []string, stdout io.Writer) error {
	fs := newFlags("check")
	cfgPath := fs.String("c", "", "config file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" {
		return fmt.Errorf("%w: check needs -c FILE", errUsage)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if !cfg.DLP.Disabled {
		// The DLP rules' detectors, fields and hash key are checked
		// where they are understood.
		if _, err := dlp.NewStage(cfg.DLP, nil); err != nil {
			return fmt.Errorf("%s: %w", *cfgPath, err)
		}
	}
	fmt.Fprintf(stdout, "%s: ok (%d backends)\n", *cfgPath, len(cfg.Backends))
	return nil
}

func runImport(args []string, stdout io.Writer) error {
	fs := newFlags("import")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: import needs one Claude Desktop config file", errUsage)
	}
	data, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	backends, err := config.ImportClaudeDesktop(data)
	if err != nil {
		return fmt.Errorf("import %s: %w", fs.Arg(0), err)
	}
	out, err := config.MarshalBackends(backends)
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}

func runTokens(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: tokens needs create, list or revoke", errUsage)
	}
	sub, args := args[0], args[1:]
	fs := newFlags("tokens " + sub)
	cfgPath := fs.String("c", "", "config file (its database holds the tokens)")
	dbPath := fs.String("db", "", dbFlagHelp)
	principal := fs.String("principal", "", "principal the token authenticates as")
	groups := fs.String("groups", "", "comma-separated groups")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	db, err := openDB(context.Background(), cfg, *dbPath, false)
	if err != nil {
		return err
	}
	defer db.Close()
	store, err := auth.New(db.Tokens())
	if err != nil {
		return err
	}
	path := db.Path()
	switch sub {
	case "create":
		if *principal == "" {
			return fmt.Errorf("%w: tokens create needs --principal", errUsage)
		}
		var gs []string
		for g := range strings.SplitSeq(*groups, ",") {
			if g = strings.TrimSpace(g); g != "" {
				gs = append(gs, g)
			}
		}
		token, rec, err := store.Create(*principal, gs)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, token)
		fmt.Fprintf(os.Stderr, "sallyport: token %s for %s stored hashed in %s; it is shown only this once\n", rec.ID, rec.Principal, path)
	case "list":
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tPRINCIPAL\tGROUPS\tCREATED\tREVOKED")
		for _, r := range store.List() {
			revoked := ""
			if r.Revoked != nil {
				revoked = r.Revoked.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ID, r.Principal, strings.Join(r.Groups, ","), r.Created.Format(time.RFC3339), revoked)
		}
		return tw.Flush()
	case "revoke":
		if fs.NArg() != 1 {
			return fmt.Errorf("%w: tokens revoke needs a token id", errUsage)
		}
		if err := store.Revoke(fs.Arg(0)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %s\n", fs.Arg(0))
	default:
		return fmt.Errorf("%w: unknown tokens command %q", errUsage, sub)
	}
	return nil
}

func runDemo(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("demo-server")
	sandbox := fs.String("sandbox", "", "folder read_file may read")
	outbox := fs.String("outbox", "", "JSONL file send_email records to")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *sandbox == "" {
		return fmt.Errorf("%w: demo-server needs --sandbox DIR", errUsage)
	}
	log, _, _ := newLogger("info", "text", "", stderr)
	return demo.Run(ctx, demo.Options{Sandbox: *sandbox, Outbox: *outbox, Logger: log}, stdin, stdout)
}
