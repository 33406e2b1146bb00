package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDockerfile checks what can be checked of the Dockerfile without a
// Docker engine (none runs here, and Debian has no hadolint): a build stage
// that downloads modules before copying the code, a static trimmed binary
// stamped with version and revision, a distroless nonroot runtime, an
// exec-form entrypoint, and a .dockerignore that keeps the context small.
func TestDockerfile(t *testing.T) {
	root := filepath.Join("..", "..")
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	froms := regexp.MustCompile(`(?m)^FROM (\S+)(?: AS (\S+))?$`).FindAllStringSubmatch(df, -1)
	if len(froms) != 2 || froms[0][2] != "build" || froms[1][2] != "runtime" {
		t.Fatalf("stages %v: want build, then runtime", froms)
	}
	if !strings.HasPrefix(froms[0][1], "golang:") {
		t.Errorf("build stage from %s", froms[0][1])
	}
	if froms[1][1] != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("runtime stage from %s, want distroless static nonroot", froms[1][1])
	}
	runtime := df[strings.Index(df, "AS runtime"):]
	for _, want := range []string{"USER nonroot:nonroot", `ENTRYPOINT ["/fleet"]`, `CMD ["run"]`, "COPY --from=build /out/fleet /fleet"} {
		if !strings.Contains(runtime, want) {
			t.Errorf("runtime stage lacks %s", want)
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=${VERSION}", "-X main.revision=${REVISION}",
		"--mount=type=cache,target=/go/pkg/mod"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %s", want)
		}
	}
	download, copyAll := strings.Index(df, "go mod download"), strings.Index(df, "COPY . .")
	if download < 0 || copyAll < 0 || download > copyAll {
		t.Error("modules must be downloaded before the code is copied, so the layer is cached")
	}
	if regexp.MustCompile(`(?m)^(ENTRYPOINT|CMD) [^\[]`).MatchString(df) {
		t.Error("ENTRYPOINT and CMD must be in exec form")
	}
	ign, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".git", "charts", "docs"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).Match(ign) {
			t.Errorf(".dockerignore does not leave out %s", want)
		}
	}
	// The ldflags stamp variables that exist.
	main, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"version  = ", "revision = "} {
		if !strings.Contains(string(main), v) {
			t.Errorf("main.go has no %q to stamp", v)
		}
	}
}
