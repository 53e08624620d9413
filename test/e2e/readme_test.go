package e2e_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"open-cluster-management.io/cluster-proxy/test/framework"
)

// walkthroughHeading starts the README section whose commands this spec
// runs; the section ends at the next heading of the same level.
const walkthroughHeading = "## Walkthrough"

// readmeStep is a `sh` block of the walkthrough and the `text` block after
// it, if any: what it prints.
type readmeStep struct {
	// line is where the command block starts in README.md.
	line    int
	command string
	// output is the expected output's lines; empty when the README shows
	// none.
	output []string
}

// outsideSuite are the commands the walkthrough shows but the suite runs
// around itself: the environment it runs on is the one `make local-up`
// started, and `make local-down` would stop it.
var outsideSuite = map[string]bool{"make local-up": true, "make local-down": true}

// parseWalkthrough returns the steps of the README's walkthrough section, in
// order.
func parseWalkthrough(readme []byte) ([]readmeStep, error) {
	var (
		steps     []readmeStep
		inSection bool
		fence     string // the open block's language, "" outside a block
		block     []string
		start     int
	)
	scanner := bufio.NewScanner(bytes.NewReader(readme))
	for n := 1; scanner.Scan(); n++ {
		line := scanner.Text()
		switch {
		case fence == "" && strings.HasPrefix(line, walkthroughHeading):
			inSection = true
		case fence == "" && inSection && strings.HasPrefix(line, "## "):
			inSection = false
		case !inSection:
		case fence == "" && strings.HasPrefix(line, "```"):
			fence, block, start = strings.TrimPrefix(line, "```"), nil, n
			if fence == "" {
				return nil, fmt.Errorf("README.md:%d: a block in the walkthrough needs a language (sh or text)", n)
			}
		case fence != "" && line == "```":
			switch fence {
			case "sh":
				steps = append(steps, readmeStep{line: start, command: strings.Join(block, "\n")})
			case "text":
				if len(steps) == 0 || steps[len(steps)-1].output != nil {
					return nil, fmt.Errorf("README.md:%d: an output block must follow a command block", start)
				}
				steps[len(steps)-1].output = block
			default:
				return nil, fmt.Errorf("README.md:%d: block language %q: the walkthrough holds only sh and text blocks", start, fence)
			}
			fence = ""
		case fence != "":
			block = append(block, line)
		}
	}
	if err := scanner.Err(); err != nil {
		return nil, err
	}
	if fence != "" {
		return nil, fmt.Errorf("README.md: the block that starts on line %d is not closed", start)
	}
	return steps, nil
}

// outputPattern turns a line of expected output into a regular expression
// for a whole line: `...` stands for anything, `<placeholder>` for any
// non-empty text, and a run of spaces for any run of blanks (kubectl's
// columns are as wide as their values).
func outputPattern(line string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	token := regexp.MustCompile(`\.\.\.|<[^<>]+>| +`)
	last := 0
	for _, m := range token.FindAllStringIndex(line, -1) {
		b.WriteString(regexp.QuoteMeta(line[last:m[0]]))
		switch t := line[m[0]:m[1]]; {
		case t == "...":
			b.WriteString(".*")
		case strings.HasPrefix(t, "<"):
			b.WriteString(".+?")
		default:
			b.WriteString(`\s+`)
		}
		last = m[1]
	}
	b.WriteString(regexp.QuoteMeta(line[last:]))
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// matchOutput checks that every expected line matches a line of got, in
// order (the README may abridge, so other lines may come between).
func matchOutput(expected []string, got string) error {
	lines := strings.Split(strings.TrimRight(got, "\n"), "\n")
	i := 0
	for _, want := range expected {
		if strings.TrimSpace(want) == "" {
			continue
		}
		re := outputPattern(want)
		for i < len(lines) && !re.MatchString(lines[i]) {
			i++
		}
		if i == len(lines) {
			return fmt.Errorf("no line (in order) matches %q", want)
		}
		i++
	}
	return nil
}

var _ = Describe("The README's walkthrough", Label("examples"), func() {
	It("runs as written, each command printing what the README shows", func(ctx SpecContext) {
		root, err := framework.RepoRoot()
		Expect(err).NotTo(HaveOccurred())
		readme, err := os.ReadFile(filepath.Join(root, "README.md"))
		Expect(err).NotTo(HaveOccurred())
		steps, err := parseWalkthrough(readme)
		Expect(err).NotTo(HaveOccurred())
		Expect(len(steps)).To(BeNumerically(">=", 5), "the walkthrough's command blocks")

		// The README's paths are the default state directory's; the
		// suite's may be another.
		defaultState := filepath.Join(root, "_output", "local")
		ran := 0
		for _, step := range steps {
			if outsideSuite[strings.TrimSpace(step.command)] {
				By(fmt.Sprintf("README.md:%d: %s (the suite's environment is the one it started)", step.line, step.command))
				continue
			}
			By(fmt.Sprintf("README.md:%d: %s", step.line, step.command))
			script := step.command
			if env.StateDir != defaultState {
				script = strings.ReplaceAll(script, "$PWD/_output/local", env.StateDir)
				script = strings.ReplaceAll(script, "_output/local", env.StateDir)
			}
			// Eventually: a spec before may just have reinstalled the chart
			// or restarted an agent; a newcomer runs these on a settled
			// environment.
			Eventually(func(g Gomega) {
				var out, errOut bytes.Buffer
				cmd := exec.CommandContext(ctx, "bash", "-o", "errexit", "-o", "nounset", "-o", "pipefail", "-c", script)
				cmd.Dir = root
				cmd.Env = append(os.Environ(), "PWD="+root)
				cmd.Stdout, cmd.Stderr = &out, &errOut
				g.Expect(cmd.Run()).To(Succeed(), "README.md:%d\nstdout:\n%s\nstderr:\n%s", step.line, out.String(), errOut.String())
				g.Expect(matchOutput(step.output, out.String())).To(Succeed(), "README.md:%d prints:\n%s", step.line, out.String())
			}).WithContext(ctx).WithPolling(5 * time.Second).Should(Succeed())
			ran++
		}
		Expect(ran).To(BeNumerically(">=", 5), "commands run")
	})
})

var _ = Describe("The walkthrough's output patterns", Label("examples"), func() {
	It("match what the README means and refuse what it does not", func() {
		Expect(matchOutput([]string{"a <n> b", "c ..."}, "x\na 12 b\ny\nc d e\n")).To(Succeed())
		Expect(matchOutput([]string{"c ...", "a <n> b"}, "a 12 b\nc d\n")).To(MatchError(ContainSubstring(`"a <n> b"`)))
		Expect(matchOutput([]string{"a <n> b"}, "a  b\n")).NotTo(Succeed())
		Expect(matchOutput([]string{"(x) [y]"}, "(x) [y]\n")).To(Succeed())
		Expect(matchOutput([]string{"NAME   AGE", "a      <age>"}, "NAME      AGE\na         3m\n")).To(Succeed())
		Expect(matchOutput([]string{"NAME AGE"}, "NAMEAGE\n")).NotTo(Succeed())
		steps, err := parseWalkthrough([]byte("# t\n## Walkthrough\n```sh\necho hi\n```\n```text\nhi\n```\n## Next\n```sh\nno\n```\n"))
		Expect(err).NotTo(HaveOccurred())
		Expect(steps).To(Equal([]readmeStep{{line: 3, command: "echo hi", output: []string{"hi"}}}))
		_, err = parseWalkthrough([]byte("## Walkthrough\n```go\nx\n```\n"))
		Expect(err).To(MatchError(ContainSubstring(`"go"`)))
	})
})
