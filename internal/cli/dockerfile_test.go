package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestDockerfile checks what can be checked of the Dockerfile without a
// Docker engine (none runs here, and Debian has no hadolint): a build stage
// that downloads modules before copying the code, with a Go that go.mod
// accepts, a static trimmed binary stamped with version and revision, a
// distroless nonroot runtime, both base images pinned by digest, an
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
	// Both bases are pinned by digest, the tag kept beside it for the reader.
	digest := `@sha256:[0-9a-f]{64}$`
	build := regexp.MustCompile(`^golang:(1\.[0-9]+\.[0-9]+)-bookworm` + digest).FindStringSubmatch(froms[0][1])
	if build == nil {
		t.Errorf("build stage from %s, want golang:<major.minor.patch>-bookworm@sha256:<digest>", froms[0][1])
	}
	if !regexp.MustCompile(`^gcr\.io/distroless/static-debian12:nonroot` + digest).MatchString(froms[1][1]) {
		t.Errorf("runtime stage from %s, want gcr.io/distroless/static-debian12:nonroot@sha256:<digest>", froms[1][1])
	}
	if !strings.Contains(df, "docker buildx imagetools inspect") {
		t.Error("the Dockerfile does not say how to update the digests")
	}
	// The image's Go (GOTOOLCHAIN=local in the golang images) must satisfy
	// go.mod's go directive, or the build stops asking for a toolchain.
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goDirective := regexp.MustCompile(`(?m)^go ([0-9.]+)$`).FindSubmatch(mod)
	if goDirective == nil {
		t.Fatal("go.mod has no go directive")
	}
	if build != nil && goVersionBefore(build[1], string(goDirective[1])) {
		t.Errorf("the build image has Go %s, go.mod needs %s", build[1], goDirective[1])
	}
	// The build fetches the patched toolchain govulncheck checks fleet with.
	toolchain := regexp.MustCompile(`(?m)^ENV GOTOOLCHAIN=(go1\.[0-9]+\.[0-9]+)$`).FindStringSubmatch(df)
	vulncheck, err := os.ReadFile(filepath.Join(root, ".ci", "vulncheck"))
	if err != nil {
		t.Fatal(err)
	}
	if toolchain == nil || !strings.Contains(string(vulncheck), "GOTOOLCHAIN="+toolchain[1]+"\n") {
		t.Errorf("the build stage's GOTOOLCHAIN %v is not the toolchain .ci/vulncheck checks", toolchain)
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
	main, err := os.ReadFile("../../cmd/fleet/main.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"version  = ", "revision = "} {
		if !strings.Contains(string(main), v) {
			t.Errorf("main.go has no %q to stamp", v)
		}
	}
}

// goVersionBefore compares dotted Go versions ("1.26.8" < "1.27"); a missing
// part counts as 0.
func goVersionBefore(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}
