package charttest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// helmVersion is the Helm the tests install when none is on the PATH.
const helmVersion = "v3.22.0"

// kubeVersion is the cluster version the chart is rendered for.
const kubeVersion = "1.31.0"

var chartDir = filepath.Join("..", "fleet")

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

// helm returns a helm binary: the one on the PATH, or one built with go
// install into the user cache (a few minutes, once per machine).
func helm(t *testing.T) string {
	t.Helper()
	helmOnce.Do(func() {
		if p, err := exec.LookPath("helm"); err == nil {
			helmPath = p
			return
		}
		cache, err := os.UserCacheDir()
		if err != nil {
			helmErr = err
			return
		}
		bin := filepath.Join(cache, "fleet-chart-test", "helm-"+helmVersion)
		helmPath = filepath.Join(bin, "helm")
		if _, err := os.Stat(helmPath); err == nil {
			return
		}
		cmd := exec.Command("go", "install", "helm.sh/helm/v3/cmd/helm@"+helmVersion)
		cmd.Env = append(os.Environ(), "GOBIN="+bin)
		if out, err := cmd.CombinedOutput(); err != nil {
			helmErr = fmt.Errorf("go install helm %s: %v\n%s", helmVersion, err, out)
		}
	})
	if helmErr != nil {
		t.Fatal(helmErr)
	}
	return helmPath
}

// ciValues lists charts/fleet/ci/*-values.yaml.
func ciValues(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil || len(files) < 4 {
		t.Fatalf("ci values files: %v, %v", files, err)
	}
	return files
}

// render runs helm template with values files and --set pairs.
func render(t *testing.T, files []string, sets ...string) ([]byte, error) {
	t.Helper()
	args := []string{"template", "fleet", chartDir, "--namespace", "payments", "--kube-version", kubeVersion}
	for _, f := range files {
		args = append(args, "-f", f)
	}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helm(t), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%v: %s", err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// manifests is a rendered release, decoded.
type manifests struct {
	deployment     *appsv1.Deployment // the workers'
	serviceAccount *corev1.ServiceAccount
	objects        map[string]any // by kind, but for the console's
	console        map[string]any // the console's objects, by kind
	kinds          []string       // the console's as "console <kind>"
}

// consoleComponent is the app.kubernetes.io/component of the console's
// objects.
const consoleComponent = "console"

// decode splits a rendered release and decodes every manifest strictly into
// its API type.
func decode(t *testing.T, rendered []byte) manifests {
	t.Helper()
	m := manifests{objects: map[string]any{}, console: map[string]any{}}
	for _, raw := range bytes.Split(rendered, []byte("\n---")) {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(raw, &meta); err != nil {
			t.Fatalf("manifest: %v\n%s", err, raw)
		}
		if meta.Kind == "" {
			continue // only comments
		}
		obj, err := typed(meta)
		if err != nil {
			t.Fatalf("%v\n%s", err, raw)
		}
		if err := yaml.UnmarshalStrict(raw, obj); err != nil {
			t.Fatalf("%s/%s does not decode strictly: %v\n%s", meta.APIVersion, meta.Kind, err, raw)
		}
		objects, kind := m.objects, meta.Kind
		if obj.(metav1.Object).GetLabels()["app.kubernetes.io/component"] == consoleComponent {
			objects, kind = m.console, "console "+meta.Kind
		}
		if _, dup := objects[meta.Kind]; dup {
			t.Fatalf("two %s manifests", kind)
		}
		objects[meta.Kind] = obj
		m.kinds = append(m.kinds, kind)
		if kind != meta.Kind {
			continue
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			m.deployment = o
		case *corev1.ServiceAccount:
			m.serviceAccount = o
		}
	}
	slices.Sort(m.kinds)
	if m.deployment == nil {
		t.Fatal("no Deployment rendered")
	}
	return m
}

// typed returns a value of the API type of a manifest.
func typed(meta metav1.TypeMeta) (any, error) {
	switch meta.APIVersion + " " + meta.Kind {
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, nil
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	case "networking.k8s.io/v1 Ingress":
		return &networkingv1.Ingress{}, nil
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}, nil
	case "monitoring.coreos.com/v1 PrometheusRule":
		return &monitoringv1.PrometheusRule{}, nil
	case "keda.sh/v1alpha1 ScaledObject":
		return &scaledObject{}, nil
	case "keda.sh/v1alpha1 TriggerAuthentication":
		return &triggerAuthentication{}, nil
	}
	return nil, fmt.Errorf("unexpected manifest %s %s", meta.APIVersion, meta.Kind)
}

// TestLint runs helm lint with every ci values file.
func TestLint(t *testing.T) {
	for _, f := range ciValues(t) {
		out, err := exec.Command(helm(t), "lint", chartDir, "-f", f, "--kube-version", kubeVersion).CombinedOutput()
		if err != nil {
			t.Errorf("helm lint -f %s: %v\n%s", f, err, out)
		}
	}
}

// TestCIValues renders every ci values file and checks what each must and
// must not contain.
func TestCIValues(t *testing.T) {
	// The NetworkPolicy is on by default.
	base := []string{"Deployment", "Service", "ServiceAccount", "NetworkPolicy"}
	want := map[string][]string{
		"default-values.yaml":          append(slices.Clone(base), "PodDisruptionBudget"),
		"external-secrets-values.yaml": append(slices.Clone(base), "PodDisruptionBudget"),
		"keda-values.yaml":             append(slices.Clone(base), "ScaledObject"),
		"keda-kafka-auth-values.yaml":  append(slices.Clone(base), "ScaledObject", "TriggerAuthentication", "PodDisruptionBudget"),
		"all-on-values.yaml": append(slices.Clone(base), "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule",
			"ConfigMap", "HorizontalPodAutoscaler"),
		"http-handler-sidecar-values.yaml": append(slices.Clone(base), "PodDisruptionBudget"),
		"console-values.yaml": append(slices.Clone(base), "PodDisruptionBudget",
			"console Deployment", "console Service", "console Ingress", "console NetworkPolicy"),
	}
	for _, f := range ciValues(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			out, err := render(t, []string{f})
			if err != nil {
				t.Fatal(err)
			}
			m := decode(t, out)
			kinds, ok := want[filepath.Base(f)]
			if !ok {
				t.Fatalf("no expectation for %s", f)
			}
			slices.Sort(kinds)
			if !slices.Equal(m.kinds, kinds) {
				t.Errorf("rendered %v, want %v", m.kinds, kinds)
			}
			checkPod(t, m)
		})
	}
}

// checkPod checks what must hold in every rendering: the security context,
// no API token, probes, the drain budget, the configuration.
func checkPod(t *testing.T, m manifests) {
	t.Helper()
	pod := m.deployment.Spec.Template.Spec
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("the pod mounts a service account token")
	}
	if sa := m.serviceAccount; sa != nil && (sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken) {
		t.Error("the service account mounts its token")
	}
	// fleet, and the HTTP handler sidecar when it is on.
	if len(pod.Containers) < 1 || len(pod.Containers) > 2 || pod.Containers[0].Name != "fleet" {
		t.Fatalf("containers %d, the first %q", len(pod.Containers), pod.Containers[0].Name)
	}
	checkHardened(t, pod)
	c := pod.Containers[0]
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Error("no liveness probe on /healthz")
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("no readiness probe on /readyz")
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	for _, name := range []string{"FLEET_BROKERS", "FLEET_TOPICS", "FLEET_GROUP", "FLEET_REDIS_URL", "FLEET_HTTP_ADDR", "FLEET_LEASE",
		"FLEET_RETENTION", "FLEET_ATTEMPTS", "FLEET_IN_PLACE_ATTEMPTS", "FLEET_RETRY_DELAYS", "FLEET_CONCURRENCY",
		"FLEET_SESSION_TIMEOUT", "FLEET_HEARTBEAT_INTERVAL", "FLEET_DRAIN_TIMEOUT", "FLEET_HANDLER_TIMEOUT", "FLEET_BATCH_SIZE",
		"FLEET_MAX_IN_FLIGHT", "FLEET_MAX_IN_FLIGHT_BYTES", "FLEET_COMMIT_INTERVAL", "FLEET_LOG_LEVEL", "FLEET_LOG_FORMAT",
		"FLEET_MAX_MESSAGE_BYTES", "FLEET_MAX_HEADERS", "FLEET_MAX_JSON_DEPTH", "FLEET_MAX_KEY_BYTES", "FLEET_MAX_ATTRIBUTE_BYTES",
		"FLEET_REDIS_MODE", "FLEET_REDIS_MIN_REPLICAS", "FLEET_REDIS_TLS_MIN_VERSION"} {
		if _, ok := env[name]; !ok {
			t.Errorf("no %s in the environment", name)
		}
	}
	for _, secret := range []string{"FLEET_KAFKA_SASL_PASSWORD", "FLEET_KAFKA_SASL_USERNAME"} {
		if e, ok := env[secret]; ok && (e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			t.Errorf("%s is not taken from a Secret", secret)
		}
	}
	if strings.Contains(env["FLEET_REDIS_URL"].Value, "@") {
		t.Error("FLEET_REDIS_URL carries credentials in the manifest: use redis.existingSecret")
	}
	drain := env["FLEET_DRAIN_TIMEOUT"].Value
	var drainSeconds int64
	if _, err := fmt.Sscanf(strings.TrimSuffix(drain, "s"), "%d", &drainSeconds); err != nil || !strings.HasSuffix(drain, "s") {
		drainSeconds = 60 // minutes or hours: at least a minute
	}
	var preStop int64
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		preStop = c.Lifecycle.PreStop.Sleep.Seconds
	} else {
		t.Error("no preStop sleep")
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || *g < preStop+drainSeconds+5 {
		t.Errorf("termination grace %v does not cover the preStop %ds and the drain %s", g, preStop, drain)
	}
	if len(pod.TopologySpreadConstraints) == 0 || c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("no topology spread, CPU request or memory limit")
	}
	checkStatusPort(t, m)
	checkNetworkPolicy(t, m)
	checkKedaAuth(t, m)
	checkConsole(t, m)
}

// checkHardened checks a pod's security: non-root, RuntimeDefault seccomp,
// and every container without privilege escalation, on a read-only root
// filesystem, with every capability dropped.
func checkHardened(t *testing.T, pod corev1.PodSpec) {
	t.Helper()
	ps := pod.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser == 0 ||
		ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context %+v", ps)
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || (sc.Privileged != nil && *sc.Privileged) ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
			t.Errorf("security context of container %s: %+v", c.Name, sc)
		}
	}
}

// TestToggles renders every combination of the optional resources: what is
// off renders nothing, and the pod is hardened in each.
func TestToggles(t *testing.T) {
	defaults := filepath.Join(chartDir, "ci", "default-values.yaml")
	toggles := []struct{ key, kind string }{
		{"serviceMonitor.enabled", "ServiceMonitor"},
		{"prometheusRule.enabled", "PrometheusRule"},
		{"dashboard.enabled", "ConfigMap"},
		{"networkPolicy.enabled", "NetworkPolicy"},
		{"podDisruptionBudget.enabled", "PodDisruptionBudget"},
	}
	scalers := []struct{ key, kind string }{{"", ""}, {"autoscaling.enabled", "HorizontalPodAutoscaler"}, {"keda.enabled", "ScaledObject"}}
	for mask := range 1 << len(toggles) {
		for _, scaler := range scalers {
			var sets, kinds []string
			kinds = append(kinds, "Deployment", "Service", "ServiceAccount")
			for i, tg := range toggles {
				on := mask&(1<<i) != 0
				sets = append(sets, fmt.Sprintf("%s=%t", tg.key, on))
				if on {
					kinds = append(kinds, tg.kind)
				}
			}
			if scaler.key != "" {
				sets = append(sets, scaler.key+"=true")
				kinds = append(kinds, scaler.kind)
			}
			out, err := render(t, []string{defaults}, sets...)
			if err != nil {
				t.Fatalf("%v: %v", sets, err)
			}
			m := decode(t, out)
			slices.Sort(kinds)
			if !slices.Equal(m.kinds, kinds) {
				t.Errorf("%v: rendered %v, want %v", sets, m.kinds, kinds)
			}
			if (scaler.key == "") != (m.deployment.Spec.Replicas != nil) {
				t.Errorf("%v: replicas %v: set exactly when no autoscaler owns them", sets, m.deployment.Spec.Replicas)
			}
			checkPod(t, m)
		}
	}
}

// TestValuesRefused: the schema refuses a misspelled field and a wrong
// type, and the templates refuse settings that cannot work.
func TestValuesRefused(t *testing.T) {
	defaults := filepath.Join(chartDir, "ci", "default-values.yaml")
	write := func(body string) string {
		f := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	tests := []struct {
		name  string
		files []string
		sets  []string
		want  string
	}{
		{"misspelled top-level field", []string{defaults, write("replicaCont: 3\n")}, nil, "additional properties 'replicaCont' not allowed"},
		{"misspelled nested field", []string{defaults, write("config:\n  drainTimout: 5s\n")}, nil, "additional properties 'drainTimout' not allowed"},
		{"wrong type", []string{defaults, write("replicaCount: three\n")}, nil, "got string, want integer"},
		{"wrong enum", []string{defaults, write("config:\n  logLevel: verbose\n")}, nil, "logLevel"},
		{"not a duration", []string{defaults, write("config:\n  lease: thirty\n")}, nil, "lease"},
		{"no brokers", nil, []string{"config.topics={t}", "config.group=g"}, "config.brokers"},
		{"both autoscalers", []string{defaults}, []string{"autoscaling.enabled=true", "keda.enabled=true"}, "alternatives"},
		{"grace shorter than the drain", []string{defaults}, []string{"terminationGracePeriodSeconds=12"}, "terminationGracePeriodSeconds (12) must cover"},
		{"SASL without a secret", []string{defaults}, []string{"kafka.sasl.enabled=true"}, "kafka.sasl.existingSecret"},
		{"SASL PLAIN in clear", []string{defaults}, []string{"kafka.sasl.enabled=true", "kafka.sasl.existingSecret=s", "kafka.sasl.mechanism=PLAIN"},
			"PLAIN without kafka.tls"},
		{"TLS 1.1", []string{defaults}, []string{"kafka.tls.minVersion=1.1"}, "minVersion"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := render(t, tt.files, tt.sets...)
			if err == nil {
				t.Fatal("rendered")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v lacks %q", err, tt.want)
			}
		})
	}
}

// TestSharedFiles: the PrometheusRule is the shared rules file, and the
// dashboard ConfigMap the shared dashboard, byte for byte.
func TestSharedFiles(t *testing.T) {
	out, err := render(t, []string{filepath.Join(chartDir, "ci", "all-on-values.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, out)
	rulesFile, err := os.ReadFile(filepath.Join(chartDir, "files", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		Groups []monitoringv1.RuleGroup `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(rulesFile, &want); err != nil {
		t.Fatal(err)
	}
	rule := m.objects["PrometheusRule"].(*monitoringv1.PrometheusRule)
	if len(want.Groups) == 0 || !reflect.DeepEqual(rule.Spec.Groups, want.Groups) {
		t.Error("the PrometheusRule differs from files/alerts.yaml")
	}
	dash, err := os.ReadFile(filepath.Join(chartDir, "files", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	cm := m.objects["ConfigMap"].(*corev1.ConfigMap)
	if cm.Data["fleet.json"] != strings.TrimRight(string(dash), "\n") || cm.Labels["grafana_dashboard"] != "1" {
		t.Error("the dashboard ConfigMap differs from files/dashboard.json or lacks the sidecar label")
	}
}

// TestExternalSecrets: credentials come from the named Secrets, and the
// Kafka CA is mounted where FLEET_KAFKA_TLS_CA_FILE points.
func TestExternalSecrets(t *testing.T) {
	out, err := render(t, []string{filepath.Join(chartDir, "ci", "external-secrets-values.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	c := decode(t, out).deployment.Spec.Template.Spec
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Containers[0].Env {
		env[e.Name] = e
	}
	ref := func(name string) string {
		e := env[name]
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			return ""
		}
		return e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
	}
	if got := ref("FLEET_REDIS_URL"); got != "fleet-redis/url" {
		t.Errorf("FLEET_REDIS_URL from %q", got)
	}
	if ref("FLEET_KAFKA_SASL_USERNAME") != "fleet-kafka-credentials/username" || ref("FLEET_KAFKA_SASL_PASSWORD") != "fleet-kafka-credentials/password" {
		t.Error("SASL credentials not from fleet-kafka-credentials")
	}
	if env["FLEET_KAFKA_SASL_MECHANISM"].Value != "SCRAM-SHA-512" || env["FLEET_KAFKA_TLS"].Value != "true" {
		t.Error("SASL mechanism or TLS not set")
	}
	mounts := c.Containers[0].VolumeMounts
	if len(mounts) != 2 || len(c.Volumes) != 2 {
		t.Fatalf("mounts %+v, volumes %+v: want the Kafka and the Redis CA", mounts, c.Volumes)
	}
	for i, want := range []struct{ env, secret string }{{"FLEET_KAFKA_TLS_CA_FILE", "fleet-kafka-ca"}, {"FLEET_REDIS_TLS_CA_FILE", "fleet-redis-ca"}} {
		ca := env[want.env].Value
		if !strings.HasPrefix(ca, mounts[i].MountPath+"/") || !mounts[i].ReadOnly || mounts[i].Name != c.Volumes[i].Name ||
			c.Volumes[i].Secret == nil || c.Volumes[i].Secret.SecretName != want.secret {
			t.Errorf("%s=%s, mount %+v, volume %+v", want.env, ca, mounts[i], c.Volumes[i])
		}
	}
}
