package main

import (
	"bytes"
	"context"
	"io"
	"slices"
	"testing"

	"github.com/sallyport/sallyport/dlp"
)

// The dlp mode's pieces that need no gitleaks: the rule mapping, the
// input, mapping gitleaks' findings back to samples, recall and goals.

func TestGitleaksRulesMapToDetectors(t *testing.T) {
	ids := map[string]string{}
	for _, d := range dlp.Detectors() {
		ids[d.ID] = d.Category
	}
	for rule, d := range gitleaksRules {
		cat, ok := ids[d]
		if !ok {
			t.Errorf("gitleaks rule %s maps to %q, not a Sallyport detector", rule, d)
		} else if cat != dlp.CategorySecret {
			t.Errorf("gitleaks rule %s maps to %s, a %s detector", rule, d, cat)
		}
	}
	shared := sharedDetectors()
	for _, d := range []string{"aws-access-token", "github-pat", "private-key", "jwt", "generic-api-key"} {
		if !slices.Contains(shared, d) {
			t.Errorf("shared detectors %v lack %s", shared, d)
		}
	}
	for _, d := range []string{"aws-secret-access-key", "database-url-password", "EMAIL_ADDRESS"} {
		if slices.Contains(shared, d) {
			t.Errorf("shared detectors %v hold %s, which gitleaks has no rule for", shared, d)
		}
	}
}

func TestBuildInput(t *testing.T) {
	samples := []corpusSample{{Text: "alpha"}, {Text: "beta\ngamma"}, {Text: "delta delta"}}
	a, spans := buildInput(samples, 1000, 7)
	b, _ := buildInput(samples, 1000, 7)
	if !bytes.Equal(a, b) {
		t.Fatal("the same seed built different inputs")
	}
	if len(a) < 1000 || len(a) > 1000+16 {
		t.Fatalf("input of %d bytes for 1000 asked", len(a))
	}
	total := 0
	for _, sp := range spans {
		txt := string(a[sp[0]:sp[1]])
		if !slices.ContainsFunc(samples, func(s corpusSample) bool { return s.Text == txt }) {
			t.Fatalf("span %v holds %q, not a sample", sp, txt)
		}
		if a[sp[1]] != '\n' {
			t.Fatalf("text at %v is not followed by a newline", sp)
		}
		total += len(txt) + 1
	}
	if total != len(a) {
		t.Fatalf("spans cover %d of %d bytes", total, len(a))
	}
	if c, _ := buildInput(samples, 1000, 8); bytes.Equal(a, c) {
		t.Error("another seed built the same input")
	}
}

func TestFindingsBySample(t *testing.T) {
	fs := []gitleaksFinding{{RuleID: "a", File: "/tmp/x/samples/" + sampleFile(2)}, {RuleID: "b", File: sampleFile(0)}, {RuleID: "c", File: "samples/" + sampleFile(2)}}
	by, err := findingsBySample(fs, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(by[0]) != 1 || len(by[1]) != 0 || len(by[2]) != 2 || by[2][1].RuleID != "c" {
		t.Errorf("findings by sample: %+v", by)
	}
	for _, f := range []string{"other.txt", sampleFile(3), "s-0001.txt"} {
		if _, err := findingsBySample([]gitleaksFinding{{File: f}}, 3); err == nil {
			t.Errorf("a finding in %s was mapped to a sample", f)
		}
	}
}

func TestAssign(t *testing.T) {
	text := "key=ghp_AAA and again ghp_AAA, blob=Z2hwX0FBQQ=="
	expect := []corpusExpect{
		{Detector: "github-pat", Value: "ghp_AAA"},
		{Detector: "github-pat", Value: "ghp_AAA"},
		{Detector: "github-pat", Value: "Z2hwX0FBQQ==", Encoding: "base64"},
	}
	for _, tc := range []struct {
		name string
		fs   []found
		want []bool
	}{
		{"spans: each finding counts once", []found{{detector: "github-pat", start: 4, end: 11}, {detector: "github-pat", start: 22, end: 29}}, []bool{true, true, false}},
		{"a span overlapping no expected value", []found{{detector: "github-pat", start: 12, end: 15}}, []bool{false, false, false}},
		{"the wrong detector", []found{{detector: "github-oauth", start: 4, end: 11}}, []bool{false, false, false}},
		{"encoded, by span", []found{{detector: "github-pat", start: 36, end: 48, decoded: true}}, []bool{false, false, true}},
		{"gitleaks: by text", []found{{detector: "github-pat", start: -1, texts: []string{"ghp_AAA", "key=ghp_AAA"}}}, []bool{true, false, false}},
		{"gitleaks: decoded", []found{{detector: "github-pat", start: -1, texts: []string{"ghp_AAA"}}, {detector: "github-pat", start: -1, texts: []string{"ghp_AAA"}}, {detector: "github-pat", start: -1, texts: []string{"ghp_AAA"}, decoded: true}}, []bool{true, true, true}},
	} {
		if got := assign(text, expect, tc.fs); !slices.Equal(got, tc.want) {
			t.Errorf("%s: found %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCompareRecall(t *testing.T) {
	s, err := dlp.NewScanner(dlp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	samples := []corpusSample{
		{ID: "p1", Text: "AWS_ACCESS_KEY_ID=AKIAZ7Q3M5N2XK4WLP6R", Expect: []corpusExpect{{Detector: "aws-access-token", Value: "AKIAZ7Q3M5N2XK4WLP6R"}}},
		{ID: "p2", Text: "mail jane.doe@example.com", Expect: []corpusExpect{{Detector: "EMAIL_ADDRESS", Value: "jane.doe@example.com"}}},
		{ID: "n1", Text: "nothing to see: AKIAIOSFODNN7EXAMPLE"},
		{ID: "n2", Text: "sk_test_51Hq3zK2eZvKYlo2C8xQ9wR7t"},
	}
	t.Run("without gitleaks", func(t *testing.T) {
		rep := &DLPReport{}
		compareRecall(rep, s, samples, nil)
		if len(rep.Recall) != 1 || rep.Recall[0].Detector != "aws-access-token" || rep.Recall[0].Sallyport != 1 || rep.Recall[0].Gitleaks != nil {
			t.Errorf("recall %+v", rep.Recall)
		}
		if len(rep.OursOnly) != 1 || rep.OursOnly[0].Detector != "EMAIL_ADDRESS" || rep.OursOnly[0].SallyportRate != 1 {
			t.Errorf("ours only %+v", rep.OursOnly)
		}
		if n := rep.Negatives; n.Samples != 2 || n.SallyportSamples != 0 || n.Gitleaks != nil {
			t.Errorf("negatives %+v", n)
		}
	})
	t.Run("with gitleaks", func(t *testing.T) {
		rep := &DLPReport{}
		gl := [][]gitleaksFinding{
			{{RuleID: "aws-access-token", Secret: "AKIAZ7Q3M5N2XK4WLP6R"}},
			nil,
			nil,
			{{RuleID: "stripe-access-token", Secret: "sk_test_51Hq3zK2eZvKYlo2C8xQ9wR7t"}, {RuleID: "some-other-rule", Secret: "x"}},
		}
		compareRecall(rep, s, samples, gl)
		r := rep.Recall[0]
		if r.Gitleaks == nil || *r.Gitleaks != 1 || *r.GitleaksRate != 1 {
			t.Errorf("recall %+v", r)
		}
		n := rep.Negatives
		if *n.GitleaksSamples != 1 || *n.GitleaksShared != 1 || n.Gitleaks["stripe-access-token"] != 1 || n.Gitleaks["gitleaks:some-other-rule"] != 1 {
			t.Errorf("negatives %+v", n)
		}
		rep.Sallyport = &ScanResult{MBPerSec: 400}
		rep.ThroughputRatio = ratio(400, 50)
		rep.Stage = &DLPStageResult{AddedP50US: value(12)}
		rep.computeGoals()
		for _, g := range rep.Goals {
			if g.Status != "PASS" {
				t.Errorf("goal %q = %s (%v)", g.Goal, g.Status, g.Value)
			}
		}
	})
}

func TestMeasureDLPStage(t *testing.T) {
	res := measureDLPStage(context.Background(), 50)
	if res.Error != "" {
		t.Fatal(res.Error)
	}
	if res.MessageBytes < 900 || res.MessageBytes > 1100 {
		t.Errorf("message of %d bytes, want about 1 KiB", res.MessageBytes)
	}
	if res.Findings < 2 {
		t.Errorf("%d findings in the 1 KiB message, want a couple", res.Findings)
	}
	if res.Baseline == nil || res.DLP == nil || res.Baseline.Calls != 50 || res.AddedP50US == nil {
		t.Errorf("result %+v", res)
	}
}

func TestParseDLPOptions(t *testing.T) {
	opt, err := parseDLPOptions(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if opt.mb != 64 || opt.runs != 3 || opt.gitleaks != "" || opt.corpus == "" {
		t.Errorf("defaults %+v", opt)
	}
	for _, args := range [][]string{{"--mb", "0"}, {"--runs", "0"}, {"extra"}, {"--gitleaks-mb", "-1"}} {
		if _, err := parseDLPOptions(args, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
