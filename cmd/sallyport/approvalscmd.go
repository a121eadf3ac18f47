package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unsafe"

	"github.com/sallyport/sallyport/approvals"
	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/auth"
)

const approvalsUsage = "approvals needs list, show ID, approve ID or deny ID"

// runApprovals is `sallyport approvals list|show|approve|deny`: against the
// configuration's database (deciding --as a reviewer account), or a running
// gateway's API (--url, with a bearer token from --token-env).
func runApprovals(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: %s", errUsage, approvalsUsage)
	}
	sub, args := args[0], args[1:]
	var id string
	if sub != "list" {
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			return fmt.Errorf("%w: approvals %s needs an approval id", errUsage, sub)
		}
		id, args = args[0], args[1:]
	}
	fs := newFlags("approvals " + sub)
	cfgPath := fs.String("c", "", "config file (its database holds the approvals)")
	dbPath := fs.String("db", "", dbFlagHelp)
	apiURL := fs.String("url", "", "a running gateway's address (http://127.0.0.1:8750): use its API instead of the database")
	tokenEnv := fs.String("token-env", "SALLYPORT_TOKEN", "environment variable holding the bearer token for --url")
	as := fs.String("as", "", "reviewer account deciding (database mode)")
	comment := fs.String("comment", "", "the decision's comment")
	state := fs.String("state", "pending", "list: the states to list, comma-separated, or all")
	format := fs.String("format", "text", "text or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *format != "text" && *format != "json" {
		return fmt.Errorf("%w: --format must be text or json", errUsage)
	}
	var src approvalSource
	if *apiURL != "" {
		token := os.Getenv(*tokenEnv)
		if token == "" {
			return fmt.Errorf("--url needs a bearer token in $%s", *tokenEnv)
		}
		u, err := url.Parse(*apiURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: --url must be http(s)://host:port", errUsage)
		}
		src = &apiSource{base: strings.TrimSuffix(*apiURL, "/"), token: token, client: &http.Client{Timeout: 30 * time.Second}}
	} else {
		cfg, err := loadConfig(*cfgPath)
		if err != nil {
			return err
		}
		db, err := openDB(ctx, cfg, *dbPath, false)
		if err != nil {
			return err
		}
		defer db.Close()
		q := approvals.New(approvals.Options{Store: db.Approvals(), Audit: db.Audit(), AllowSelfApproval: cfg.Approvals.AllowSelfApproval})
		src = &dbSource{q: q, users: db.Users(), as: *as, stdin: stdin, stderr: stderr}
	}
	switch sub {
	case "list":
		var states []gateway.ApprovalState
		if *state != "all" {
			for s := range strings.SplitSeq(*state, ",") {
				st := gateway.ApprovalState(strings.TrimSpace(s))
				if !slices.Contains(gateway.ApprovalStates, st) {
					return fmt.Errorf("%w: unknown state %q", errUsage, s)
				}
				states = append(states, st)
			}
		}
		items, err := src.list(ctx, states)
		if err != nil {
			return err
		}
		if *format == "json" {
			return writeJSONTo(stdout, items)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATE\tPRINCIPAL\tCALL\tREVIEWERS\tVOTES\tEXPIRES\tREASON")
		for _, it := range items {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s %s/%s\t%s\t%d/%d\t%s\t%s\n", it.ID, it.State, it.Principal, it.Method, it.Backend, it.Target,
				it.Reviewers, it.Approvals(), it.Quorum, it.Expires.UTC().Format(time.RFC3339), it.Reason)
		}
		return tw.Flush()
	case "show":
		it, err := src.get(ctx, id)
		if err != nil {
			return err
		}
		if *format == "json" {
			return writeJSONTo(stdout, it)
		}
		printItem(stdout, it)
		return nil
	case "approve", "deny":
		it, err := src.decide(ctx, id, sub == "approve", *comment)
		if err != nil {
			return err
		}
		if *format == "json" {
			return writeJSONTo(stdout, it)
		}
		fmt.Fprintf(stdout, "%s is %s (%d of %d approvals)\n", it.ID, it.State, it.Approvals(), it.Quorum)
		return nil
	}
	return fmt.Errorf("%w: %s", errUsage, approvalsUsage)
}

func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printItem writes an item for a person to read.
func printItem(w io.Writer, it *gateway.ApprovalItem) {
	fmt.Fprintf(w, "approval   %s\nstate      %s\nmode       %s\n", it.ID, it.State, it.Mode)
	fmt.Fprintf(w, "requested  by %s (session %s) at %s\n", it.Principal, it.Session, it.Created.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "expires    %s\n", it.Expires.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "call       %s %s on backend %s\n", it.Method, it.Target, it.Backend)
	fmt.Fprintf(w, "arguments  %s\n", it.Arguments)
	if it.Reason != "" {
		fmt.Fprintf(w, "reason     %s\n", it.Reason)
	}
	if len(it.Rules) > 0 {
		fmt.Fprintf(w, "rules      %s\n", strings.Join(it.Rules, ", "))
	}
	if it.Findings != "" {
		fmt.Fprintf(w, "findings   %s\n", it.Findings)
	}
	fmt.Fprintf(w, "reviewers  group %s, %d of %d approvals\n", it.Reviewers, it.Approvals(), it.Quorum)
	fmt.Fprintf(w, "binding    definition %s, arguments %s, policy %.12s\n", it.DefinitionHash, it.ArgumentsHash, it.PolicyVersion)
	if len(it.Related) > 0 {
		fmt.Fprintf(w, "WARNING    an identical call ended ambiguous before (its effect may have happened): %s\n", strings.Join(it.Related, ", "))
	}
	if it.Outcome != "" {
		fmt.Fprintf(w, "outcome    %s\n", it.Outcome)
	}
	for _, t := range it.Transitions {
		from := string(t.From)
		if from == "" {
			from = "-"
		}
		line := fmt.Sprintf("  %s  %s → %s by %s", t.Time.UTC().Format(time.RFC3339), from, t.To, t.Actor)
		if t.Comment != "" {
			line += ": " + t.Comment
		}
		fmt.Fprintln(w, line)
	}
}

// approvalSource is where the CLI reads and decides items.
type approvalSource interface {
	list(ctx context.Context, states []gateway.ApprovalState) ([]*gateway.ApprovalItem, error)
	get(ctx context.Context, id string) (*gateway.ApprovalItem, error)
	decide(ctx context.Context, id string, approve bool, comment string) (*gateway.ApprovalItem, error)
}

// dbSource works on the database directly. A decision is made as a
// reviewer account (--as), whose password is asked for: being able to
// write the database file does not make anyone a reviewer.
type dbSource struct {
	q      *approvals.Service
	users  gateway.UserStore
	as     string
	stdin  io.Reader
	stderr io.Writer
}

func (s *dbSource) list(ctx context.Context, states []gateway.ApprovalState) ([]*gateway.ApprovalItem, error) {
	return s.q.List(ctx, gateway.ApprovalFilter{States: states, Limit: 1000})
}

func (s *dbSource) get(ctx context.Context, id string) (*gateway.ApprovalItem, error) {
	it, err := s.q.Get(ctx, id)
	if errors.Is(err, gateway.ErrApprovalNotFound) {
		return nil, fmt.Errorf("no approval %s", id)
	}
	return it, err
}

func (s *dbSource) decide(ctx context.Context, id string, approve bool, comment string) (*gateway.ApprovalItem, error) {
	if s.as == "" {
		return nil, fmt.Errorf("%w: deciding against the database needs --as USER (a reviewer account: sallyport users add)", errUsage)
	}
	password, err := askPassword(s.stdin, s.stderr, s.as)
	if err != nil {
		return nil, err
	}
	users, err := auth.NewUsers(s.users)
	if err != nil {
		return nil, err
	}
	p, ok := users.Verify(s.as, password)
	if !ok {
		return nil, &exitError{code: 1, msg: fmt.Sprintf("%s: unknown reviewer account, disabled, or wrong password", s.as)}
	}
	it, err := s.q.Decide(ctx, id, p, approve, comment)
	var de *approvals.ErrDecision
	if errors.As(err, &de) {
		return nil, &exitError{code: 1, msg: de.Msg}
	}
	return it, err
}

// askPassword reads the reviewer's password: one line of stdin. On a
// terminal it asks, with echo off.
func askPassword(stdin io.Reader, stderr io.Writer, user string) (string, error) {
	if f, ok := stdin.(*os.File); ok {
		if restore, isTTY := noEcho(f.Fd()); isTTY {
			fmt.Fprintf(stderr, "password for %s: ", user)
			defer func() {
				restore()
				fmt.Fprintln(stderr)
			}()
		}
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", fmt.Errorf("deciding as %s needs its password on standard input", user)
	}
	return line, nil
}

// noEcho turns a terminal's echo off; isTTY is false (and nothing changes)
// when fd is not a terminal.
func noEcho(fd uintptr) (restore func(), isTTY bool) {
	var t syscall.Termios
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TCGETS, uintptr(unsafe.Pointer(&t))); errno != 0 {
		return nil, false
	}
	old := t
	t.Lflag &^= syscall.ECHO
	syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TCSETS, uintptr(unsafe.Pointer(&t)))
	return func() { syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TCSETS, uintptr(unsafe.Pointer(&old))) }, true
}

// apiSource works through a running gateway's API.
type apiSource struct {
	base, token string
	client      *http.Client
}

func (s *apiSource) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("gateway API: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("gateway API: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return &exitError{code: 1, msg: fmt.Sprintf("%s (HTTP %d)", e.Error, resp.StatusCode)}
		}
		return &exitError{code: 1, msg: "gateway API: " + resp.Status}
	}
	return json.Unmarshal(data, out)
}

func (s *apiSource) list(ctx context.Context, states []gateway.ApprovalState) ([]*gateway.ApprovalItem, error) {
	q := url.Values{}
	for _, st := range states {
		q.Add("state", string(st))
	}
	var out struct {
		Items []*gateway.ApprovalItem `json:"items"`
	}
	err := s.do(ctx, http.MethodGet, "/api/approvals?"+q.Encode(), nil, &out)
	return out.Items, err
}

func (s *apiSource) get(ctx context.Context, id string) (*gateway.ApprovalItem, error) {
	var it gateway.ApprovalItem
	if err := s.do(ctx, http.MethodGet, "/api/approvals/"+url.PathEscape(id), nil, &it); err != nil {
		return nil, err
	}
	return &it, nil
}

func (s *apiSource) decide(ctx context.Context, id string, approve bool, comment string) (*gateway.ApprovalItem, error) {
	verb := "deny"
	if approve {
		verb = "approve"
	}
	var it gateway.ApprovalItem
	if err := s.do(ctx, http.MethodPost, "/api/approvals/"+url.PathEscape(id)+"/"+verb, map[string]string{"comment": comment}, &it); err != nil {
		return nil, err
	}
	return &it, nil
}
