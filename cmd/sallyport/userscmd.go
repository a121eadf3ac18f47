package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sallyport/sallyport/gateway/auth"
)

// maxPasswordInput bounds what users add and passwd read from stdin.
const maxPasswordInput = 4 << 10

// runUsers manages reviewer accounts: people who log in with a username
// and password, beside the bearer tokens of programs.
func runUsers(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: users needs add, list, passwd, disable or enable", errUsage)
	}
	sub, args := args[0], args[1:]
	fs := newFlags("users " + sub)
	cfgPath := fs.String("c", "", "config file (its database holds the users)")
	dbPath := fs.String("db", "", dbFlagHelp)
	groups := fs.String("groups", "", "comma-separated groups (add)")
	passwordStdin := fs.Bool("password-stdin", false, "read the password from stdin instead of generating one (add, passwd)")
	// The username may come before the flags or after them.
	var names []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		names, args = append(names, fs.Arg(0)), fs.Args()[1:]
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	wantNames := 1
	switch sub {
	case "add":
	case "passwd", "disable", "enable":
		if set["groups"] {
			return fmt.Errorf("%w: --groups is for users add", errUsage)
		}
	case "list":
		wantNames = 0
		if set["groups"] || set["password-stdin"] {
			return fmt.Errorf("%w: users list takes no --groups or --password-stdin", errUsage)
		}
	default:
		return fmt.Errorf("%w: unknown users command %q", errUsage, sub)
	}
	if (sub == "disable" || sub == "enable") && set["password-stdin"] {
		return fmt.Errorf("%w: --password-stdin is for users add and passwd", errUsage)
	}
	if len(names) != wantNames {
		if wantNames == 0 {
			return fmt.Errorf("%w: users list takes no username", errUsage)
		}
		return fmt.Errorf("%w: users %s needs one username", errUsage, sub)
	}

	// The password is read before the database is opened.
	var password string
	generated := false
	if sub == "add" || sub == "passwd" {
		if *passwordStdin {
			var err error
			if password, err = readPassword(stdin); err != nil {
				return err
			}
		} else {
			password, generated = auth.GeneratePassword(), true
		}
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
	users, err := auth.NewUsers(db.Users())
	if err != nil {
		return err
	}
	path := db.Path()
	switch sub {
	case "add":
		var gs []string
		for g := range strings.SplitSeq(*groups, ",") {
			if g = strings.TrimSpace(g); g != "" {
				gs = append(gs, g)
			}
		}
		rec, err := users.Add(names[0], gs, password)
		if err != nil {
			return err
		}
		if generated {
			fmt.Fprintln(stdout, password)
			fmt.Fprintf(stderr, "sallyport: user %s added to %s; its password is shown only this once\n", rec.Username, path)
		} else {
			fmt.Fprintf(stdout, "added %s\n", rec.Username)
		}
	case "passwd":
		if err := users.SetPassword(names[0], password); err != nil {
			return err
		}
		if generated {
			fmt.Fprintln(stdout, password)
			fmt.Fprintf(stderr, "sallyport: new password of %s stored in %s; it is shown only this once\n", names[0], path)
		} else {
			fmt.Fprintf(stdout, "changed the password of %s\n", names[0])
		}
	case "disable":
		if err := users.Disable(names[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "disabled %s\n", names[0])
	case "enable":
		if err := users.Enable(names[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "enabled %s\n", names[0])
	case "list":
		recs, err := users.List()
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USERNAME\tGROUPS\tCREATED\tUPDATED\tDISABLED")
		for _, r := range recs {
			disabled := ""
			if r.Disabled != nil {
				disabled = r.Disabled.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Username, strings.Join(r.Groups, ","), r.Created.Format(time.RFC3339), r.Updated.Format(time.RFC3339), disabled)
		}
		return tw.Flush()
	}
	return nil
}

// readPassword reads a password from stdin: everything up to its end,
// without one trailing line break.
func readPassword(stdin io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(stdin, maxPasswordInput+1))
	if err != nil {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	if len(b) > maxPasswordInput {
		return "", errors.New("read password from stdin: longer than 4 KiB")
	}
	s := strings.TrimSuffix(string(b), "\n")
	s = strings.TrimSuffix(s, "\r")
	if s == "" {
		return "", errors.New("read password from stdin: no password given")
	}
	return s, nil
}
