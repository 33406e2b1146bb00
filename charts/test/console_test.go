package charttest

import (
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// consoleValues is the ci values file with the console on: tokens from a
// Secret, an Ingress with TLS, the NetworkPolicy, /status on port 8081.
var consoleValues = filepath.Join(chartDir, "ci", "console-values.yaml")

// consoleObjects returns the console's Deployment, Service and
// NetworkPolicy (nil when not rendered).
func consoleObjects(m manifests) (*appsv1.Deployment, *corev1.Service, *networkingv1.NetworkPolicy) {
	d, _ := m.console["Deployment"].(*appsv1.Deployment)
	s, _ := m.console["Service"].(*corev1.Service)
	np, _ := m.console["NetworkPolicy"].(*networkingv1.NetworkPolicy)
	return d, s, np
}

// checkConsole checks what must hold of the console in every rendering
// that has one: one hardened container running fleet console with the
// workers' image, probes on /login, a listener on its container port, a
// Service and (with the workers') a NetworkPolicy of its own that select
// the console's pods and no worker, and the same Kafka and Redis settings
// as the workers, secrets by reference.
func checkConsole(t *testing.T, m manifests) {
	t.Helper()
	if len(m.console) == 0 {
		return
	}
	d, svc, np := consoleObjects(m)
	if d == nil || svc == nil {
		t.Fatalf("the console without its Deployment or Service: %v", m.kinds)
	}
	pod := d.Spec.Template.Spec
	checkHardened(t, pod)
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("the console's pod mounts a service account token")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("the console has %d containers", len(pod.Containers))
	}
	c, worker := pod.Containers[0], m.deployment.Spec.Template.Spec.Containers[0]
	if !slices.Equal(c.Args, []string{"console"}) || c.Image != worker.Image {
		t.Errorf("the console runs %s %v, the workers %s", c.Image, c.Args, worker.Image)
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "http" {
		t.Fatalf("the console's ports %+v", c.Ports)
	}
	port := c.Ports[0].ContainerPort
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/login" || p.HTTPGet.Port != intstr.FromString("http") {
			t.Errorf("the console's %s probe %+v, want GET /login on http", name, p)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("the console has no CPU request or memory limit")
	}
	env, workerEnv := envOf(c), envOf(worker)
	if env["FLEET_CONSOLE_ADDR"].Value != ":"+itoa(port) {
		t.Errorf("FLEET_CONSOLE_ADDR %q, container port %d", env["FLEET_CONSOLE_ADDR"].Value, port)
	}
	statusPort := statusPortOf(worker)
	if statusPort == 0 {
		statusPort = 8080
	}
	if env["FLEET_CONSOLE_STATUS_PORT"].Value != itoa(statusPort) {
		t.Errorf("FLEET_CONSOLE_STATUS_PORT %q, the workers serve /status on %d", env["FLEET_CONSOLE_STATUS_PORT"].Value, statusPort)
	}
	// The workers' settings, as they are: by value or by the same reference.
	for name, e := range workerEnv {
		if name == "FLEET_BROKERS" || name == "FLEET_TOPICS" || name == "FLEET_GROUP" ||
			(strings.HasPrefix(name, "FLEET_REDIS_") && name != "FLEET_REDIS_MIN_REPLICAS") || strings.HasPrefix(name, "FLEET_KAFKA_") {
			if !reflect.DeepEqual(env[name], e) {
				t.Errorf("the console's %s %+v, the workers' %+v", name, env[name], e)
			}
		}
	}
	for name, e := range env {
		if (strings.HasPrefix(name, "FLEET_REDIS_") || strings.HasPrefix(name, "FLEET_KAFKA_")) && !reflect.DeepEqual(workerEnv[name], e) {
			t.Errorf("the console has %s, the workers not", name)
		}
	}
	if _, ok := env["FLEET_CONSOLE_TOKENS"]; ok {
		t.Error("FLEET_CONSOLE_TOKENS in the environment: the tokens belong in a mounted Secret")
	}
	if env["FLEET_CONSOLE_TOKENS_FILE"].Value == "" && env["FLEET_CONSOLE_TRUSTED_HEADER"].Value == "" {
		t.Error("the console has neither tokens nor a trusted header: it would refuse to start")
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef == nil {
			t.Errorf("%s from something else than a Secret", e.Name)
		}
	}
	// Every CA the workers mount, the console mounts the same way.
	for _, wm := range worker.VolumeMounts {
		if !slices.ContainsFunc(c.VolumeMounts, func(cm corev1.VolumeMount) bool { return reflect.DeepEqual(cm, wm) }) {
			t.Errorf("the console lacks the workers' mount %+v", wm)
		}
	}
	if d.Spec.Template.Annotations["checksum/tokens"] == "" {
		t.Error("no checksum/tokens annotation: a change of tokens would not roll the console")
	}

	// The console's objects select its pods, never the workers'; the
	// workers' never select the console's.
	consolePods := labels.Set(d.Spec.Template.Labels)
	workerPods := labels.Set(m.deployment.Spec.Template.Labels)
	own := labels.SelectorFromSet(d.Spec.Selector.MatchLabels)
	if !own.Matches(consolePods) || own.Matches(workerPods) {
		t.Errorf("the console's selector %v", d.Spec.Selector.MatchLabels)
	}
	if labels.SelectorFromSet(m.deployment.Spec.Selector.MatchLabels).Matches(consolePods) {
		t.Errorf("the workers' selector %v takes in the console's pods %v", m.deployment.Spec.Selector.MatchLabels, consolePods)
	}
	if !reflect.DeepEqual(svc.Spec.Selector, d.Spec.Selector.MatchLabels) || len(svc.Spec.Ports) != 1 ||
		svc.Spec.Ports[0].TargetPort != intstr.FromString("http") {
		t.Errorf("the console's Service %+v", svc.Spec)
	}

	_, workersPolicy := m.objects["NetworkPolicy"]
	if workersPolicy != (np != nil) {
		t.Fatalf("the workers' NetworkPolicy %t, the console's %t", workersPolicy, np != nil)
	}
	if np == nil {
		return
	}
	if !reflect.DeepEqual(np.Spec.PodSelector.MatchLabels, d.Spec.Selector.MatchLabels) ||
		!slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}) {
		t.Errorf("the console's NetworkPolicy selects %v, types %v", np.Spec.PodSelector, np.Spec.PolicyTypes)
	}
	for i, r := range np.Spec.Ingress {
		if len(r.From) == 0 || !reflect.DeepEqual(r.Ports, []networkingv1.NetworkPolicyPort{npPort(corev1.ProtocolTCP, intstr.FromString("http"))}) {
			t.Errorf("the console's ingress rule %d: %s", i, dump(r))
		}
	}
	if len(np.Spec.Egress) == 0 || !reflect.DeepEqual(np.Spec.Egress[0].Ports, dnsPorts()) {
		t.Errorf("the console's first egress rule is not DNS: %s", dump(np.Spec.Egress))
	}
	for i, r := range np.Spec.Egress {
		if len(r.Ports) == 0 {
			t.Errorf("the console's egress rule %d opens every port", i)
		}
	}
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

// TestConsoleOffByDefault: with console.enabled unset, nothing of the
// console renders, and the workers' NetworkPolicy admits no console.
func TestConsoleOffByDefault(t *testing.T) {
	for _, f := range ciValues(t) {
		if f == consoleValues {
			continue
		}
		out, err := render(t, []string{f})
		if err != nil {
			t.Fatal(err)
		}
		m := decode(t, out)
		if len(m.console) > 0 || strings.Contains(string(out), "FLEET_CONSOLE_") {
			t.Errorf("%s: the console renders: %v", filepath.Base(f), m.kinds)
		}
		np, ok := m.objects["NetworkPolicy"].(*networkingv1.NetworkPolicy)
		if !ok {
			continue
		}
		for _, r := range np.Spec.Ingress {
			for _, peer := range r.From {
				// A console of the release: in the namespace, labelled as the chart's.
				if peer.NamespaceSelector == nil && peer.PodSelector != nil && peer.PodSelector.MatchLabels["app.kubernetes.io/name"] == "fleet-console" {
					t.Errorf("%s: the workers admit a console that does not run: %s", filepath.Base(f), dump(r))
				}
			}
		}
	}
}

// TestConsole renders the console's ci values: its Deployment, Service,
// Ingress and NetworkPolicy, and the workers' policy rule that lets it
// read /status.
func TestConsole(t *testing.T) {
	out, err := render(t, []string{consoleValues})
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, out)
	checkPod(t, m)
	d, svc, np := consoleObjects(m)
	if d == nil || svc == nil || np == nil {
		t.Fatalf("rendered %v", m.kinds)
	}
	if d.Name != "fleet-console" || d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Errorf("Deployment %s, replicas %v", d.Name, d.Spec.Replicas)
	}
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	env := envOf(c)
	want := map[string]string{
		"FLEET_BROKERS":                  "kafka:9092",
		"FLEET_TOPICS":                   "payments",
		"FLEET_GROUP":                    "ledger",
		"FLEET_CONSOLE_ADDR":             ":8090",
		"FLEET_CONSOLE_STATUS_PORT":      "8081",
		"FLEET_CONSOLE_TOKENS_FILE":      "/etc/fleet/console-tokens/tokens",
		"FLEET_CONSOLE_SECURE_COOKIES":   "true", // the Ingress has tls
		"FLEET_CONSOLE_AUDIT_STREAM":     "fleet:console:audit",
		"FLEET_CONSOLE_AUDIT_STREAM_MAX": "10000",
	}
	for name, v := range want {
		if env[name].Value != v {
			t.Errorf("%s %q, want %q", name, env[name].Value, v)
		}
	}
	for _, name := range []string{"FLEET_CONSOLE_TRUSTED_HEADER", "FLEET_CONSOLE_TRUSTED_OPERATORS", "FLEET_CONSOLE_TOKENS"} {
		if _, ok := env[name]; ok {
			t.Errorf("%s is set", name)
		}
	}
	if c.Ports[0].ContainerPort != 8090 || statusPortOf(m.deployment.Spec.Template.Spec.Containers[0]) != 8081 {
		t.Errorf("console port %d, workers' status port %d", c.Ports[0].ContainerPort, statusPortOf(m.deployment.Spec.Template.Spec.Containers[0]))
	}
	// FLEET_CONSOLE_TOKENS_FILE is the Secret's key, mounted read-only.
	if len(c.VolumeMounts) != 1 || len(pod.Volumes) != 1 {
		t.Fatalf("mounts %+v, volumes %+v", c.VolumeMounts, pod.Volumes)
	}
	mount, vol := c.VolumeMounts[0], pod.Volumes[0]
	if !mount.ReadOnly || mount.Name != vol.Name || vol.Secret == nil || vol.Secret.SecretName != "fleet-console-tokens" ||
		!reflect.DeepEqual(vol.Secret.Items, []corev1.KeyToPath{{Key: "tokens", Path: "tokens"}}) ||
		env["FLEET_CONSOLE_TOKENS_FILE"].Value != mount.MountPath+"/tokens" {
		t.Errorf("FLEET_CONSOLE_TOKENS_FILE %q, mount %+v, volume %s", env["FLEET_CONSOLE_TOKENS_FILE"].Value, mount, dump(vol))
	}
	if mode := vol.Secret.DefaultMode; mode == nil || *mode&0o7 != 0 || *mode&0o222 != 0 {
		t.Errorf("the tokens' mode %v: readable by others or writable", mode)
	}

	if svc.Name != "fleet-console" || svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.Ports[0].Port != 8090 || svc.Spec.Ports[0].Name != "http" {
		t.Errorf("Service %s %s", svc.Name, dump(svc.Spec))
	}

	ing, ok := m.console["Ingress"].(*networkingv1.Ingress)
	if !ok {
		t.Fatal("no Ingress")
	}
	prefix := networkingv1.PathTypePrefix
	class := "nginx"
	wantIngress := networkingv1.IngressSpec{
		IngressClassName: &class,
		TLS:              []networkingv1.IngressTLS{{Hosts: []string{"fleet-console.example.com"}, SecretName: "fleet-console-tls"}},
		Rules: []networkingv1.IngressRule{{
			Host: "fleet-console.example.com",
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
				Path: "/", PathType: &prefix,
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
					Name: svc.Name, Port: networkingv1.ServiceBackendPort{Name: "http"},
				}},
			}}}},
		}},
	}
	if !reflect.DeepEqual(ing.Spec, wantIngress) || ing.Annotations["nginx.ingress.kubernetes.io/whitelist-source-range"] != "10.0.0.0/8" {
		t.Errorf("Ingress\n%s\nwant\n%s", dump(ing.Spec), dump(wantIngress))
	}

	checkConsolePolicies(t, m, "status", 8081)
}

// checkConsolePolicies: the console's policy admits the ingress controller
// (the default networkPolicy.consoleFrom) to its port and lets it reach DNS,
// Kafka, Redis and the workers' /status port, nothing else; the workers'
// policy admits the console to that port.
func checkConsolePolicies(t *testing.T, m manifests, portName string, port int) {
	t.Helper()
	d, _, np := consoleObjects(m)
	ingressNginx := networkingv1.NetworkPolicyPeer{
		NamespaceSelector: selector("kubernetes.io/metadata.name", "ingress-nginx"),
		PodSelector:       selector("app.kubernetes.io/name", "ingress-nginx"),
	}
	wantIngress := []networkingv1.NetworkPolicyIngressRule{{
		Ports: []networkingv1.NetworkPolicyPort{npPort(corev1.ProtocolTCP, intstr.FromString("http"))},
		From:  []networkingv1.NetworkPolicyPeer{ingressNginx},
	}}
	if !reflect.DeepEqual(np.Spec.Ingress, wantIngress) {
		t.Errorf("the console's ingress\n%s\nwant\n%s", dump(np.Spec.Ingress), dump(wantIngress))
	}
	wantEgress := []networkingv1.NetworkPolicyEgressRule{
		{Ports: dnsPorts(), To: []networkingv1.NetworkPolicyPeer{kubeDNS}},
		{Ports: tcpPorts(9092, 9093)},
		{Ports: tcpPorts(6379, 6380, 26379)},
		{Ports: tcpPorts(port), To: []networkingv1.NetworkPolicyPeer{{PodSelector: m.deployment.Spec.Selector}}},
	}
	if !reflect.DeepEqual(np.Spec.Egress, wantEgress) {
		t.Errorf("the console's egress\n%s\nwant\n%s", dump(np.Spec.Egress), dump(wantEgress))
	}
	workers := m.objects["NetworkPolicy"].(*networkingv1.NetworkPolicy)
	wantRule := networkingv1.NetworkPolicyIngressRule{
		Ports: []networkingv1.NetworkPolicyPort{npPort(corev1.ProtocolTCP, intstr.FromString(portName))},
		From:  []networkingv1.NetworkPolicyPeer{{PodSelector: d.Spec.Selector}},
	}
	if !slices.ContainsFunc(workers.Spec.Ingress, func(r networkingv1.NetworkPolicyIngressRule) bool { return reflect.DeepEqual(r, wantRule) }) {
		t.Errorf("the workers' ingress\n%s\nlacks\n%s", dump(workers.Spec.Ingress), dump(wantRule))
	}
}

// TestConsoleSettings: each setting changes what it names.
func TestConsoleSettings(t *testing.T) {
	defaults := filepath.Join(chartDir, "ci", "default-values.yaml")
	external := filepath.Join(chartDir, "ci", "external-secrets-values.yaml")
	tokens := "console.tokens.existingSecret=fleet-console-tokens"

	t.Run("status on the http port", func(t *testing.T) {
		out, err := render(t, []string{consoleValues}, "status.port=0")
		if err != nil {
			t.Fatal(err)
		}
		m := decode(t, out)
		checkPod(t, m)
		d, _, _ := consoleObjects(m)
		if v := envOf(d.Spec.Template.Spec.Containers[0])["FLEET_CONSOLE_STATUS_PORT"].Value; v != "8080" {
			t.Errorf("FLEET_CONSOLE_STATUS_PORT %q, want the http port 8080", v)
		}
		checkConsolePolicies(t, m, "http", 8080)
	})

	t.Run("the workers' Kafka and Redis Secrets", func(t *testing.T) {
		out, err := render(t, []string{external}, "console.enabled=true", tokens)
		if err != nil {
			t.Fatal(err)
		}
		m := decode(t, out)
		checkPod(t, m) // checkConsole compares the settings with the workers'
		d, _, _ := consoleObjects(m)
		pod := d.Spec.Template.Spec
		env := envOf(pod.Containers[0])
		for _, name := range []string{"FLEET_REDIS_URL", "FLEET_KAFKA_SASL_USERNAME", "FLEET_KAFKA_SASL_PASSWORD", "FLEET_KAFKA_TLS_CA_FILE", "FLEET_REDIS_TLS_CA_FILE"} {
			if _, ok := env[name]; !ok {
				t.Errorf("no %s", name)
			}
		}
		var secrets []string
		for _, v := range pod.Volumes {
			secrets = append(secrets, v.Secret.SecretName)
		}
		if !slices.Equal(secrets, []string{"fleet-kafka-ca", "fleet-redis-ca", "fleet-console-tokens"}) {
			t.Errorf("volumes of %v", secrets)
		}
		if env["FLEET_CONSOLE_SECURE_COOKIES"].Value != "false" {
			t.Errorf("FLEET_CONSOLE_SECURE_COOKIES %q without TLS", env["FLEET_CONSOLE_SECURE_COOKIES"].Value)
		}
	})

	t.Run("a trusted header, no tokens, no ingress", func(t *testing.T) {
		out, err := render(t, []string{defaults}, "console.enabled=true", "console.trustedHeader=X-Forwarded-User",
			"console.trustedOperators={alice,bob}", "console.secureCookies=true", "console.port=9000", "console.service.port=80",
			"console.auditStream=off")
		if err != nil {
			t.Fatal(err)
		}
		m := decode(t, out)
		checkPod(t, m)
		d, svc, _ := consoleObjects(m)
		c := d.Spec.Template.Spec.Containers[0]
		env := envOf(c)
		for name, v := range map[string]string{
			"FLEET_CONSOLE_TRUSTED_HEADER":    "X-Forwarded-User",
			"FLEET_CONSOLE_TRUSTED_OPERATORS": "alice,bob",
			"FLEET_CONSOLE_SECURE_COOKIES":    "true",
			"FLEET_CONSOLE_ADDR":              ":9000",
			"FLEET_CONSOLE_AUDIT_STREAM":      "off",
		} {
			if env[name].Value != v {
				t.Errorf("%s %q, want %q", name, env[name].Value, v)
			}
		}
		if _, ok := env["FLEET_CONSOLE_TOKENS_FILE"]; ok || len(c.VolumeMounts) > 0 || len(d.Spec.Template.Spec.Volumes) > 0 {
			t.Error("a tokens file without console.tokens.existingSecret")
		}
		if c.Ports[0].ContainerPort != 9000 || svc.Spec.Ports[0].Port != 80 {
			t.Errorf("container port %d, Service port %d", c.Ports[0].ContainerPort, svc.Spec.Ports[0].Port)
		}
		if _, ok := m.console["Ingress"]; ok {
			t.Error("an Ingress without console.ingress.enabled")
		}
	})

	t.Run("no consoleFrom", func(t *testing.T) {
		out, err := render(t, []string{defaults, writeValues(t, "console:\n  enabled: true\n  tokens:\n    existingSecret: t\nnetworkPolicy:\n  consoleFrom: []\n")})
		if err != nil {
			t.Fatal(err)
		}
		m := decode(t, out)
		checkPod(t, m)
		if _, _, np := consoleObjects(m); len(np.Spec.Ingress) != 0 {
			t.Errorf("ingress %s without networkPolicy.consoleFrom", dump(np.Spec.Ingress))
		}
	})

	t.Run("no NetworkPolicy", func(t *testing.T) {
		out, err := render(t, []string{defaults}, "console.enabled=true", tokens, "networkPolicy.enabled=false")
		if err != nil {
			t.Fatal(err)
		}
		m := decode(t, out)
		checkPod(t, m)
		if _, _, np := consoleObjects(m); np != nil {
			t.Error("the console's NetworkPolicy with networkPolicy.enabled=false")
		}
	})

	t.Run("the checksum follows the tokens' Secret", func(t *testing.T) {
		sum := func(sets ...string) string {
			out, err := render(t, []string{defaults}, append([]string{"console.enabled=true"}, sets...)...)
			if err != nil {
				t.Fatal(err)
			}
			d, _, _ := consoleObjects(decode(t, out))
			return d.Spec.Template.Annotations["checksum/tokens"]
		}
		a, b, c := sum(tokens), sum("console.tokens.existingSecret=fleet-console-tokens-2"), sum(tokens, "console.tokens.key=lines")
		if a == "" || a == b || a == c || a != sum(tokens) {
			t.Errorf("checksums %q, %q, %q", a, b, c)
		}
	})
}

// TestConsoleRefused: what cannot work, or would leave the console open, is
// refused with the setting's name.
func TestConsoleRefused(t *testing.T) {
	defaults := filepath.Join(chartDir, "ci", "default-values.yaml")
	on := []string{"console.enabled=true"}
	tokens := append(slices.Clone(on), "console.tokens.existingSecret=t")
	tests := []struct {
		name string
		sets []string
		want string
	}{
		{"neither tokens nor a trusted header", on,
			"console.enabled needs console.tokens.existingSecret (a Secret of lines \"<name> <role> <token>\") or console.trustedHeader"},
		{"trusted operators without the header", append(slices.Clone(tokens), "console.trustedOperators={alice}"),
			"console.trustedOperators needs console.trustedHeader"},
		{"a trusted header without the NetworkPolicy", append(slices.Clone(on), "console.trustedHeader=X-Forwarded-User", "networkPolicy.enabled=false"),
			"console.trustedHeader (X-Forwarded-User) trusts whoever reaches the console's port"},
		{"no /status", append(slices.Clone(tokens), "status.enabled=false"), "console.enabled needs status.enabled"},
		{"an Ingress without hosts", append(slices.Clone(tokens), "console.ingress.enabled=true"), "console.ingress.enabled needs console.ingress.hosts"},
		{"an Ingress the policy shuts out", append(slices.Clone(tokens), "console.ingress.enabled=true", "console.ingress.hosts[0].host=c.example.com",
			"networkPolicy.consoleFrom=null"), "console.ingress.enabled with networkPolicy.enabled needs networkPolicy.consoleFrom"},
		{"two replicas", append(slices.Clone(tokens), "console.replicaCount=2"), "/console/replicaCount"},
		{"a misspelled field", append(slices.Clone(tokens), "console.trustedHeadr=X"), "additional properties 'trustedHeadr' not allowed"},
		{"a header with a space", append(slices.Clone(on), "console.trustedHeader=X Forwarded User"), "/console/trustedHeader"},
		{"an operator with a comma", append(slices.Clone(on), "console.trustedHeader=X-User", "console.trustedOperators={a\\,b}"), "/console/trustedOperators/0"},
		{"a relative ingress path", append(slices.Clone(tokens), "console.ingress.enabled=true", "console.ingress.hosts[0].paths[0].path=console"),
			"/console/ingress/hosts/0/paths/0/path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := render(t, []string{defaults}, tt.sets...)
			if err == nil {
				t.Fatal("rendered")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v lacks %q", err, tt.want)
			}
		})
	}
	// Off, the console's settings are not checked: nothing of it renders.
	out, err := render(t, []string{defaults}, "console.trustedOperators={alice}", "console.ingress.enabled=true")
	if err != nil {
		t.Fatal(err)
	}
	if m := decode(t, out); len(m.console) > 0 {
		t.Errorf("console.enabled=false renders %v", m.kinds)
	}
}
