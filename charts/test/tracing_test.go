package charttest

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestTracing: tracing is off by default; tracing.enabled sets FLEET_TRACING
// and the standard OTEL_* variables, with the pod's name and namespace as
// resource attributes from the downward API; it refuses to run without an
// endpoint, and a sampler argument that is no share.
func TestTracing(t *testing.T) {
	defaults := filepath.Join(chartDir, "ci", "default-values.yaml")
	out, err := render(t, []string{defaults})
	if err != nil {
		t.Fatal(err)
	}
	for name := range envOf(decode(t, out).deployment.Spec.Template.Spec.Containers[0]) {
		if name == "FLEET_TRACING" || strings.HasPrefix(name, "OTEL_") {
			t.Errorf("tracing off by default, yet %s is set", name)
		}
	}

	out, err = render(t, []string{filepath.Join(chartDir, "ci", "all-on-values.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	env := envOf(decode(t, out).deployment.Spec.Template.Spec.Containers[0])
	for name, want := range map[string]string{
		"FLEET_TRACING":               "true",
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability:4317",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_TRACES_SAMPLER":         "parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG":     "0.05",
		"OTEL_SERVICE_NAME":           "payments-fleet",
		"OTEL_RESOURCE_ATTRIBUTES":    "k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE)",
	} {
		if got := env[name].Value; got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	for name, path := range map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"} {
		if f := env[name].ValueFrom; f == nil || f.FieldRef == nil || f.FieldRef.FieldPath != path {
			t.Errorf("%s does not come from the downward API's %s: %+v", name, path, env[name])
		}
	}

	for _, tt := range []struct {
		sets []string
		want string
	}{
		{[]string{"tracing.enabled=true"}, "tracing.endpoint"},
		{[]string{"tracing.enabled=true", "tracing.endpoint=http://otel:4318", "tracing.samplerArg=2"}, "samplerArg"},
		{[]string{"tracing.enabled=true", "tracing.endpoint=otel:4318"}, "endpoint"},
		{[]string{"tracing.enabled=true", "tracing.endpoint=http://otel:4318", "tracing.protocol=http/json"}, "protocol"},
	} {
		if _, err := render(t, []string{defaults}, tt.sets...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err %v, want one naming %s", tt.sets, err, tt.want)
		}
	}
}

// TestTracingSamplerArgZero: a sampler argument of 0 (a number, as YAML and
// --set give it) is passed on: left out, the SDK would sample every event.
func TestTracingSamplerArgZero(t *testing.T) {
	defaults := filepath.Join(chartDir, "ci", "default-values.yaml")
	on := writeValues(t, "tracing:\n  enabled: true\n  endpoint: http://otel:4318\n")
	for _, v := range []string{"tracing:\n  samplerArg: 0\n", "tracing:\n  samplerArg: 0.0\n", "tracing:\n  samplerArg: \"0\"\n"} {
		out, err := render(t, []string{defaults, on, writeValues(t, v)})
		if err != nil {
			t.Fatal(err)
		}
		env := envOf(decode(t, out).deployment.Spec.Template.Spec.Containers[0])
		if got, ok := env["OTEL_TRACES_SAMPLER_ARG"]; !ok || got.Value != "0" {
			t.Errorf("%q: OTEL_TRACES_SAMPLER_ARG = %+v (set %v), want \"0\"", v, got, ok)
		}
	}
	out, err := render(t, []string{defaults, on}, "tracing.samplerArg=null")
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := envOf(decode(t, out).deployment.Spec.Template.Spec.Containers[0])["OTEL_TRACES_SAMPLER_ARG"]; ok {
		t.Errorf("samplerArg null: OTEL_TRACES_SAMPLER_ARG = %+v, want none", got)
	}
}

// TestTracingResourceAttributes: more resource attributes follow the pod's
// name; extraEnv may not set what tracing sets (a second entry would win,
// and the pod's name would be lost), and an egress rule for the collector
// without ports is refused rather than left out.
func TestTracingResourceAttributes(t *testing.T) {
	defaults := filepath.Join(chartDir, "ci", "default-values.yaml")
	on := writeValues(t, "tracing:\n  enabled: true\n  endpoint: http://otel:4318\n")
	out, err := render(t, []string{defaults, on}, "tracing.resourceAttributes=deployment.environment.name=prod")
	if err != nil {
		t.Fatal(err)
	}
	want := "k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE),deployment.environment.name=prod"
	if got := envOf(decode(t, out).deployment.Spec.Template.Spec.Containers[0])["OTEL_RESOURCE_ATTRIBUTES"].Value; got != want {
		t.Errorf("OTEL_RESOURCE_ATTRIBUTES = %q, want %q", got, want)
	}
	for _, tt := range []struct {
		values, want string
	}{
		{"extraEnv:\n  - name: OTEL_RESOURCE_ATTRIBUTES\n    value: team=payments\n", "tracing.resourceAttributes"},
		{"extraEnv:\n  - name: POD_NAME\n    valueFrom: {fieldRef: {fieldPath: metadata.name}}\n", "POD_NAME"},
		{"tracing:\n  resourceAttributes: not an attribute\n", "resourceAttributes"},
		{"networkPolicy:\n  egress:\n    tracing:\n      ports: []\n      to:\n        - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: observability}}\n",
			"networkPolicy.egress.tracing.to"},
	} {
		if _, err := render(t, []string{defaults, on, writeValues(t, tt.values)}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err %v, want one naming %s", tt.values, err, tt.want)
		}
	}
	// Tracing off, extraEnv is the user's.
	if _, err := render(t, []string{defaults, writeValues(t, "extraEnv:\n  - name: POD_NAME\n    value: x\n")}); err != nil {
		t.Errorf("extraEnv POD_NAME with tracing off: %v", err)
	}
}
