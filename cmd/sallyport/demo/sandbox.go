package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/mark3labs/mcp-go/mcp"
)

const (
	// maxReadBytes is the largest file read_file returns.
	maxReadBytes = 1 << 20
	// maxListEntries is the most entries list_files returns for one folder.
	maxListEntries = 1000
)

// Reasons a sandbox path is refused. Their text reaches the client, so they
// never include the sandbox's location on the host.
var (
	errOutsideSandbox = errors.New("the path is outside the sandbox")
	errNotFound       = errors.New("no such file or folder in the sandbox")
	errBadPath        = errors.New("the path contains a NUL byte")
	errNotRegular     = errors.New("not a regular file or folder")
)

// sandbox is the folder the file tools may read from.
type sandbox struct {
	// root is the absolute, symlink-free path of the folder.
	root string
}

func newSandbox(dir string) (*sandbox, error) {
	if dir == "" {
		return nil, errors.New("sandbox: a folder is required")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("sandbox %q: %w", dir, err)
	}
	root, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("sandbox %q: %w", dir, err)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("sandbox %q: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("sandbox %q: not a folder", dir)
	}
	return &sandbox{root: root}, nil
}

// resolve maps a client-supplied path, relative to the sandbox or absolute,
// to a path relative to the sandbox root that names no symlink and stays
// inside the root. The path is checked lexically first, so that a path
// outside the sandbox is refused without touching the file system, and again
// after filepath.EvalSymlinks, so that a symlink cannot lead outside.
func (s *sandbox) resolve(name string) (string, error) {
	if strings.ContainsRune(name, 0) {
		return "", errBadPath
	}
	p := name
	if !filepath.IsAbs(p) {
		p = filepath.Join(s.root, p)
	}
	p = filepath.Clean(p)
	if !within(s.root, p) {
		return "", errOutsideSandbox
	}
	real, err := filepath.EvalSymlinks(p)
	if errors.Is(err, fs.ErrNotExist) {
		return "", errNotFound
	}
	if err != nil {
		return "", errors.New("the path cannot be resolved")
	}
	if !within(s.root, real) {
		return "", errOutsideSandbox
	}
	rel, err := filepath.Rel(s.root, real)
	if err != nil {
		return "", errOutsideSandbox
	}
	return rel, nil
}

// within reports whether p is root or lies beneath it. Both must be clean
// absolute paths.
func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	if err != nil || filepath.IsAbs(rel) {
		return false
	}
	return rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// open opens rel, a path returned by resolve, through an os.Root, so that a
// symlink swapped in after resolve still cannot lead outside the sandbox.
// Anything but a regular file or a folder (a FIFO, a device, a socket) is
// refused before it is opened, since opening a FIFO blocks.
func (s *sandbox) open(rel string) (*os.File, fs.FileInfo, error) {
	root, err := os.OpenRoot(s.root)
	if err != nil {
		return nil, nil, fmt.Errorf("open sandbox: %w", err)
	}
	defer root.Close()
	li, err := root.Lstat(rel)
	if err != nil {
		return nil, nil, openError(err)
	}
	if !li.Mode().IsRegular() && !li.IsDir() {
		return nil, nil, errNotRegular
	}
	f, err := root.Open(rel)
	if err != nil {
		return nil, nil, openError(err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, openError(err)
	}
	if !fi.Mode().IsRegular() && !fi.IsDir() {
		f.Close()
		return nil, nil, errNotRegular
	}
	return f, fi, nil
}

// openError turns an error from os.Root into one fit for the client.
func openError(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errNotFound
	case errors.Is(err, fs.ErrPermission):
		return errors.New("permission denied")
	default:
		// os.Root reports an escape with an unexported error; anything else
		// here is unexpected, and refusing is the safe answer.
		return errOutsideSandbox
	}
}

// displayPath is the sandbox-relative path shown to the client.
func displayPath(rel string) string {
	if rel == "" {
		return "."
	}
	return filepath.ToSlash(rel)
}

var readFileTool = mcp.NewTool("read_file",
	mcp.WithToolTitle("Read a sandbox file"),
	mcp.WithDescription("Read a UTF-8 text file from the demo sandbox folder and return its contents. "+
		"Paths are relative to the sandbox (for example notes/q3-plan.md); paths that leave the sandbox, "+
		"through .., an absolute path or a symlink, are refused. Files larger than 1 MiB and binary files are refused."),
	mcp.WithString("path",
		mcp.Required(),
		mcp.MinLength(1),
		mcp.MaxLength(4096),
		mcp.Description("Path of the file, relative to the sandbox folder, for example notes/q3-plan.md."),
	),
	mcp.WithSchemaAdditionalProperties(false),
	mcp.WithRawOutputSchema([]byte(`{
  "type": "object",
  "properties": {
    "path": {"type": "string", "description": "Path of the file, relative to the sandbox, with / separators."},
    "size_bytes": {"type": "integer", "minimum": 0, "description": "Size of the file in bytes."},
    "content": {"type": "string", "description": "The file's contents."}
  },
  "required": ["path", "size_bytes", "content"],
  "additionalProperties": false
}`)),
	mcp.WithToolAnnotation(mcp.ToolAnnotation{
		Title:           "Read a sandbox file",
		ReadOnlyHint:    mcp.ToBoolPtr(true),
		DestructiveHint: mcp.ToBoolPtr(false),
		IdempotentHint:  mcp.ToBoolPtr(true),
		OpenWorldHint:   mcp.ToBoolPtr(false),
	}),
)

type readFileArgs struct {
	Path string `json:"path"`
}

type readFileResult struct {
	Path      string `json:"path"`
	SizeBytes int    `json:"size_bytes"`
	Content   string `json:"content"`
}

func (d *demo) readFile(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	var args readFileArgs
	if err := req.BindArguments(&args); err != nil {
		return toolError("read_file: invalid arguments: %v", err), nil
	}
	if args.Path == "" {
		return toolError("read_file: path is required"), nil
	}
	rel, err := d.sandbox.resolve(args.Path)
	if err != nil {
		return d.refusePath("read_file", args.Path, err), nil
	}
	f, fi, err := d.sandbox.open(rel)
	if err != nil {
		return d.refusePath("read_file", args.Path, err), nil
	}
	defer f.Close()
	if fi.IsDir() {
		return toolError("read_file: %q is a folder; use list_files", args.Path), nil
	}
	if fi.Size() > maxReadBytes {
		return toolError("read_file: %q is %d bytes, larger than the 1 MiB limit", args.Path, fi.Size()), nil
	}
	// The file may grow after Stat; never read more than the limit.
	data, err := io.ReadAll(io.LimitReader(f, maxReadBytes+1))
	if err != nil {
		d.log.Error("read failed", logKeyTool, "read_file", logKeyPath, args.Path, logKeyError, err)
		return toolError("read_file: %q could not be read", args.Path), nil
	}
	if len(data) > maxReadBytes {
		return toolError("read_file: %q is larger than the 1 MiB limit", args.Path), nil
	}
	if !utf8.Valid(data) {
		return toolError("read_file: %q is not UTF-8 text", args.Path), nil
	}
	out := readFileResult{Path: displayPath(rel), SizeBytes: len(data), Content: string(data)}
	return mcp.NewToolResultStructured(out, out.Content), nil
}

// refusePath logs a refused path and returns the tool error for it.
func (d *demo) refusePath(tool, path string, reason error) *mcp.CallToolResult {
	d.log.Warn("path refused", logKeyTool, tool, logKeyPath, path, logKeyReason, reason.Error())
	return toolError("%s: %q refused: %v", tool, path, reason)
}

var listFilesTool = mcp.NewTool("list_files",
	mcp.WithToolTitle("List a sandbox folder"),
	mcp.WithDescription("List the files and folders in a folder of the demo sandbox, sorted by name. "+
		"Without a path, lists the top of the sandbox. Symlinks are listed but not followed. "+
		"At most 1000 entries are returned."),
	mcp.WithString("path",
		mcp.MaxLength(4096),
		mcp.Description("Folder to list, relative to the sandbox folder, for example notes. Defaults to the top of the sandbox."),
	),
	mcp.WithSchemaAdditionalProperties(false),
	mcp.WithRawOutputSchema([]byte(`{
  "type": "object",
  "properties": {
    "path": {"type": "string", "description": "The folder listed, relative to the sandbox, with / separators (. for the top)."},
    "entries": {
      "type": "array",
      "description": "The folder's entries, sorted by name.",
      "items": {
        "type": "object",
        "properties": {
          "name": {"type": "string", "description": "Name of the entry."},
          "path": {"type": "string", "description": "Path of the entry relative to the sandbox, usable with read_file or list_files."},
          "type": {"type": "string", "enum": ["file", "folder", "symlink", "other"], "description": "Kind of entry."},
          "size_bytes": {"type": "integer", "minimum": 0, "description": "Size in bytes; files only."}
        },
        "required": ["name", "path", "type"],
        "additionalProperties": false
      }
    },
    "truncated": {"type": "boolean", "description": "True when the folder holds more entries than were returned."}
  },
  "required": ["path", "entries", "truncated"],
  "additionalProperties": false
}`)),
	mcp.WithToolAnnotation(mcp.ToolAnnotation{
		Title:           "List a sandbox folder",
		ReadOnlyHint:    mcp.ToBoolPtr(true),
		DestructiveHint: mcp.ToBoolPtr(false),
		IdempotentHint:  mcp.ToBoolPtr(true),
		OpenWorldHint:   mcp.ToBoolPtr(false),
	}),
)

type listFilesArgs struct {
	Path string `json:"path"`
}

type listEntry struct {
	Name      string `json:"name"`
	Path      string `json:"path"`
	Type      string `json:"type"`
	SizeBytes *int64 `json:"size_bytes,omitempty"`
}

type listFilesResult struct {
	Path      string      `json:"path"`
	Entries   []listEntry `json:"entries"`
	Truncated bool        `json:"truncated"`
}

func (d *demo) listFiles(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	var args listFilesArgs
	if err := req.BindArguments(&args); err != nil {
		return toolError("list_files: invalid arguments: %v", err), nil
	}
	if args.Path == "" {
		args.Path = "."
	}
	rel, err := d.sandbox.resolve(args.Path)
	if err != nil {
		return d.refusePath("list_files", args.Path, err), nil
	}
	f, fi, err := d.sandbox.open(rel)
	if err != nil {
		return d.refusePath("list_files", args.Path, err), nil
	}
	defer f.Close()
	if !fi.IsDir() {
		return toolError("list_files: %q is a file; use read_file", args.Path), nil
	}
	dirEntries, err := f.ReadDir(-1)
	if err != nil {
		d.log.Error("list failed", logKeyTool, "list_files", logKeyPath, args.Path, logKeyError, err)
		return toolError("list_files: %q could not be listed", args.Path), nil
	}
	slices.SortFunc(dirEntries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	out := listFilesResult{Path: displayPath(rel), Entries: []listEntry{}}
	if len(dirEntries) > maxListEntries {
		dirEntries, out.Truncated = dirEntries[:maxListEntries], true
	}
	var text strings.Builder
	for _, e := range dirEntries {
		entry := listEntry{Name: e.Name(), Path: displayPath(filepath.Join(rel, e.Name()))}
		switch t := e.Type(); {
		case t.IsRegular():
			entry.Type = "file"
			if info, err := e.Info(); err == nil {
				size := info.Size()
				entry.SizeBytes = &size
			}
		case t.IsDir():
			entry.Type = "folder"
		case t&fs.ModeSymlink != 0:
			entry.Type = "symlink"
		default:
			entry.Type = "other"
		}
		out.Entries = append(out.Entries, entry)
		switch {
		case entry.SizeBytes != nil:
			fmt.Fprintf(&text, "%-7s %s (%d bytes)\n", entry.Type, entry.Path, *entry.SizeBytes)
		case entry.Type == "folder":
			fmt.Fprintf(&text, "%-7s %s/\n", entry.Type, entry.Path)
		default:
			fmt.Fprintf(&text, "%-7s %s\n", entry.Type, entry.Path)
		}
	}
	if len(out.Entries) == 0 {
		text.WriteString("(empty folder)\n")
	}
	if out.Truncated {
		fmt.Fprintf(&text, "(only the first %d entries are listed)\n", maxListEntries)
	}
	return mcp.NewToolResultStructured(out, text.String()), nil
}
