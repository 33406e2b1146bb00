package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestTryIt runs the README's "Try it" walkthrough literally, in a shell,
// against fleet dev --keep-running, with the addresses the demo prints in
// place of PORT, RPORT and HTTP: every command must succeed, and every one
// marked "# → text" must print text (asked again until it does, as a person
// would look again while the event is processed, for at most 20 s).
func TestTryIt(t *testing.T) {
	for _, tool := range []string{"sh", "redis-cli", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not on the PATH (.ci/run installs it): %v", tool, err)
		}
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	steps := tryItSteps(t, string(readme))

	dev := exec.Command(binary, "dev", "--keep-running", "--http-addr", "127.0.0.1:0")
	var out lockedBuffer
	dev.Stdout, dev.Stderr = &out, &out
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = dev.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = dev.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("fleet dev:\n%s", out.String())
		}
	})
	eventually(t, 60*time.Second, "fleet dev still running", func() bool { return strings.Contains(out.String(), "still running") })
	text := out.String()
	broker := regexp.MustCompile(`(?m)^  broker +(127\.0\.0\.1:\d+)`).FindStringSubmatch(text)
	redisURL := regexp.MustCompile(`(?m)^  redis +(redis://127\.0\.0\.1:\d+/0)`).FindStringSubmatch(text)
	worker := regexp.MustCompile(`(?m)^  worker +http://(127\.0\.0\.1:\d+)/metrics`).FindStringSubmatch(text)
	if broker == nil || redisURL == nil || worker == nil {
		t.Fatalf("no broker, redis or worker address in:\n%s", text)
	}
	// fleet as the README's reader has it: on the PATH.
	path := filepath.Dir(binary) + string(os.PathListSeparator) + os.Getenv("PATH")
	for _, s := range steps {
		cmd := strings.NewReplacer("127.0.0.1:PORT", broker[1], "redis://127.0.0.1:RPORT/0", redisURL[1], "127.0.0.1:HTTP", worker[1]).Replace(s.command)
		deadline := time.Now().Add(20 * time.Second)
		for {
			sh := exec.Command("sh", "-c", cmd)
			sh.Env = append(os.Environ(), "PATH="+path)
			got, err := sh.CombinedOutput()
			done := err == nil && strings.Contains(string(got), s.want)
			if done {
				break
			}
			if time.Now().After(deadline) || (err != nil && s.want == "") {
				t.Fatalf("%s\n%v; printed:\n%s\nwant %q", cmd, err, got, s.want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// tryItStep is one command of the walkthrough and what it must print.
type tryItStep struct {
	command, want string
}

// tryItSteps reads the commands of the README's "Try it" block, lines
// continued with a backslash joined, the first (which starts fleet dev)
// left out.
func tryItSteps(t *testing.T, readme string) []tryItStep {
	t.Helper()
	i := strings.Index(readme, "## Try it")
	if i < 0 {
		t.Fatal("README has no Try it section")
	}
	block := readme[i:]
	start := strings.Index(block, "```sh\n")
	end := strings.Index(block[start+6:], "```")
	if start < 0 || end < 0 {
		t.Fatal("README's Try it section has no sh block")
	}
	var steps []tryItStep
	var line string
	for _, l := range strings.Split(block[start+6:start+6+end], "\n") {
		if strings.HasSuffix(l, "\\") {
			line += strings.TrimSuffix(l, "\\")
			continue
		}
		line += l
		cmd, comment, _ := strings.Cut(line, "   #")
		line = ""
		cmd = strings.TrimSpace(cmd)
		if cmd == "" || strings.HasPrefix(cmd, "#") {
			continue
		}
		want := ""
		if _, w, ok := strings.Cut(comment, "→ "); ok {
			want = strings.TrimSpace(w)
		}
		steps = append(steps, tryItStep{command: cmd, want: want})
	}
	if len(steps) < 10 || !strings.Contains(steps[0].command, "fleet dev --keep-running") {
		t.Fatalf("unexpected Try it block: %+v", steps)
	}
	return steps[1:]
}
