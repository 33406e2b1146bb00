package charttest

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// envOf maps a container's environment by name.
func envOf(c corev1.Container) map[string]corev1.EnvVar {
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	return env
}

// statusPortOf is the container port named status, or 0.
func statusPortOf(c corev1.Container) int32 {
	for _, p := range c.Ports {
		if p.Name == "status" {
			return p.ContainerPort
		}
	}
	return 0
}

// checkStatusPort checks, in every rendering, that FLEET_STATUS_ADDR, the
// container port and the Service port named status agree: a port of its
// own exactly when the address is ":<that port>".
func checkStatusPort(t *testing.T, m manifests) {
	t.Helper()
	c := m.deployment.Spec.Template.Spec.Containers[0]
	port := statusPortOf(c)
	addr, set := envOf(c)["FLEET_STATUS_ADDR"]
	switch {
	case !set || addr.Value == "off":
		if port != 0 {
			t.Errorf("container port status %d, but FLEET_STATUS_ADDR %q", port, addr.Value)
		}
	case port == 0 || port == 8080 || addr.Value != fmt.Sprintf(":%d", port):
		t.Errorf("FLEET_STATUS_ADDR %q, container port status %d", addr.Value, port)
	}
	if addr.ValueFrom != nil {
		t.Error("FLEET_STATUS_ADDR from a reference")
	}
	for _, p := range m.objects["Service"].(*corev1.Service).Spec.Ports {
		if p.Name == "status" && (port == 0 || p.Port != port || p.TargetPort != intstr.FromString("status")) {
			t.Errorf("Service port %+v, container status port %d", p, port)
		}
	}
}

// TestStatus renders every combination of status.enabled, status.port,
// status.service, networkPolicy.enabled and networkPolicy.statusFrom: /status
// is served with /metrics, on its own port, or not at all, and reachable
// through the Service and the NetworkPolicy only when asked for; the
// combinations that cannot work are refused with the setting's name.
func TestStatus(t *testing.T) {
	defaults := filepath.Join(chartDir, "ci", "default-values.yaml")
	console := networkingv1.NetworkPolicyPeer{PodSelector: selector("app.kubernetes.io/name", "fleet-console")}
	consoleFile := writeValues(t, "networkPolicy:\n  statusFrom:\n    - podSelector: {matchLabels: {app.kubernetes.io/name: fleet-console}}\n")
	for mask := range 1 << 5 {
		enabled, ownPort, service, policy, statusFrom := mask&1 != 0, mask&2 != 0, mask&4 != 0, mask&8 != 0, mask&16 != 0
		port := 0
		if ownPort {
			port = 8081
		}
		sets := []string{fmt.Sprintf("status.enabled=%t", enabled), fmt.Sprintf("status.port=%d", port),
			fmt.Sprintf("status.service=%t", service), fmt.Sprintf("networkPolicy.enabled=%t", policy)}
		files, name := []string{defaults}, strings.Join(sets, ",")
		if statusFrom {
			files, name = append(files, consoleFile), name+",networkPolicy.statusFrom=[fleet-console]"
		}
		t.Run(name, func(t *testing.T) {
			out, err := render(t, files, sets...)
			var refused string
			switch own := enabled && ownPort; {
			case ownPort && !enabled:
				refused = "status.port (8081) is set but status.enabled is false"
			case service && !own:
				refused = "status.service needs status.port"
			case policy && statusFrom && !own:
				refused = "networkPolicy.statusFrom needs status.port"
			}
			if refused != "" {
				if err == nil || !strings.Contains(err.Error(), refused) {
					t.Fatalf("error %v, want %q", err, refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			m := decode(t, out)
			checkPod(t, m)
			c := m.deployment.Spec.Template.Spec.Containers[0]
			addr, set := envOf(c)["FLEET_STATUS_ADDR"]
			switch {
			case !enabled:
				if addr.Value != "off" {
					t.Errorf("FLEET_STATUS_ADDR %q, want off", addr.Value)
				}
			case ownPort:
				if addr.Value != ":8081" || statusPortOf(c) != 8081 {
					t.Errorf("FLEET_STATUS_ADDR %q, container port %d, want :8081", addr.Value, statusPortOf(c))
				}
			default:
				if set || statusPortOf(c) != 0 {
					t.Errorf("FLEET_STATUS_ADDR %q, container port %d: /status belongs on the http port", addr.Value, statusPortOf(c))
				}
			}
			var servicePort bool
			for _, p := range m.objects["Service"].(*corev1.Service).Spec.Ports {
				servicePort = servicePort || p.Name == "status"
			}
			if servicePort != (ownPort && service) {
				t.Errorf("Service port status: %t", servicePort)
			}
			if !policy {
				return
			}
			var statusRules []networkingv1.NetworkPolicyIngressRule
			for _, r := range m.objects["NetworkPolicy"].(*networkingv1.NetworkPolicy).Spec.Ingress {
				for _, p := range r.Ports {
					if p.Port != nil && p.Port.String() == "status" {
						statusRules = append(statusRules, r)
					}
				}
			}
			switch {
			case ownPort && statusFrom:
				want := []networkingv1.NetworkPolicyIngressRule{{
					Ports: []networkingv1.NetworkPolicyPort{npPort(corev1.ProtocolTCP, intstr.FromString("status"))},
					From:  []networkingv1.NetworkPolicyPeer{console},
				}}
				if !reflect.DeepEqual(statusRules, want) {
					t.Errorf("status rules\n%s\nwant\n%s", dump(statusRules), dump(want))
				}
			case len(statusRules) > 0:
				t.Errorf("status rules %s without networkPolicy.statusFrom", dump(statusRules))
			}
		})
	}
	for _, tt := range []struct {
		name string
		sets []string
		want string
	}{
		{"the http port", []string{"status.port=8080"}, "status.port 8080 is the http port"},
		{"the Service's port", []string{"status.port=9090", "status.service=true", "service.port=9090"}, "status.port (9090) is also service.port"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := render(t, []string{defaults}, tt.sets...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
	// Without status.service the Service's port does not matter.
	out, err := render(t, []string{defaults}, "status.port=9090", "service.port=9090")
	if err != nil {
		t.Fatal(err)
	}
	checkPod(t, decode(t, out))
}
