// Command testsummary reads `go test -json` output on stdin, prints the
// output of failed tests and packages, a line per package, and one closing
// summary line: "tests: N passed, N failed, N skipped". It exits 1 when
// anything failed or no test ran.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	outputs := map[string]*strings.Builder{}
	var passed, failed, skipped int
	var failedNames []string
	pkgResult := map[string]string{}
	pkgElapsed := map[string]float64{}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			fmt.Println(sc.Text()) // build errors come as plain text
			continue
		}
		// Output is kept per top-level test, subtests included, so a
		// failure shows everything its subtests said.
		top, _, _ := strings.Cut(e.Test, "/")
		key := e.Package + " " + top
		switch e.Action {
		case "output":
			b := outputs[key]
			if b == nil {
				b = &strings.Builder{}
				outputs[key] = b
			}
			if b.Len() < 256<<10 {
				b.WriteString(e.Output)
			}
		case "pass", "fail", "skip":
			if e.Test == "" {
				pkgResult[e.Package] = e.Action
				pkgElapsed[e.Package] = e.Elapsed
				if e.Action == "fail" {
					failedNames = append(failedNames, e.Package+" (package)")
					if b := outputs[key]; b != nil {
						fmt.Printf("--- package %s output:\n%s\n", e.Package, b.String())
					}
				}
				continue
			}
			if strings.Contains(e.Test, "/") {
				continue // subtests count through their parent
			}
			switch e.Action {
			case "pass":
				passed++
			case "fail":
				failed++
				failedNames = append(failedNames, e.Package+"."+e.Test)
				if b := outputs[key]; b != nil {
					fmt.Printf("--- FAIL %s.%s\n%s\n", e.Package, e.Test, b.String())
				}
			case "skip":
				skipped++
			}
		}
	}
	pkgs := make([]string, 0, len(pkgResult))
	for p := range pkgResult {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for _, p := range pkgs {
		fmt.Printf("%-4s %s (%.1fs)\n", pkgResult[p], p, pkgElapsed[p])
	}
	for _, n := range failedNames {
		fmt.Println("FAILED:", n)
	}
	fmt.Printf("tests: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 || len(failedNames) > 0 || passed == 0 {
		os.Exit(1)
	}
}
