package charttest

import (
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestPprof: the profiles are off by default; pprof.enabled serves them on
// the pod's loopback only, with no container port and nothing on the
// Service.
func TestPprof(t *testing.T) {
	defaults := filepath.Join(chartDir, "ci", "default-values.yaml")
	for _, tt := range []struct {
		sets []string
		want string
	}{
		{nil, ""},
		{[]string{"pprof.enabled=true"}, "127.0.0.1:6060"},
		{[]string{"pprof.enabled=true", "pprof.port=7070"}, "127.0.0.1:7070"},
	} {
		out, err := render(t, []string{defaults}, tt.sets...)
		if err != nil {
			t.Fatal(err)
		}
		m := decode(t, out)
		c := m.deployment.Spec.Template.Spec.Containers[0]
		if got := envOf(c)["FLEET_PPROF_ADDR"].Value; got != tt.want {
			t.Errorf("%v: FLEET_PPROF_ADDR %q, want %q", tt.sets, got, tt.want)
		}
		for _, p := range c.Ports {
			if p.ContainerPort == 6060 || p.ContainerPort == 7070 || p.Name == "pprof" {
				t.Errorf("%v: container port %+v for the profiles", tt.sets, p)
			}
		}
		for _, p := range m.objects["Service"].(*corev1.Service).Spec.Ports {
			if p.Port == 6060 || p.Port == 7070 {
				t.Errorf("%v: Service port %+v for the profiles", tt.sets, p)
			}
		}
	}
	if _, err := render(t, []string{defaults}, "pprof.port=0"); err == nil {
		t.Error("pprof.port=0 accepted")
	}
}
