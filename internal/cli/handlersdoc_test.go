package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestHandlersDocCompiles builds the module docs/handlers.md writes "from an
// empty directory" (its main.go and inventory/inventory.go, as printed)
// against this repository, and runs its version: a newcomer copying them
// gets a working binary.
func TestHandlersDocCompiles(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "handlers.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	start := strings.Index(text, "## From an empty directory")
	end := strings.Index(text, "## The handler\n")
	if start < 0 || end < start {
		t.Fatal("docs/handlers.md has no section From an empty directory")
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(text[start:end], -1)
	if len(blocks) != 2 {
		t.Fatalf("%d Go blocks in the section, want main.go and inventory/inventory.go", len(blocks))
	}
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("main.go", blocks[0][1])
	write("inventory/inventory.go", blocks[1][1])
	write("go.mod", "module example.com/inventory\n\ngo 1.26.8\n\nrequire github.com/fleetworks/fleet v0.0.0\n\nreplace github.com/fleetworks/fleet => "+repo+"\n")
	bin := filepath.Join(dir, "inventory-bin")
	for _, args := range [][]string{{"mod", "tidy"}, {"vet", "./..."}, {"build", "-o", bin, "."}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "inventory ") {
		t.Fatalf("version: %q, %v", out, err)
	}
}
