package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/sallyport/sallyport/dlp"
	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

func runDLP(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: dlp needs a subcommand: scan or detectors", errUsage)
	}
	switch args[0] {
	case "scan":
		return runDLPScan(args[1:], stdin, stdout)
	case "detectors":
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DETECTOR\tCATEGORY\tWHAT IT FINDS")
		for _, d := range dlp.Detectors() {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", d.ID, d.Category, d.Description)
		}
		return tw.Flush()
	}
	return fmt.Errorf("%w: unknown dlp subcommand %q", errUsage, args[0])
}

// scanOutput is `dlp scan --format json`'s document.
type scanOutput struct {
	// Mode is "message" for a JSON-RPC message, "text" otherwise.
	Mode     string        `json:"mode"`
	Findings []scanFinding `json:"findings"`
	// Blocked is the refusal the gateway would answer with (message mode).
	Blocked string `json:"blocked,omitempty"`
	// Message is the message as the gateway would forward it (message
	// mode, not blocked).
	Message json.RawMessage `json:"message,omitempty"`
}

type scanFinding struct {
	Detector   string  `json:"detector"`
	Category   string  `json:"category"`
	Path       string  `json:"path,omitempty"`
	InKey      bool    `json:"in_key,omitempty"`
	Line       int     `json:"line,omitempty"`
	Column     int     `json:"column,omitempty"`
	Offset     int     `json:"offset"`
	Length     int     `json:"length"`
	Confidence float64 `json:"confidence"`
	Encoding   string  `json:"encoding,omitempty"`
	Action     string  `json:"action,omitempty"`
	// Value is the matched text, masked unless --show-values.
	Value string `json:"value"`
}

func runDLPScan(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := newFlags("dlp scan")
	format := fs.String("format", "text", "text or json")
	cfgPath := fs.String("c", "", "configuration file whose dlp section to use (default: the built-in defaults)")
	fs.StringVar(cfgPath, "config", "", "same as -c")
	direction := fs.String("direction", "", "client_to_backend or backend_to_client (default: from the message)")
	backend := fs.String("backend", "", "the backend id the message goes to or comes from, for rules")
	tool := fs.String("tool", "", "the tool, prompt or resource the message is about, for rules (default: from the message)")
	show := fs.Bool("show-values", false, "print matched values in the clear (default: masked)")
	fail := fs.Bool("fail", false, "exit with status 3 when there are findings")
	// Flags may come before or after FILE.
	var files []string
	for rest := args; ; {
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		files, rest = append(files, fs.Arg(0)), fs.Args()[1:]
	}
	if *format != "text" && *format != "json" {
		return fmt.Errorf("%w: --format must be text or json", errUsage)
	}
	if len(files) > 1 {
		return fmt.Errorf("%w: dlp scan takes one FILE (or - for stdin)", errUsage)
	}
	var data []byte
	var err error
	if name := append(files, "-")[0]; name == "-" {
		data, err = io.ReadAll(io.LimitReader(stdin, 1<<30))
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return err
	}
	cfg := config.DLP{MaxDecodeDepth: config.DefaultDLPMaxDecodeDepth, MaxDecodedBytes: config.DefaultDLPMaxDecodedBytes}
	if *cfgPath != "" {
		c, err := config.Load(*cfgPath)
		if err != nil {
			return err
		}
		if err := c.Validate(); err != nil {
			return err
		}
		cfg = c.DLP
	}
	stage, err := dlp.NewStage(cfg, nil)
	if err != nil {
		return err
	}
	var out scanOutput
	trimmed := bytes.TrimSpace(data)
	if m, derr := jsonrpc.Decode(trimmed, jsonrpc.Limits{MaxBytes: len(trimmed) + 1, MaxDepth: 256}); derr == nil && len(trimmed) > 0 && trimmed[0] == '{' {
		out, err = scanMessage(stage, m, *direction, *backend, *tool, *show)
		if err != nil {
			return err
		}
	} else {
		ms, err := stage.Scanner().Scan(data)
		if err != nil {
			return err
		}
		out.Mode = "text"
		cats := map[string]string{}
		for _, d := range dlp.Detectors() {
			cats[d.ID] = d.Category
		}
		for _, m := range ms {
			line, col := lineCol(data, m.Offset)
			out.Findings = append(out.Findings, scanFinding{Detector: m.Detector, Category: cats[m.Detector], Line: line, Column: col,
				Offset: m.Offset, Length: m.Length, Confidence: m.Confidence, Encoding: m.Encoding,
				Value: shown(string(data[m.Offset:m.Offset+m.Length]), *show)})
		}
	}
	if out.Findings == nil {
		out.Findings = []scanFinding{}
	}
	if *format == "json" {
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		printFindings(stdout, out)
	}
	if *fail && len(out.Findings) > 0 {
		return &exitError{code: 3}
	}
	return nil
}

// scanMessage runs the DLP stage on m as the gateway would.
func scanMessage(stage *dlp.Stage, m *jsonrpc.Message, direction, backend, tool string, show bool) (scanOutput, error) {
	x := gateway.NewExchange(nil)
	x.Message, x.Method, x.Backend = m, m.Method, backend
	switch {
	case m.IsResponse():
		x.Direction, x.Kind = gateway.BackendToClient, gateway.KindResult
	case m.IsNotification():
		x.Direction, x.Kind = gateway.BackendToClient, gateway.KindNotification
	default:
		x.Direction, x.Kind = gateway.ClientToBackend, gateway.KindRequest
	}
	if direction != "" {
		var ok bool
		if x.Direction, ok = gateway.ParseDirection(direction); !ok {
			return scanOutput{}, fmt.Errorf("%w: --direction must be client_to_backend or backend_to_client", errUsage)
		}
	}
	x.Target = tool
	if tool == "" {
		name, _ := jsonrpc.Member(m.Params, "name")
		if x.Target, _ = jsonrpc.Unquote(name); x.Target == "" {
			uri, _ := jsonrpc.Member(m.Params, "uri")
			x.Target, _ = jsonrpc.Unquote(uri)
		}
	}
	x.Arguments, _ = jsonrpc.Member(m.Params, "arguments")
	// The values, for display, before the stage redacts them: the same
	// scanner finds the same spans.
	locs, _ := stage.Scanner().ScanMessage(m)
	values := map[string]string{}
	for i := range locs {
		values[fmt.Sprintf("%s|%d|%d", locs[i].Path, locs[i].Offset, locs[i].Length)] = locs[i].Value()
	}
	out := scanOutput{Mode: "message"}
	if err := stage.Inspect(x); err != nil {
		out.Blocked = gateway.RPCError(err).Message
	} else {
		out.Message = x.Message.Encode()
	}
	for _, f := range x.Findings {
		out.Findings = append(out.Findings, scanFinding{Detector: f.Detector, Category: f.Category, Path: f.Path, InKey: f.InKey,
			Offset: f.Offset, Length: f.Length, Confidence: f.Confidence, Encoding: f.Encoding, Action: f.Action,
			Value: shown(values[fmt.Sprintf("%s|%d|%d", f.Path, f.Offset, f.Length)], show)})
	}
	return out, nil
}

func shown(v string, show bool) string {
	if show {
		return v
	}
	return dlp.Mask(v)
}

func lineCol(data []byte, off int) (int, int) {
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	return line, off - bytes.LastIndexByte(data[:off], '\n')
}

func printFindings(w io.Writer, out scanOutput) {
	if len(out.Findings) == 0 {
		fmt.Fprintln(w, "no findings")
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		if out.Mode == "message" {
			fmt.Fprintln(tw, "DETECTOR\tPATH\tSPAN\tCONFIDENCE\tENCODING\tACTION\tVALUE")
		} else {
			fmt.Fprintln(tw, "DETECTOR\tLINE:COL\tSPAN\tCONFIDENCE\tENCODING\tVALUE")
		}
		for _, f := range out.Findings {
			enc := f.Encoding
			if enc == "" {
				enc = "-"
			}
			if out.Mode == "message" {
				p := f.Path
				if f.InKey {
					p += " (name)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d+%d\t%.2f\t%s\t%s\t%s\n", f.Detector, p, f.Offset, f.Length, f.Confidence, enc, f.Action, f.Value)
			} else {
				fmt.Fprintf(tw, "%s\t%d:%d\t%d+%d\t%.2f\t%s\t%s\n", f.Detector, f.Line, f.Column, f.Offset, f.Length, f.Confidence, enc, f.Value)
			}
		}
		tw.Flush()
		fmt.Fprintf(w, "%d finding(s)\n", len(out.Findings))
	}
	switch {
	case out.Blocked != "":
		fmt.Fprintf(w, "the gateway would refuse this message: %s\n", out.Blocked)
	case out.Mode == "message":
		fmt.Fprintf(w, "the gateway would forward:\n%s\n", out.Message)
	}
}
