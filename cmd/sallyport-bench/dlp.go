package main

// The dlp mode: Sallyport's DLP scanner against gitleaks v8.30.1, the
// benchmark peer (a separately installed binary, never imported).
//
//	sallyport-bench dlp --gitleaks PATH --corpus dlp/testdata/corpus --mb 64
//
// It measures, in one run:
//
//   - throughput: a ~64 MiB input built from the corpus texts (repeated
//     and shuffled with a fixed seed, one text per line, in a temporary
//     file). Sallyport's scanner scans each text in process with
//     GOMAXPROCS=1; gitleaks scans the file (`gitleaks dir FILE`) with
//     GOMAXPROCS=1 in its environment, timed from its start to its exit.
//     Both are per core, best of --runs, in MB/s (10^6 bytes of the file
//     per second);
//   - recall: per secret detector both tools have (gitleaksRules maps
//     gitleaks' rule ids to ours), the share of the corpus's expected
//     findings each tool found, gitleaks scanning one file per sample;
//     and what each reported on the negatives (samples that expect
//     nothing);
//   - the DLP stage's added latency on a 1 KiB tools/call result: the
//     compiled chain with and without the stage (configuration defaults
//     and the demo's rule), calls interleaved, p50 of each.
//
// The goals are printed as PASS/MISS and never fail the run; the exit
// status is 1 when something could not be measured (gitleaks failing, an
// unreadable corpus), 2 for bad flags.

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sallyport/sallyport/dlp"
	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// Goals of the DLP issue.
const (
	goalDLPMBPerSec      = 300.0 // Sallyport's scanner, per core
	goalDLPOverGitleaks  = 5.0   // Sallyport's MB/s over gitleaks'
	goalDLPAddedP50US    = 20.0  // p50 the DLP stage adds to a 1 KiB message
	gitleaksVersion      = "v8.30.1"
	unitMBPerSec         = "MB/s"
	unitDetectors        = "detectors"
	dlpMaxDecodeDepthArg = "2" // gitleaks --max-decode-depth, as Sallyport's default
)

// gitleaksRules maps gitleaks v8.30.1's rule ids (its default
// config/gitleaks.toml) to the Sallyport detector that finds the same
// secrets. Several gitleaks rules can map to one detector. Sallyport's
// aws-secret-access-key and database-url-password, and its PII
// detectors, have no gitleaks rule; gitleaks' other ~190 rules have no
// Sallyport detector.
var gitleaksRules = map[string]string{
	"aws-access-token":             "aws-access-token",
	"github-pat":                   "github-pat",
	"github-oauth":                 "github-oauth",
	"github-app-token":             "github-app-token", // ghu_ and ghs_
	"github-refresh-token":         "github-refresh-token",
	"github-fine-grained-pat":      "github-fine-grained-pat",
	"gitlab-pat":                   "gitlab-pat",
	"gitlab-pat-routable":          "gitlab-pat",
	"slack-bot-token":              "slack-bot-token",
	"slack-legacy-bot-token":       "slack-bot-token",
	"slack-user-token":             "slack-user-token",
	"slack-legacy-token":           "slack-legacy-token", // xoxo-, xoxs-
	"slack-legacy-workspace-token": "slack-legacy-token", // xoxa-, xoxr-
	"slack-webhook-url":            "slack-webhook-url",
	"stripe-access-token":          "stripe-access-token",
	"gcp-api-key":                  "gcp-api-key",
	"openai-api-key":               "openai-api-key",
	"anthropic-api-key":            "anthropic-api-key",
	"anthropic-admin-api-key":      "anthropic-api-key",
	"npm-access-token":             "npm-access-token",
	"private-key":                  "private-key",
	"jwt":                          "jwt",
	"jwt-base64":                   "jwt",
	"generic-api-key":              "generic-api-key",
}

// sharedDetectors are the Sallyport detectors gitleaksRules maps to, in
// the order of Sallyport's detector table.
func sharedDetectors() []string {
	var out []string
	for _, d := range dlp.Detectors() {
		for _, ours := range gitleaksRules {
			if ours == d.ID {
				out = append(out, d.ID)
				break
			}
		}
	}
	return out
}

type dlpOptions struct {
	gitleaks   string
	corpus     string
	mb         int
	gitleaksMB int // gitleaks' throughput on this prefix of the input (0: all of it)
	runs       int
	seed       uint64
	stageCalls int
	out        string
	keep       string // keep the generated input here ("": a temporary folder)
}

// DLPReport is what the dlp mode measured; it is what --out holds.
type DLPReport struct {
	Tool     string    `json:"tool"`
	Started  time.Time `json:"started"`
	Note     string    `json:"note"`
	Host     Host      `json:"host"`
	Config   DLPConfig `json:"config"`
	Gitleaks *PeerInfo `json:"gitleaks,omitempty"`

	Sallyport       *ScanResult       `json:"sallyport_throughput"`
	GitleaksScan    *ScanResult       `json:"gitleaks_throughput,omitempty"`
	ThroughputRatio *float64          `json:"sallyport_over_gitleaks_mb_per_sec"`
	Recall          []DetectorRecall  `json:"recall"`
	OursOnly        []DetectorRecall  `json:"recall_sallyport_only_detectors"`
	Negatives       *NegativeFindings `json:"negatives"`
	Stage           *DLPStageResult   `json:"stage_1kib"`
	RuleMapping     map[string]string `json:"gitleaks_rule_mapping"`
	Goals           []Goal            `json:"goals"`
	Errors          []string          `json:"errors,omitempty"`
}

// DLPConfig records what shaped the figures.
type DLPConfig struct {
	Corpus       string `json:"corpus"`
	Samples      int    `json:"samples"`
	Negatives    int    `json:"negative_samples"`
	InputBytes   int64  `json:"input_bytes"`
	InputTexts   int    `json:"input_texts"`
	Runs         int    `json:"runs"`
	Seed         uint64 `json:"seed"`
	StageCalls   int    `json:"stage_calls"`
	GitleaksArgs string `json:"gitleaks_args,omitempty"`
}

// PeerInfo names the gitleaks binary measured.
type PeerInfo struct {
	Path    string `json:"path"`
	Version string `json:"version"` // from the binary's Go build information
	Warning string `json:"warning,omitempty"`
}

// ScanResult is one tool's throughput on the generated input.
type ScanResult struct {
	Bytes       int64     `json:"bytes"`
	Seconds     []float64 `json:"seconds"` // each run
	BestSeconds float64   `json:"best_seconds"`
	MBPerSec    float64   `json:"mb_per_sec"` // bytes / best / 10^6
	Findings    int       `json:"findings"`
	ScanErrors  int       `json:"scan_errors,omitempty"` // texts whose scan hit a limit (Sallyport)
	Error       string    `json:"error,omitempty"`
}

// DetectorRecall is one detector's recall on the corpus's positives.
type DetectorRecall struct {
	Detector      string   `json:"detector"`
	GitleaksRules []string `json:"gitleaks_rules,omitempty"`
	Expected      int      `json:"expected"`
	Sallyport     int      `json:"sallyport_found"`
	Gitleaks      *int     `json:"gitleaks_found,omitempty"`
	SallyportRate float64  `json:"sallyport_recall"`
	GitleaksRate  *float64 `json:"gitleaks_recall,omitempty"`
	// Misses name the samples a tool missed (at most a few).
	SallyportMissed []string `json:"sallyport_missed,omitempty"`
	GitleaksMissed  []string `json:"gitleaks_missed,omitempty"`
}

// NegativeFindings counts what each tool reported on the samples that
// expect nothing, by detector (gitleaks' rules mapped; unmapped rules
// under their own id, prefixed "gitleaks:").
type NegativeFindings struct {
	Samples          int            `json:"samples"`
	Sallyport        map[string]int `json:"sallyport"`
	Gitleaks         map[string]int `json:"gitleaks,omitempty"`
	SallyportSamples int            `json:"sallyport_samples_with_findings"`
	GitleaksSamples  *int           `json:"gitleaks_samples_with_findings,omitempty"`
	SallyportShared  int            `json:"sallyport_findings_shared_detectors"`
	GitleaksShared   *int           `json:"gitleaks_findings_shared_detectors,omitempty"`
	SallyportIDs     []string       `json:"sallyport_examples,omitempty"`
	GitleaksIDs      []string       `json:"gitleaks_examples,omitempty"`
}

// DLPStageResult is the DLP stage on a 1 KiB result, against the bare
// chain, calls interleaved.
type DLPStageResult struct {
	MessageBytes int      `json:"message_bytes"`
	Findings     int      `json:"findings"`
	Baseline     *Summary `json:"baseline"`
	DLP          *Summary `json:"dlp"`
	AddedP50US   *float64 `json:"added_p50_us"`
	AddedMeanUS  *float64 `json:"added_mean_us"`
	Error        string   `json:"error,omitempty"`
}

func parseDLPOptions(args []string, stderr io.Writer) (dlpOptions, error) {
	root := repoRoot()
	fs := flag.NewFlagSet("sallyport-bench dlp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opt dlpOptions
	fs.StringVar(&opt.gitleaks, "gitleaks", "", "gitleaks "+gitleaksVersion+" binary (empty: Sallyport only, the comparisons not measured)")
	fs.StringVar(&opt.corpus, "corpus", filepath.Join(root, "dlp", "testdata", "corpus"), "folder of the labelled corpus (*.jsonl)")
	fs.IntVar(&opt.mb, "mb", 64, "size of the throughput input, MiB")
	fs.IntVar(&opt.gitleaksMB, "gitleaks-mb", 0, "time gitleaks on the first this many MiB of the input only (0: all of it); gitleaks scans a corpus this dense at well under 1 MB/s")
	fs.IntVar(&opt.runs, "runs", 3, "timed runs of each tool on the input (the best counts)")
	fs.Uint64Var(&opt.seed, "seed", 1, "seed of the input's shuffling")
	fs.IntVar(&opt.stageCalls, "stage-calls", 20000, "measured calls of the 1 KiB stage measurement, per chain")
	fs.StringVar(&opt.out, "out", "bench-dlp.json", "JSON results file")
	fs.StringVar(&opt.keep, "keep", "", "write the generated input and gitleaks' reports to this folder and keep them")
	if err := fs.Parse(args); err != nil {
		return opt, err
	}
	switch {
	case fs.NArg() > 0:
		return opt, fmt.Errorf("unexpected arguments: %q", fs.Args())
	case opt.mb < 1 || opt.mb > 4096:
		return opt, errors.New("--mb: 1 to 4096")
	case opt.gitleaksMB < 0:
		return opt, errors.New("--gitleaks-mb must be at least 0")
	case opt.runs < 1:
		return opt, errors.New("--runs must be at least 1")
	case opt.stageCalls < 0:
		return opt, errors.New("--stage-calls must be at least 0")
	}
	return opt, absPaths(&opt.gitleaks, &opt.corpus, &opt.out, &opt.keep)
}

// runDLP is the dlp mode's main.
func runDLP(args []string, stdout, stderr io.Writer) int {
	opt, err := parseDLPOptions(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "sallyport-bench dlp:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := measureDLP(ctx, opt, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "sallyport-bench dlp:", err)
		return 1
	}
	printDLPReport(stdout, rep)
	if err := writeJSON(opt.out, rep); err != nil {
		fmt.Fprintln(stderr, "sallyport-bench dlp:", err)
		return 1
	}
	fmt.Fprintf(stdout, "\nresults written to %s\n", opt.out)
	if len(rep.Errors) > 0 {
		fmt.Fprintln(stderr, "sallyport-bench dlp: some measurements failed; see above")
		return 1
	}
	return 0
}

// corpusSample is one line of the corpus.
type corpusSample struct {
	ID      string         `json:"id"`
	Context string         `json:"context"`
	Text    string         `json:"text"`
	Expect  []corpusExpect `json:"expect"`
}

type corpusExpect struct {
	Detector string `json:"detector"`
	Value    string `json:"value"`
	Encoding string `json:"encoding,omitempty"`
}

// loadCorpus reads every *.jsonl file of dir, in name order.
func loadCorpus(dir string) ([]corpusSample, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("--corpus: no *.jsonl files in %s", dir)
	}
	slices.Sort(files)
	var out []corpusSample
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for i, line := range bytes.Split(data, []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			var s corpusSample
			if err := json.Unmarshal(line, &s); err != nil {
				return nil, fmt.Errorf("%s:%d: %w", f, i+1, err)
			}
			if s.Text == "" {
				continue
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// buildInput returns about size bytes of corpus texts, shuffled with seed
// and repeated, each followed by a newline, and each text's span.
func buildInput(samples []corpusSample, size int, seed uint64) ([]byte, [][2]int) {
	r := rand.New(rand.NewPCG(seed, 0xd1a9))
	buf := make([]byte, 0, size+64<<10)
	var spans [][2]int
	for len(buf) < size {
		for _, i := range r.Perm(len(samples)) {
			s := len(buf)
			buf = append(buf, samples[i].Text...)
			spans = append(spans, [2]int{s, len(buf)})
			buf = append(buf, '\n')
			if len(buf) >= size {
				break
			}
		}
	}
	return buf, spans
}

func measureDLP(ctx context.Context, opt dlpOptions, progress io.Writer) (*DLPReport, error) {
	logf := func(format string, args ...any) { fmt.Fprintf(progress, "sallyport-bench dlp: "+format+"\n", args...) }
	samples, err := loadCorpus(opt.corpus)
	if err != nil {
		return nil, err
	}
	tmp := opt.keep
	if tmp == "" {
		if tmp, err = os.MkdirTemp("", "sallyport-bench-dlp-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
	} else if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	rep := &DLPReport{
		Tool:        "sallyport-bench dlp",
		Started:     time.Now().UTC().Truncate(time.Second),
		Note:        "one run on a possibly shared, noisy machine: compare the ratios within this run, not absolute figures across runs",
		Host:        hostInfo(),
		RuleMapping: gitleaksRules,
		Config:      DLPConfig{Corpus: opt.corpus, Samples: len(samples), Runs: opt.runs, Seed: opt.seed, StageCalls: opt.stageCalls},
	}
	for _, s := range samples {
		if len(s.Expect) == 0 {
			rep.Config.Negatives++
		}
	}
	if opt.gitleaks != "" {
		rep.Gitleaks = peerInfo(opt.gitleaks)
		if rep.Gitleaks.Warning != "" {
			logf("warning: %s", rep.Gitleaks.Warning)
		}
	}
	scanner, err := dlp.NewScanner(dlp.Options{})
	if err != nil {
		return nil, err
	}

	// Throughput.
	input, spans := buildInput(samples, opt.mb<<20, opt.seed)
	rep.Config.InputBytes, rep.Config.InputTexts = int64(len(input)), len(spans)
	inputPath := filepath.Join(tmp, "dlp-input.txt")
	if err := os.WriteFile(inputPath, input, 0o644); err != nil {
		return nil, err
	}
	logf("input: %d texts, %.1f MiB in %s", len(spans), float64(len(input))/(1<<20), inputPath)
	logf("sallyport: scanning the input %d times, GOMAXPROCS=1", opt.runs)
	rep.Sallyport = scanThroughput(scanner, input, spans, opt.runs)
	if opt.gitleaks != "" {
		rep.Config.GitleaksArgs = strings.Join(gitleaksArgs("FILE", "REPORT"), " ")
		glPath := inputPath
		if cut := opt.gitleaksMB << 20; cut > 0 && cut < len(input) {
			// A prefix of the same shuffled stream, ending at a line.
			if k := bytes.IndexByte(input[cut:], '\n'); k >= 0 {
				cut += k + 1
			}
			glPath = filepath.Join(tmp, "dlp-input-gitleaks.txt")
			if err := os.WriteFile(glPath, input[:cut], 0o644); err != nil {
				return nil, err
			}
		}
		logf("gitleaks: scanning %s %d times, GOMAXPROCS=1", filepath.Base(glPath), opt.runs)
		rep.GitleaksScan = gitleaksThroughput(ctx, opt.gitleaks, glPath, tmp, opt.runs)
		if rep.GitleaksScan.Error != "" {
			rep.Errors = append(rep.Errors, "gitleaks throughput: "+rep.GitleaksScan.Error)
		} else {
			rep.ThroughputRatio = ratio(rep.Sallyport.MBPerSec, rep.GitleaksScan.MBPerSec)
		}
	}
	runtime.GC()

	// Recall and negatives.
	var glFindings [][]gitleaksFinding
	if opt.gitleaks != "" {
		logf("gitleaks: scanning the %d corpus samples, one file each", len(samples))
		if glFindings, err = gitleaksPerSample(ctx, opt.gitleaks, samples, tmp); err != nil {
			rep.Errors = append(rep.Errors, "gitleaks on the corpus: "+err.Error())
			glFindings = nil
		}
	}
	compareRecall(rep, scanner, samples, glFindings)

	// The stage on 1 KiB.
	if opt.stageCalls > 0 {
		logf("stage: %d calls of a 1 KiB result through the chain with and without the DLP stage", opt.stageCalls)
		rep.Stage = measureDLPStage(ctx, opt.stageCalls)
		if rep.Stage.Error != "" {
			rep.Errors = append(rep.Errors, "stage: "+rep.Stage.Error)
		}
	}
	if err := context.Cause(ctx); err != nil {
		return nil, fmt.Errorf("interrupted: %w", err)
	}
	rep.computeGoals()
	return rep, nil
}

// peerInfo reads the gitleaks binary's version from its Go build
// information (a `go install`ed gitleaks prints no version of its own).
func peerInfo(path string) *PeerInfo {
	p := &PeerInfo{Path: path, Version: "unknown"}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		p.Warning = fmt.Sprintf("cannot read the build information of %s: %v", path, err)
		return p
	}
	p.Version = bi.Main.Version
	if bi.Main.Path != "github.com/zricethezav/gitleaks/v8" || bi.Main.Version != gitleaksVersion {
		p.Warning = fmt.Sprintf("%s is %s %s, not github.com/zricethezav/gitleaks/v8 %s: its figures are not the reference's", path, bi.Main.Path, bi.Main.Version, gitleaksVersion)
	}
	return p
}

// scanThroughput scans every text of input with GOMAXPROCS=1, runs
// times, and keeps the best time.
func scanThroughput(s *dlp.Scanner, input []byte, spans [][2]int, runs int) *ScanResult {
	res := &ScanResult{Bytes: int64(len(input))}
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	for run := range runs {
		runtime.GC()
		findings, errs := 0, 0
		t0 := time.Now()
		for _, sp := range spans {
			ms, err := s.Scan(input[sp[0]:sp[1]])
			findings += len(ms)
			if err != nil {
				errs++
			}
		}
		d := time.Since(t0)
		res.Seconds = append(res.Seconds, round(d.Seconds(), 3))
		if run == 0 || d.Seconds() < res.BestSeconds {
			res.BestSeconds = d.Seconds()
		}
		res.Findings, res.ScanErrors = findings, errs
	}
	res.MBPerSec = round(float64(len(input))/res.BestSeconds/1e6, 3)
	res.BestSeconds = round(res.BestSeconds, 3)
	return res
}

// gitleaksArgs are the arguments of a gitleaks scan of target: the
// directory (or file) source, a JSON report, decoding as deep as
// Sallyport's default, and exit code 0 with findings, so that a non-zero
// exit is a failure.
func gitleaksArgs(target, report string) []string {
	return []string{"dir", target, "--no-banner", "--report-format", "json", "--report-path", report,
		"--max-decode-depth", dlpMaxDecodeDepthArg, "--exit-code", "0", "--log-level", "error"}
}

// gitleaksFinding is the part of a gitleaks JSON report finding used here.
type gitleaksFinding struct {
	RuleID    string   `json:"RuleID"`
	File      string   `json:"File"`
	Secret    string   `json:"Secret"`
	Match     string   `json:"Match"`
	StartLine int      `json:"StartLine"`
	Tags      []string `json:"Tags"`
}

// runGitleaks runs gitleaks on target with GOMAXPROCS=1 and returns how
// long it took (start to exit) and its findings.
func runGitleaks(ctx context.Context, bin, target, report string) (time.Duration, []gitleaksFinding, error) {
	os.Remove(report)
	cmd := exec.CommandContext(ctx, bin, gitleaksArgs(target, report)...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return d, nil, fmt.Errorf("%s: %v: %s", bin, err, firstLine(strings.TrimSpace(out.String())))
	}
	findings, err := readGitleaksReport(report)
	return d, findings, err
}

func readGitleaksReport(path string) ([]gitleaksFinding, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gitleaks report: %w", err)
	}
	var fs []gitleaksFinding
	if err := json.Unmarshal(data, &fs); err != nil {
		return nil, fmt.Errorf("gitleaks report %s: %w", path, err)
	}
	return fs, nil
}

func gitleaksThroughput(ctx context.Context, bin, input, tmp string, runs int) *ScanResult {
	res := &ScanResult{}
	if fi, err := os.Stat(input); err == nil {
		res.Bytes = fi.Size()
	}
	report := filepath.Join(tmp, "gitleaks-input-report.json")
	for run := range runs {
		d, fs, err := runGitleaks(ctx, bin, input, report)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		res.Seconds = append(res.Seconds, round(d.Seconds(), 3))
		if run == 0 || d.Seconds() < res.BestSeconds {
			res.BestSeconds = d.Seconds()
		}
		res.Findings = len(fs)
	}
	res.MBPerSec = round(float64(res.Bytes)/res.BestSeconds/1e6, 3)
	res.BestSeconds = round(res.BestSeconds, 3)
	return res
}

// sampleFile is the file name of corpus sample i in the per-sample folder.
func sampleFile(i int) string { return fmt.Sprintf("s%05d.txt", i) }

// gitleaksPerSample writes each sample to a file of its own, scans the
// folder once, and returns the findings by sample.
func gitleaksPerSample(ctx context.Context, bin string, samples []corpusSample, tmp string) ([][]gitleaksFinding, error) {
	dir := filepath.Join(tmp, "samples")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for i, s := range samples {
		if err := os.WriteFile(filepath.Join(dir, sampleFile(i)), []byte(s.Text), 0o644); err != nil {
			return nil, err
		}
	}
	_, fs, err := runGitleaks(ctx, bin, dir, filepath.Join(tmp, "gitleaks-samples-report.json"))
	if err != nil {
		return nil, err
	}
	return findingsBySample(fs, len(samples))
}

// findingsBySample sorts gitleaks' findings by the sample file they are in.
func findingsBySample(fs []gitleaksFinding, n int) ([][]gitleaksFinding, error) {
	out := make([][]gitleaksFinding, n)
	for _, f := range fs {
		base := filepath.Base(f.File)
		num, ok := strings.CutPrefix(strings.TrimSuffix(base, ".txt"), "s")
		i, err := strconv.Atoi(num)
		if !ok || err != nil || i < 0 || i >= n {
			return nil, fmt.Errorf("gitleaks reported a finding in %q, not a sample file", f.File)
		}
		out[i] = append(out[i], f)
	}
	return out, nil
}

// found is one tool's finding in a sample, reduced to what recall needs.
type found struct {
	detector string
	start    int      // span in the text, -1 when unknown (gitleaks)
	end      int      //
	texts    []string // what the tool says it found (gitleaks: Secret, Match)
	decoded  bool     // found in decoded text
}

// locates reports whether f is the finding e expects in text.
func (f found) locates(text string, e corpusExpect) bool {
	if f.detector != e.Detector {
		return false
	}
	if f.start >= 0 {
		for off := 0; ; {
			k := strings.Index(text[off:], e.Value)
			if k < 0 {
				return false
			}
			k += off
			if f.start < k+len(e.Value) && k < f.end {
				return true
			}
			off = k + 1
		}
	}
	// gitleaks: by text; a secret found in decoded text cannot be
	// compared with the encoded run the corpus names.
	for _, t := range f.texts {
		if t != "" && (strings.Contains(e.Value, t) || strings.Contains(t, e.Value)) {
			return true
		}
	}
	return e.Encoding != "" && f.decoded
}

// assign matches findings to expectations one to one, greedily, and
// returns which expectations were found.
func assign(text string, expect []corpusExpect, fs []found) []bool {
	hit := make([]bool, len(expect))
	used := make([]bool, len(fs))
	for i, e := range expect {
		for j, f := range fs {
			if !used[j] && f.locates(text, e) {
				hit[i], used[j] = true, true
				break
			}
		}
	}
	return hit
}

func oursFound(s *dlp.Scanner, text string) []found {
	ms, _ := s.Scan([]byte(text))
	out := make([]found, len(ms))
	for i, m := range ms {
		out[i] = found{detector: m.Detector, start: m.Offset, end: m.Offset + m.Length, decoded: m.Encoding != ""}
	}
	return out
}

// gitleaksFound maps gitleaks' findings to Sallyport's detectors; a rule
// without a Sallyport detector keeps its id, prefixed "gitleaks:".
func gitleaksFound(fs []gitleaksFinding) []found {
	var out []found
	for _, f := range fs {
		d, ok := gitleaksRules[f.RuleID]
		if !ok {
			d = "gitleaks:" + f.RuleID
		}
		decoded := slices.ContainsFunc(f.Tags, func(t string) bool { return strings.HasPrefix(t, "decoded:") })
		out = append(out, found{detector: d, start: -1, texts: []string{f.Secret, f.Match}, decoded: decoded})
	}
	return out
}

// compareRecall fills in the recall of both tools per detector and what
// they found on the negatives. gl is nil when gitleaks was not run.
func compareRecall(rep *DLPReport, s *dlp.Scanner, samples []corpusSample, gl [][]gitleaksFinding) {
	shared := sharedDetectors()
	isShared := map[string]bool{}
	for _, d := range shared {
		isShared[d] = true
	}
	type tally struct {
		expected, ours, gl   int
		oursMiss, glMiss     []string
		rules                []string
		secret, sharedByBoth bool
	}
	tallies := map[string]*tally{}
	for _, d := range dlp.Detectors() {
		tallies[d.ID] = &tally{secret: d.Category == dlp.CategorySecret, sharedByBoth: isShared[d.ID]}
	}
	for rule, d := range gitleaksRules {
		if t := tallies[d]; t != nil {
			t.rules = append(t.rules, rule)
		}
	}
	neg := &NegativeFindings{Sallyport: map[string]int{}}
	if gl != nil {
		neg.Gitleaks = map[string]int{}
		neg.GitleaksSamples, neg.GitleaksShared = new(int), new(int)
	}
	const maxExamples = 8
	for i, smp := range samples {
		ours := oursFound(s, smp.Text)
		var theirs []found
		if gl != nil {
			theirs = gitleaksFound(gl[i])
		}
		if len(smp.Expect) == 0 {
			neg.Samples++
			if len(ours) > 0 {
				neg.SallyportSamples++
				if len(neg.SallyportIDs) < maxExamples {
					neg.SallyportIDs = append(neg.SallyportIDs, smp.ID+" ("+ours[0].detector+")")
				}
			}
			for _, f := range ours {
				neg.Sallyport[f.detector]++
				if isShared[f.detector] {
					neg.SallyportShared++
				}
			}
			if gl != nil {
				if len(theirs) > 0 {
					*neg.GitleaksSamples++
					if len(neg.GitleaksIDs) < maxExamples {
						neg.GitleaksIDs = append(neg.GitleaksIDs, smp.ID+" ("+gl[i][0].RuleID+")")
					}
				}
				for _, f := range theirs {
					neg.Gitleaks[f.detector]++
					if isShared[f.detector] {
						*neg.GitleaksShared++
					}
				}
			}
			continue
		}
		oursHit := assign(smp.Text, smp.Expect, ours)
		var glHit []bool
		if gl != nil {
			glHit = assign(smp.Text, smp.Expect, theirs)
		}
		for k, e := range smp.Expect {
			t := tallies[e.Detector]
			if t == nil {
				continue // a detector Sallyport does not have
			}
			t.expected++
			if oursHit[k] {
				t.ours++
			} else if len(t.oursMiss) < maxExamples {
				t.oursMiss = append(t.oursMiss, smp.ID)
			}
			if gl != nil {
				if glHit[k] {
					t.gl++
				} else if len(t.glMiss) < maxExamples {
					t.glMiss = append(t.glMiss, smp.ID)
				}
			}
		}
	}
	for _, d := range dlp.Detectors() {
		t := tallies[d.ID]
		if t.expected == 0 {
			continue
		}
		slices.Sort(t.rules)
		r := DetectorRecall{Detector: d.ID, Expected: t.expected, Sallyport: t.ours,
			SallyportRate: round(float64(t.ours)/float64(t.expected), 3), SallyportMissed: t.oursMiss}
		if !t.sharedByBoth {
			rep.OursOnly = append(rep.OursOnly, r)
			continue
		}
		r.GitleaksRules = t.rules
		if gl != nil {
			n, rate := t.gl, round(float64(t.gl)/float64(t.expected), 3)
			r.Gitleaks, r.GitleaksRate, r.GitleaksMissed = &n, &rate, t.glMiss
		}
		rep.Recall = append(rep.Recall, r)
	}
	rep.Negatives = neg
}

// stage1KiB is a 1 KiB tools/call result of the demo backend's
// lookup_customer: a customer record with an email and a card number
// (the demo rule redacts them) and an IP address (flagged), then notes.
func stage1KiB() json.RawMessage {
	text := "Customer 4471: Jane Doe, jane.doe@example.com, card 4111 1111 1111 1111, last login from 203.0.113.42. " +
		"Notes: the customer asked about the status of order 88123, which shipped on 2024-03-05 from the Leeds warehouse " +
		"and is due on Friday. Previous orders: 87001 (delivered), 86522 (returned, refund issued 2024-01-22). " +
		"Preferred contact is email; marketing opt-out recorded. Account tier: gold since 2021, renewal in November. " +
		"Open tickets: none. Last agent: R. Patel, who noted that the delivery address was updated to the office " +
		"address after the January move. Loyalty points: 12,450; the next reward threshold is 15,000 points. "
	for len(text) < 940 {
		text += "The customer mentioned that the previous parcel arrived on time and in good condition. "
	}
	return json.RawMessage(`{"content":[{"type":"text","text":` + string(jsonrpc.Quote(text[:940])) + `}],"isError":false}`)
}

// measureDLPStage times calls of the 1 KiB result through the bare chain
// and through the chain with the DLP stage, interleaved, and compares
// their p50.
func measureDLPStage(ctx context.Context, calls int) *DLPStageResult {
	res := &DLPStageResult{}
	stage, err := dlp.NewStage(config.Demo("sallyport", os.TempDir()).DLP, nil)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	body := stage1KiB()
	res.MessageBytes = len(body)
	deliver := func(context.Context, *gateway.Exchange) error { return nil }
	req := gateway.NewExchange(deliver)
	req.Direction, req.Kind, req.Method, req.Backend, req.Target = gateway.ClientToBackend, gateway.KindRequest, "tools/call", "demo", "lookup_customer"
	principal := &gateway.Principal{ID: "bench"}
	call := func(chain gateway.Handler, id int) (time.Duration, *gateway.Exchange, error) {
		t0 := time.Now()
		x := gateway.NewExchange(deliver)
		x.Direction, x.Kind, x.Method = gateway.BackendToClient, gateway.KindResult, "tools/call"
		x.Principal, x.Backend, x.Target, x.Request = principal, "demo", "lookup_customer", req
		x.Message = &jsonrpc.Message{ID: json.RawMessage(strconv.Itoa(id)), Result: body}
		err := chain.Handle(ctx, x)
		return time.Since(t0), x, err
	}
	bare, with := gateway.Chain(), gateway.Chain(stage)
	_, x, err := call(with, 0)
	if err != nil {
		res.Error = fmt.Sprintf("the DLP chain refused the message: %v", err)
		return res
	}
	res.Findings = len(x.Findings)
	warm := min(calls/10, 1000)
	base := make([]time.Duration, 0, calls)
	dl := make([]time.Duration, 0, calls)
	for i := range warm + calls {
		if i%1000 == 0 && context.Cause(ctx) != nil {
			res.Error = "interrupted"
			return res
		}
		d1, _, err1 := call(bare, i)
		d2, _, err2 := call(with, i)
		if err := errors.Join(err1, err2); err != nil {
			res.Error = err.Error()
			return res
		}
		if i >= warm {
			base, dl = append(base, d1), append(dl, d2)
		}
	}
	var total1, total2 time.Duration
	for i := range base {
		total1, total2 = total1+base[i], total2+dl[i]
	}
	sb, sd := summarize(base, 0, total1), summarize(dl, 0, total2)
	res.Baseline, res.DLP = &sb, &sd
	res.AddedP50US = diff(sd.P50US, sb.P50US)
	res.AddedMeanUS = diff(sd.MeanUS, sb.MeanUS)
	return res
}

// computeGoals fills in the goals.
func (r *DLPReport) computeGoals() {
	var ours *float64
	if r.Sallyport != nil && r.Sallyport.Error == "" {
		ours = value(r.Sallyport.MBPerSec)
	}
	// Recall: met when Sallyport finds at least as much as gitleaks on
	// every shared detector; the value is the number of detectors where
	// it does not.
	var recallBehind *float64
	if len(r.Recall) > 0 && r.Recall[0].Gitleaks != nil {
		behind := 0.0
		for _, d := range r.Recall {
			if d.Sallyport < *d.Gitleaks {
				behind++
			}
		}
		recallBehind = &behind
	}
	var added *float64
	if r.Stage != nil && r.Stage.Error == "" {
		added = r.Stage.AddedP50US
	}
	atLeast := func(min float64) func(float64) bool { return func(v float64) bool { return v >= min } }
	atMost := func(max float64) func(float64) bool { return func(v float64) bool { return v <= max } }
	r.Goals = []Goal{
		goal(fmt.Sprintf("Sallyport's scanner at least %.0f MB/s per core", goalDLPMBPerSec), "corpus input, GOMAXPROCS=1", ours, unitMBPerSec, atLeast(goalDLPMBPerSec)),
		goal(fmt.Sprintf("Sallyport's scanner at least %.0f× gitleaks' throughput", goalDLPOverGitleaks), "corpus input, both GOMAXPROCS=1", r.ThroughputRatio, unitRatio, atLeast(goalDLPOverGitleaks)),
		goal("recall at least gitleaks' on every shared secret detector", "corpus positives; the value is how many detectors are behind", recallBehind, unitDetectors, atMost(0)),
		goal(fmt.Sprintf("p50 the DLP stage adds to a 1 KiB message at most %.0f µs", goalDLPAddedP50US), "in process, tools/call result, demo rule", added, unitMicros, atMost(goalDLPAddedP50US)),
	}
}

func pct(v float64) string { return fmt.Sprintf("%.1f%%", 100*v) }

// printDLPReport writes the dlp mode's figures and goals.
func printDLPReport(w io.Writer, r *DLPReport) {
	c := r.Config
	fmt.Fprintf(w, "sallyport-bench dlp: %d CPUs, %s\n", r.Host.CPUs, r.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "corpus %s: %d samples (%d negatives)\n", c.Corpus, c.Samples, c.Negatives)
	if g := r.Gitleaks; g != nil {
		fmt.Fprintf(w, "gitleaks %s (%s)\n", g.Version, g.Path)
		if g.Warning != "" {
			fmt.Fprintf(w, "  WARNING: %s\n", g.Warning)
		}
	} else {
		fmt.Fprintln(w, "gitleaks: not given (--gitleaks): the comparisons are not measured")
	}

	fmt.Fprintf(w, "\nthroughput: %d corpus texts shuffled and repeated, %.1f MiB, one text per line; per core (GOMAXPROCS=1), best of %d\n",
		c.InputTexts, float64(c.InputBytes)/(1<<20), c.Runs)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  tool\tbest s\truns s\tMB/s\tfindings\t")
	row := func(name string, s *ScanResult) {
		if s == nil {
			return
		}
		if s.Error != "" {
			fmt.Fprintf(tw, "  %s\t-\t-\t-\tFAILED\t\n", name)
			return
		}
		runs := make([]string, len(s.Seconds))
		for i, v := range s.Seconds {
			runs[i] = fmt.Sprintf("%.3f", v)
		}
		fmt.Fprintf(tw, "  %s\t%.3f\t%s\t%.4g\t%d\t\n", name, s.BestSeconds, strings.Join(runs, " "), s.MBPerSec, s.Findings)
	}
	row("sallyport (in process, each text)", r.Sallyport)
	row("gitleaks dir (process, the file)", r.GitleaksScan)
	tw.Flush()
	if g := r.GitleaksScan; g != nil && g.Bytes > 0 && g.Bytes < c.InputBytes {
		fmt.Fprintf(w, "  gitleaks scanned the first %.1f MiB of the same input (--gitleaks-mb); MB/s compares rates\n", float64(g.Bytes)/(1<<20))
	}
	if s := r.Sallyport; s != nil && s.ScanErrors > 0 {
		fmt.Fprintf(w, "  sallyport: %d texts hit a scan limit\n", s.ScanErrors)
	}
	if s := r.GitleaksScan; s != nil && s.Error != "" {
		fmt.Fprintf(w, "  gitleaks FAILED: %s\n", firstLine(s.Error))
	}
	fmt.Fprintf(w, "  sallyport MB/s / gitleaks MB/s: %s\n", fmtNum(r.ThroughputRatio, "%.1f×"))
	if c.GitleaksArgs != "" {
		fmt.Fprintf(w, "  gitleaks %s\n", c.GitleaksArgs)
	}

	fmt.Fprintln(w, "\nrecall on the corpus's positives, secret detectors both tools have (gitleaks: one file per sample):")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  detector\texpected\tsallyport\tgitleaks\tgitleaks rules\t")
	var eT, oT, gT int
	for _, d := range r.Recall {
		g := "-"
		if d.Gitleaks != nil {
			g = fmt.Sprintf("%d (%s)", *d.Gitleaks, pct(*d.GitleaksRate))
			gT += *d.Gitleaks
		}
		eT, oT = eT+d.Expected, oT+d.Sallyport
		fmt.Fprintf(tw, "  %s\t%d\t%d (%s)\t%s\t%s\t\n", d.Detector, d.Expected, d.Sallyport, pct(d.SallyportRate), g, strings.Join(d.GitleaksRules, ", "))
	}
	if eT > 0 {
		g := "-"
		if len(r.Recall) > 0 && r.Recall[0].Gitleaks != nil {
			g = fmt.Sprintf("%d (%s)", gT, pct(float64(gT)/float64(eT)))
		}
		fmt.Fprintf(tw, "  all shared\t%d\t%d (%s)\t%s\t\t\n", eT, oT, pct(float64(oT)/float64(eT)), g)
	}
	tw.Flush()
	for _, d := range r.Recall {
		if len(d.SallyportMissed) > 0 {
			fmt.Fprintf(w, "  sallyport missed %s in: %s\n", d.Detector, strings.Join(d.SallyportMissed, ", "))
		}
		if len(d.GitleaksMissed) > 0 {
			fmt.Fprintf(w, "  gitleaks missed %s in: %s\n", d.Detector, strings.Join(d.GitleaksMissed, ", "))
		}
	}
	if len(r.OursOnly) > 0 {
		fmt.Fprintln(w, "\nrecall of Sallyport's detectors gitleaks has no rule for:")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "  detector\texpected\tsallyport\t")
		for _, d := range r.OursOnly {
			fmt.Fprintf(tw, "  %s\t%d\t%d (%s)\t\n", d.Detector, d.Expected, d.Sallyport, pct(d.SallyportRate))
		}
		tw.Flush()
		for _, d := range r.OursOnly {
			if len(d.SallyportMissed) > 0 {
				fmt.Fprintf(w, "  sallyport missed %s in: %s\n", d.Detector, strings.Join(d.SallyportMissed, ", "))
			}
		}
	}
	if n := r.Negatives; n != nil {
		fmt.Fprintf(w, "\non the %d negatives (samples that expect nothing):\n", n.Samples)
		fmt.Fprintf(w, "  sallyport: %d samples with findings; %d findings of shared detectors; by detector: %s\n", n.SallyportSamples, n.SallyportShared, countsString(n.Sallyport))
		if n.GitleaksSamples != nil {
			fmt.Fprintf(w, "  gitleaks:  %d samples with findings; %d findings of shared detectors; by rule: %s\n", *n.GitleaksSamples, *n.GitleaksShared, countsString(n.Gitleaks))
		}
		if len(n.SallyportIDs) > 0 {
			fmt.Fprintf(w, "  sallyport examples: %s\n", strings.Join(n.SallyportIDs, ", "))
		}
		if len(n.GitleaksIDs) > 0 {
			fmt.Fprintf(w, "  gitleaks examples:  %s\n", strings.Join(n.GitleaksIDs, ", "))
		}
	}
	if s := r.Stage; s != nil {
		fmt.Fprintf(w, "\nthe DLP stage on a %d-byte tools/call result (%d findings; configuration defaults and the demo rule), calls interleaved with the bare chain's:\n", s.MessageBytes, s.Findings)
		if s.Error != "" {
			fmt.Fprintf(w, "  FAILED: %s\n", firstLine(s.Error))
		}
		for _, row := range []struct {
			name string
			s    *Summary
		}{{"bare chain", s.Baseline}, {"with DLP", s.DLP}} {
			if row.s != nil {
				fmt.Fprintf(w, "  %-11s p50 %7.1f µs  p90 %7.1f µs  p99 %7.1f µs  mean %7.1f µs  (%d calls)\n", row.name+":", row.s.P50US, row.s.P90US, row.s.P99US, row.s.MeanUS, row.s.Calls)
			}
		}
		fmt.Fprintf(w, "  added: p50 %s, mean %s\n", fmtNum(s.AddedP50US, "%+.1f µs"), fmtNum(s.AddedMeanUS, "%+.1f µs"))
	}
	if len(r.Errors) > 0 {
		fmt.Fprintln(w, "\nfailures:")
		for _, e := range r.Errors {
			fmt.Fprintf(w, "  %s\n", firstLine(e))
		}
	}
	fmt.Fprintln(w, "\ndlp goals (informational; they never fail the run):")
	printGoals(w, r.Goals)
}

// countsString renders counts as "a 3, b 1", largest first.
func countsString(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
