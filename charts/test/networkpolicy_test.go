package charttest

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// checkNetworkPolicy checks what must hold of the NetworkPolicy in every
// rendering that has one: it selects the Deployment's pods, isolates them
// both ways, admits nothing without naming its peers and ports (an ingress
// rule without from admits every source), names only ports the container
// has, allows DNS first and opens no egress rule on every port.
func checkNetworkPolicy(t *testing.T, m manifests) {
	t.Helper()
	obj, ok := m.objects["NetworkPolicy"]
	if !ok {
		return
	}
	np := obj.(*networkingv1.NetworkPolicy)
	if !reflect.DeepEqual(np.Spec.PodSelector.MatchLabels, m.deployment.Spec.Selector.MatchLabels) || len(np.Spec.PodSelector.MatchExpressions) > 0 {
		t.Errorf("the NetworkPolicy selects %v, not the Deployment's pods %v", np.Spec.PodSelector, m.deployment.Spec.Selector.MatchLabels)
	}
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}) {
		t.Errorf("policy types %v, want Ingress and Egress", np.Spec.PolicyTypes)
	}
	ports := map[string]bool{}
	for _, p := range m.deployment.Spec.Template.Spec.Containers[0].Ports {
		ports[p.Name] = true
	}
	if len(np.Spec.Ingress) == 0 {
		t.Error("no ingress rule: Prometheus cannot scrape")
	}
	for i, r := range np.Spec.Ingress {
		if len(r.From) == 0 {
			t.Errorf("ingress rule %d has no from: it admits every source", i)
		}
		for _, peer := range r.From {
			if peer == (networkingv1.NetworkPolicyPeer{}) {
				t.Errorf("ingress rule %d has an empty peer", i)
			}
		}
		if len(r.Ports) == 0 {
			t.Errorf("ingress rule %d admits every port", i)
		}
		for _, p := range r.Ports {
			if p.Port == nil || p.Port.Type != intstr.String || !ports[p.Port.StrVal] || p.Protocol == nil || *p.Protocol != corev1.ProtocolTCP {
				t.Errorf("ingress rule %d: port %v is not a TCP port the container names", i, p.Port)
			}
		}
	}
	if len(np.Spec.Egress) == 0 || !reflect.DeepEqual(np.Spec.Egress[0].Ports, dnsPorts()) {
		t.Errorf("the first egress rule is not DNS: %+v", np.Spec.Egress)
	}
	for i, r := range np.Spec.Egress {
		if len(r.Ports) == 0 {
			t.Errorf("egress rule %d opens every port", i)
		}
	}
}

func selector(kv ...string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{MatchLabels: map[string]string{}}
	for i := 0; i < len(kv); i += 2 {
		s.MatchLabels[kv[i]] = kv[i+1]
	}
	return s
}

func npPort(proto corev1.Protocol, port intstr.IntOrString) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &port}
}

func tcpPorts(ports ...int) []networkingv1.NetworkPolicyPort {
	var out []networkingv1.NetworkPolicyPort
	for _, p := range ports {
		out = append(out, npPort(corev1.ProtocolTCP, intstr.FromInt32(int32(p))))
	}
	return out
}

func dnsPorts() []networkingv1.NetworkPolicyPort {
	return []networkingv1.NetworkPolicyPort{npPort(corev1.ProtocolUDP, intstr.FromInt32(53)), npPort(corev1.ProtocolTCP, intstr.FromInt32(53))}
}

// prometheus is the default metricsFrom: one peer, both selectors.
var prometheus = networkingv1.NetworkPolicyPeer{
	NamespaceSelector: selector("kubernetes.io/metadata.name", "monitoring"),
	PodSelector:       selector("app.kubernetes.io/name", "prometheus"),
}

var kubeDNS = networkingv1.NetworkPolicyPeer{
	NamespaceSelector: selector("kubernetes.io/metadata.name", "kube-system"),
	PodSelector:       selector("k8s-app", "kube-dns"),
}

// writeValues writes a values file for one test.
func writeValues(t *testing.T, body string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestNetworkPolicy: on by default, the http port reachable only from
// Prometheus (namespace and pod in one peer), egress only to DNS, Kafka and
// Redis; each setting changes what it names and nothing else.
func TestNetworkPolicy(t *testing.T) {
	defaults := filepath.Join(chartDir, "ci", "default-values.yaml")
	http := []networkingv1.NetworkPolicyPort{npPort(corev1.ProtocolTCP, intstr.FromString("http"))}
	status := []networkingv1.NetworkPolicyPort{npPort(corev1.ProtocolTCP, intstr.FromString("status"))}
	dns := networkingv1.NetworkPolicyEgressRule{Ports: dnsPorts(), To: []networkingv1.NetworkPolicyPeer{kubeDNS}}
	kafka := networkingv1.NetworkPolicyEgressRule{Ports: tcpPorts(9092, 9093)}
	redis := networkingv1.NetworkPolicyEgressRule{Ports: tcpPorts(6379, 6380, 26379)}
	tests := []struct {
		name    string
		files   []string
		ingress []networkingv1.NetworkPolicyIngressRule
		egress  []networkingv1.NetworkPolicyEgressRule
	}{
		{"defaults", []string{defaults},
			[]networkingv1.NetworkPolicyIngressRule{{Ports: http, From: []networkingv1.NetworkPolicyPeer{prometheus}}},
			[]networkingv1.NetworkPolicyEgressRule{dns, kafka, redis}},
		{"status port without statusFrom", []string{defaults, writeValues(t, "status:\n  port: 8081\n")},
			[]networkingv1.NetworkPolicyIngressRule{{Ports: http, From: []networkingv1.NetworkPolicyPeer{prometheus}}},
			[]networkingv1.NetworkPolicyEgressRule{dns, kafka, redis}},
		{"DNS anywhere, no Kafka rule, handlers", []string{defaults, writeValues(t, `
networkPolicy:
  metricsFrom:
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
  egress:
    dns: {to: []}
    kafka: {ports: []}
    handlers: {ports: [443, 8443]}
`)},
			[]networkingv1.NetworkPolicyIngressRule{{Ports: http, From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}}}}}},
			[]networkingv1.NetworkPolicyEgressRule{{Ports: dnsPorts()}, redis, {Ports: tcpPorts(443, 8443)}}},
		{"tracing, collector anywhere", []string{defaults, writeValues(t, "tracing:\n  enabled: true\n  endpoint: http://otel:4318\n")},
			[]networkingv1.NetworkPolicyIngressRule{{Ports: http, From: []networkingv1.NetworkPolicyPeer{prometheus}}},
			[]networkingv1.NetworkPolicyEgressRule{dns, kafka, redis, {Ports: tcpPorts(4317, 4318)}}},
		{"all-on", []string{filepath.Join(chartDir, "ci", "all-on-values.yaml")},
			[]networkingv1.NetworkPolicyIngressRule{
				{Ports: http, From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: selector("kubernetes.io/metadata.name", "monitoring")}}},
				{Ports: status, From: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: selector("kubernetes.io/metadata.name", "payments-ops"),
					PodSelector:       selector("app.kubernetes.io/name", "fleet-console"),
				}}},
			},
			[]networkingv1.NetworkPolicyEgressRule{
				dns,
				{Ports: tcpPorts(9092, 9093), To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: selector("kubernetes.io/metadata.name", "kafka")}}},
				{Ports: tcpPorts(6379), To: []networkingv1.NetworkPolicyPeer{{PodSelector: selector("app.kubernetes.io/name", "redis")}}},
				{Ports: tcpPorts(443), To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.20.0.0/16"}}}},
				{Ports: tcpPorts(4317), To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: selector("kubernetes.io/metadata.name", "observability")}}},
				{Ports: tcpPorts(5432), To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.30.0.0/24"}}}},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := render(t, tt.files)
			if err != nil {
				t.Fatal(err)
			}
			m := decode(t, out)
			obj, ok := m.objects["NetworkPolicy"]
			if !ok {
				t.Fatal("no NetworkPolicy: it must be on by default")
			}
			np := obj.(*networkingv1.NetworkPolicy)
			if !reflect.DeepEqual(np.Spec.Ingress, tt.ingress) {
				t.Errorf("ingress\n%s\nwant\n%s", dump(np.Spec.Ingress), dump(tt.ingress))
			}
			if !reflect.DeepEqual(np.Spec.Egress, tt.egress) {
				t.Errorf("egress\n%s\nwant\n%s", dump(np.Spec.Egress), dump(tt.egress))
			}
			checkPod(t, m)
		})
	}
}

func dump(v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// TestNetworkPolicyRefused: settings that would open the policy, or that
// would have no effect, are refused with the setting's name.
func TestNetworkPolicyRefused(t *testing.T) {
	defaults := filepath.Join(chartDir, "ci", "default-values.yaml")
	tests := []struct {
		name string
		body string
		sets []string
		want string
	}{
		{"metricsFrom empty", "networkPolicy:\n  metricsFrom: []\n", nil, "networkPolicy.metricsFrom is empty: an ingress rule without peers admits every source"},
		{"metricsFrom null", "", []string{"networkPolicy.metricsFrom=null"}, "networkPolicy.metricsFrom is empty"},
		{"an empty peer", "networkPolicy:\n  metricsFrom: [{}]\n", nil, "minProperties"},
		{"a misspelled peer", "networkPolicy:\n  metricsFrom:\n    - namespaceSelecter: {matchLabels: {a: b}}\n", nil, "additional properties 'namespaceSelecter' not allowed"},
		{"a misspelled egress target", "networkPolicy:\n  egress:\n    kafka:\n      port: [9092]\n", nil, "additional properties 'port' not allowed"},
		{"a port out of range", "networkPolicy:\n  egress:\n    redis:\n      ports: [70000]\n", nil, "/networkPolicy/egress/redis/ports/0"},
		{"a named egress port", "networkPolicy:\n  egress:\n    handlers:\n      ports: [https]\n", nil, "/networkPolicy/egress/handlers/ports/0"},
		{"handlers to without ports", "networkPolicy:\n  egress:\n    handlers:\n      to: [{ipBlock: {cidr: 10.0.0.0/8}}]\n", nil,
			"networkPolicy.egress.handlers.to needs networkPolicy.egress.handlers.ports"},
		{"kafka to without ports", "networkPolicy:\n  egress:\n    kafka:\n      ports: []\n      to: [{podSelector: {matchLabels: {app: kafka}}}]\n", nil,
			"networkPolicy.egress.kafka.to needs networkPolicy.egress.kafka.ports"},
		{"statusFrom without a status port", "networkPolicy:\n  statusFrom: [{podSelector: {matchLabels: {app: console}}}]\n", nil,
			"networkPolicy.statusFrom needs status.port"},
		{"a misspelled extra rule", "networkPolicy:\n  egress:\n    extra:\n      - too: []\n", nil, "additional properties 'too' not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := []string{defaults}
			if tt.body != "" {
				files = append(files, writeValues(t, tt.body))
			}
			_, err := render(t, files, tt.sets...)
			if err == nil {
				t.Fatal("rendered")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v lacks %q", err, tt.want)
			}
		})
	}
	// Off, the policy's settings are not checked: nothing is rendered.
	out, err := render(t, []string{defaults, writeValues(t, "networkPolicy:\n  enabled: false\n  metricsFrom: []\n")})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := decode(t, out).objects["NetworkPolicy"]; ok {
		t.Error("a NetworkPolicy with networkPolicy.enabled=false")
	}
}
