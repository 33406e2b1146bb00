package charttest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestRedisURL: a redis.url with credentials (user:password@, user@, or the
// username and password parameters Sentinel URLs take) is refused, even
// beside redis.existingSecret, pointing to the Secret; the URL forms of
// every mode without them are passed as they are.
func TestRedisURL(t *testing.T) {
	defaults := filepath.Join(chartDir, "ci", "default-values.yaml")
	accepted := []struct{ mode, url string }{
		{"standalone", "redis://redis-master:6379/0"},
		{"standalone", "redis://redis-master"},
		{"standalone", "rediss://redis.example.internal:6380/2"},
		{"standalone", "rediss://redis.example.internal:6380/0?dial_timeout=3s&client_name=fleet"},
		{"cluster", "redis://redis-0.redis:6379?addr=redis-1.redis:6379&addr=redis-2.redis:6379"},
		{"cluster", "rediss://redis-0.redis:6380?addr=redis-1.redis:6380"},
		{"sentinel", "redis://sentinel-0.sentinel:26379?master_name=mymaster&addr=sentinel-1.sentinel:26379&addr=sentinel-2.sentinel:26379"},
		{"sentinel", "rediss://sentinel:26379/1?master_name=fleet"},
	}
	for _, tt := range accepted {
		t.Run("accepted "+tt.url, func(t *testing.T) {
			out, err := render(t, []string{defaults, writeValues(t, "redis:\n  mode: "+tt.mode+"\n  url: "+strconv.Quote(tt.url)+"\n")})
			if err != nil {
				t.Fatal(err)
			}
			m := decode(t, out)
			checkPod(t, m)
			env := envOf(m.deployment.Spec.Template.Spec.Containers[0])
			if env["FLEET_REDIS_URL"].Value != tt.url || env["FLEET_REDIS_MODE"].Value != tt.mode {
				t.Errorf("FLEET_REDIS_URL %q, FLEET_REDIS_MODE %q", env["FLEET_REDIS_URL"].Value, env["FLEET_REDIS_MODE"].Value)
			}
		})
	}
	refused := []struct{ mode, url, extra string }{
		{"standalone", "redis://fleet:secret@redis-master:6379/0", ""},
		{"standalone", "rediss://:secret@redis.example.internal:6380/0", ""},
		{"standalone", "redis://fleet@redis-master:6379/0", ""},
		{"standalone", "rediss://fleet:p%40ss%2Fword@redis.example.internal:6380", ""},
		{"cluster", "redis://fleet:secret@redis-0.redis:6379?addr=redis-1.redis:6379", ""},
		{"sentinel", "redis://sentinel-user:pw@sentinel-0:26379?master_name=mymaster&addr=sentinel-1:26379", ""},
		{"sentinel", "redis://sentinel-0:26379?master_name=mymaster&password=secret", ""},
		{"sentinel", "redis://sentinel-0:26379?master_name=mymaster&username=fleet&addr=sentinel-1:26379", ""},
		// Beside a Secret the URL is not used, but the release stores it.
		{"standalone", "redis://fleet:secret@redis-master:6379/0", "  existingSecret: fleet-redis\n"},
	}
	for _, tt := range refused {
		t.Run("refused "+tt.url+" "+strings.TrimSpace(tt.extra), func(t *testing.T) {
			_, err := render(t, []string{defaults, writeValues(t, "redis:\n  mode: "+tt.mode+"\n  url: "+strconv.Quote(tt.url)+"\n"+tt.extra)})
			if err == nil {
				t.Fatal("rendered")
			}
			for _, want := range []string{"redis.url carries credentials", "Put the whole URL in a Secret and name it in redis.existingSecret"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %v lacks %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "secret@") || strings.Contains(err.Error(), "password=secret") {
				t.Error("the error repeats the credentials")
			}
		})
	}
}

// TestImageDigest: image.digest pins the image as <repository>@<digest>
// (the tag is then not used); without it the tag, or the app version. The
// schema refuses anything but sha256:<64 lowercase hex digits>.
func TestImageDigest(t *testing.T) {
	defaults := filepath.Join(chartDir, "ci", "default-values.yaml")
	chart, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(chart, &meta); err != nil || meta.AppVersion == "" {
		t.Fatalf("Chart.yaml appVersion: %v", err)
	}
	const digest = "sha256:4c5f8e4a0e1b7c9d2f3a6b8c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e"
	tests := []struct {
		name  string
		sets  []string
		image string
	}{
		{"default", nil, "ghcr.io/fleetworks/fleet:" + meta.AppVersion},
		{"tag", []string{"image.tag=v1.2.3"}, "ghcr.io/fleetworks/fleet:v1.2.3"},
		{"digest", []string{"image.digest=" + digest}, "ghcr.io/fleetworks/fleet@" + digest},
		{"digest and tag", []string{"image.tag=v1.2.3", "image.digest=" + digest}, "ghcr.io/fleetworks/fleet@" + digest},
		{"another repository", []string{"image.repository=registry.example.com/fleet", "image.digest=" + digest}, "registry.example.com/fleet@" + digest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := render(t, []string{defaults}, tt.sets...)
			if err != nil {
				t.Fatal(err)
			}
			m := decode(t, out)
			if got := m.deployment.Spec.Template.Spec.Containers[0].Image; got != tt.image {
				t.Errorf("image %s, want %s", got, tt.image)
			}
		})
	}
	for _, bad := range []string{
		"sha256:4c5f8e4a",
		strings.ToUpper(digest[:7]) + digest[7:],
		"sha256:" + strings.ToUpper(digest[7:]),
		digest[7:],
		"sha512:" + digest[7:] + digest[7:],
		"v1.2.3@" + digest,
		digest + "\n",
	} {
		t.Run("refused "+strconv.Quote(bad), func(t *testing.T) {
			_, err := render(t, []string{defaults, writeValues(t, "image:\n  digest: "+strconv.Quote(bad)+"\n")})
			if err == nil || !strings.Contains(err.Error(), "/image/digest") {
				t.Errorf("error %v, want the schema to refuse /image/digest", err)
			}
		})
	}
}
