package charttest

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestHTTPHandlerSidecar: the routes, the credential from its Secret and
// the sidecar render; what cannot work is refused, naming the value.
func TestHTTPHandlerSidecar(t *testing.T) {
	values := filepath.Join(chartDir, "ci", "http-handler-sidecar-values.yaml")
	out, err := render(t, []string{values})
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, out)
	pod := m.deployment.Spec.Template.Spec
	if len(pod.Containers) != 2 || pod.Containers[1].Name != "handler" {
		t.Fatalf("containers %d", len(pod.Containers))
	}
	side := pod.Containers[1]
	if side.Image != "registry.example.com/inventory-handler@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" ||
		len(side.Ports) != 1 || side.Ports[0].ContainerPort != 8081 || side.ReadinessProbe == nil || side.Resources.Limits.Memory().IsZero() {
		t.Errorf("sidecar %+v", side)
	}
	env := envOf(pod.Containers[0])
	if env["FLEET_HTTP_HANDLERS"].Value != "inventory.*=http://127.0.0.1:8081/events" {
		t.Errorf("FLEET_HTTP_HANDLERS %q", env["FLEET_HTTP_HANDLERS"].Value)
	}
	tok := env["FLEET_HTTP_HANDLER_TOKEN"]
	if tok.Value != "" || tok.ValueFrom == nil || tok.ValueFrom.SecretKeyRef == nil || tok.ValueFrom.SecretKeyRef.Name != "inventory-handler-token" {
		t.Errorf("FLEET_HTTP_HANDLER_TOKEN %+v: not from its Secret", tok)
	}

	defaults := filepath.Join(chartDir, "ci", "default-values.yaml")
	refused := []struct{ values, want string }{
		{"httpHandlers:\n  sidecar:\n    enabled: true\n    image:\n      tag: v1\n  routes: [\"a.*=http://127.0.0.1:8081/\"]\n", "needs httpHandlers.sidecar.image.repository"},
		{"httpHandlers:\n  sidecar:\n    enabled: true\n    image:\n      repository: r\n  routes: [\"a.*=http://127.0.0.1:8081/\"]\n", "a tag or a digest"},
		{"httpHandlers:\n  sidecar:\n    enabled: true\n    image:\n      repository: r\n      tag: v1\n", "needs httpHandlers.routes"},
		{"httpHandlers:\n  sidecar:\n    enabled: true\n    port: 8080\n    image:\n      repository: r\n      tag: v1\n  routes: [\"a.*=http://127.0.0.1:8080/\"]\n", "is fleet's own"},
		{"httpHandlers:\n  header: X-Api-Key\n", "needs httpHandlers.token.existingSecret"},
		{"httpHandlers:\n  routes: [\"inventory.*\"]\n", "routes"},
		{"httpHandlers:\n  routes: [\"a.*.b=http://h/\"]\n", "routes"},
	}
	for _, tt := range refused {
		if _, err := render(t, []string{defaults, writeValues(t, tt.values)}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("values\n%s\nrendered or failed otherwise: %v; want %q", tt.values, err, tt.want)
		}
	}
}
