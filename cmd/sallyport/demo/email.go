package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/mail"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
)

const (
	// maxRecipients bounds to and cc, each.
	maxRecipients = 50
	// maxSubjectLen is the longest subject accepted, in bytes (RFC 5322's
	// line limit).
	maxSubjectLen = 998
	// maxBodyBytes is the largest body accepted.
	maxBodyBytes = 10 << 20
)

// outbox is the JSONL file send_email appends to. Appends are serialised, so
// every message is one whole line.
type outbox struct {
	path string
	mu   sync.Mutex
}

func newOutbox(path string) (*outbox, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("outbox %q: %w", path, err)
	}
	fi, err := os.Stat(filepath.Dir(abs))
	if err != nil {
		return nil, fmt.Errorf("outbox %q: %w", path, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("outbox %q: %s is not a folder", path, filepath.Dir(abs))
	}
	return &outbox{path: abs}, nil
}

// outboxMessage is one line of the outbox.
type outboxMessage struct {
	ID      string   `json:"id"`
	Time    string   `json:"time"`
	To      []string `json:"to"`
	CC      []string `json:"cc"`
	Subject string   `json:"subject"`
	Body    string   `json:"body"`
}

// append writes m as one JSON line.
func (o *outbox) append(m outboxMessage) error {
	line, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("append to outbox: %w", err)
	}
	line = append(line, '\n')

	o.mu.Lock()
	defer o.mu.Unlock()
	f, err := o.open()
	if err != nil {
		return fmt.Errorf("append to outbox: %w", err)
	}
	if _, err := f.Write(line); err != nil {
		f.Close()
		return fmt.Errorf("append to outbox: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("append to outbox: %w", err)
	}
	return nil
}

// open opens the outbox for appending, creating it with mode 0600. The
// default outbox lives in the shared temporary folder, so open refuses a
// symlink (another user could point it at a file of ours), anything but a
// regular file, and, outside Windows, a file that others may read or write.
func (o *outbox) open() (*os.File, error) {
	if li, err := os.Lstat(o.path); err == nil && li.Mode()&fs.ModeSymlink != 0 {
		return nil, errors.New("the outbox is a symlink; refusing to follow it")
	}
	f, err := os.OpenFile(o.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil {
		var li fs.FileInfo
		li, err = os.Lstat(o.path)
		switch {
		case err != nil:
		case !fi.Mode().IsRegular():
			err = errors.New("the outbox is not a regular file")
		case !os.SameFile(fi, li):
			err = errors.New("the outbox was replaced while it was being opened")
		case runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0:
			err = fmt.Errorf("the outbox is accessible to other users (mode %v); make it 0600", fi.Mode().Perm())
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

var sendEmailTool = mcp.NewTool("send_email",
	mcp.WithToolTitle("Send an email"),
	mcp.WithDescription("Send an email message. This demo server delivers nothing: it validates the addresses "+
		"and records the message in a local outbox file, then returns the message ID. "+
		"Addresses are bare addresses such as ana.ruiz@example.com, without display names."),
	mcp.WithArray("to",
		mcp.Required(),
		mcp.MinItems(1),
		mcp.MaxItems(maxRecipients),
		mcp.WithStringItems(mcp.MinLength(3), mcp.MaxLength(254)),
		mcp.Description("Recipients' email addresses, at least one."),
	),
	mcp.WithArray("cc",
		mcp.MaxItems(maxRecipients),
		mcp.WithStringItems(mcp.MinLength(3), mcp.MaxLength(254)),
		mcp.Description("Email addresses to copy the message to."),
	),
	mcp.WithString("subject",
		mcp.Required(),
		mcp.MinLength(1),
		mcp.MaxLength(maxSubjectLen),
		mcp.Description("Subject line; a single line of text."),
	),
	mcp.WithString("body",
		mcp.Required(),
		mcp.MaxLength(maxBodyBytes),
		mcp.Description("Plain-text body of the message."),
	),
	mcp.WithSchemaAdditionalProperties(false),
	mcp.WithRawOutputSchema([]byte(`{
  "type": "object",
  "properties": {
    "message_id": {"type": "string", "description": "ID of the recorded message, for example msg_0123456789abcdef."},
    "recipients": {"type": "integer", "minimum": 1, "description": "Number of to and cc addresses."},
    "recorded_at": {"type": "string", "format": "date-time", "description": "When the message was recorded (RFC 3339, UTC)."}
  },
  "required": ["message_id", "recipients", "recorded_at"],
  "additionalProperties": false
}`)),
	mcp.WithToolAnnotation(mcp.ToolAnnotation{
		Title:           "Send an email",
		ReadOnlyHint:    mcp.ToBoolPtr(false),
		DestructiveHint: mcp.ToBoolPtr(false),
		IdempotentHint:  mcp.ToBoolPtr(false),
		OpenWorldHint:   mcp.ToBoolPtr(true),
	}),
)

type sendEmailArgs struct {
	To      []string `json:"to"`
	CC      []string `json:"cc"`
	Subject string   `json:"subject"`
	Body    string   `json:"body"`
}

type sendEmailResult struct {
	MessageID  string `json:"message_id"`
	Recipients int    `json:"recipients"`
	RecordedAt string `json:"recorded_at"`
}

func (d *demo) sendEmail(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	var args sendEmailArgs
	if err := req.BindArguments(&args); err != nil {
		return toolError("send_email: invalid arguments: %v", err), nil
	}
	if err := args.validate(); err != nil {
		return toolError("send_email: %v", err), nil
	}
	msg := outboxMessage{
		ID:      newMessageID(),
		Time:    time.Now().UTC().Format(time.RFC3339Nano),
		To:      args.To,
		CC:      args.CC,
		Subject: args.Subject,
		Body:    args.Body,
	}
	if msg.CC == nil {
		msg.CC = []string{}
	}
	if err := d.outbox.append(msg); err != nil {
		d.log.Error("outbox write failed", logKeyTool, "send_email", logKeyError, err)
		return toolError("send_email: the message could not be recorded: %v", err), nil
	}
	recipients := len(msg.To) + len(msg.CC)
	// Addresses and content are personal data: log only the ID and a count.
	d.log.Info("email recorded in outbox", logKeyMessageID, msg.ID, logKeyRecipients, recipients)
	out := sendEmailResult{MessageID: msg.ID, Recipients: recipients, RecordedAt: msg.Time}
	text := fmt.Sprintf("Recorded message %s for %d recipient(s) in the demo outbox. Nothing was sent: this is a demo server.",
		msg.ID, recipients)
	return mcp.NewToolResultStructured(out, text), nil
}

// validate checks the addresses, subject and body.
func (a *sendEmailArgs) validate() error {
	if len(a.To) == 0 {
		return errors.New("to must name at least one recipient")
	}
	if len(a.To) > maxRecipients || len(a.CC) > maxRecipients {
		return fmt.Errorf("to and cc may each name at most %d recipients", maxRecipients)
	}
	for _, field := range []struct {
		name  string
		addrs []string
	}{{"to", a.To}, {"cc", a.CC}} {
		for i, addr := range field.addrs {
			if err := validateAddress(addr); err != nil {
				return fmt.Errorf("%s[%d]: %w", field.name, i, err)
			}
		}
	}
	if strings.TrimSpace(a.Subject) == "" {
		return errors.New("subject is required")
	}
	if len(a.Subject) > maxSubjectLen {
		return fmt.Errorf("subject is longer than %d bytes", maxSubjectLen)
	}
	if strings.ContainsAny(a.Subject, "\r\n") {
		return errors.New("subject must be a single line")
	}
	if len(a.Body) > maxBodyBytes {
		return fmt.Errorf("body is larger than %d bytes", maxBodyBytes)
	}
	return nil
}

// validateAddress accepts a bare RFC 5322 address with a dotted domain, such
// as ana.ruiz@example.com, and nothing else: no display name, no list, no
// surrounding space. Policies can then match addresses as plain strings.
func validateAddress(s string) error {
	parsed, err := mail.ParseAddress(s)
	if err != nil || parsed.Name != "" || parsed.Address != s {
		return fmt.Errorf("%q is not a bare email address like ana.ruiz@example.com", s)
	}
	_, domain, _ := strings.Cut(s, "@")
	if !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return fmt.Errorf("%q does not have a valid domain", s)
	}
	return nil
}

// newMessageID returns a random message ID such as msg_0123456789abcdef.
func newMessageID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	return "msg_" + hex.EncodeToString(b[:])
}
