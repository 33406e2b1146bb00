package charttest

import (
	"fmt"
	"maps"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

// kedaSASL is KEDA's Kafka scaler name of each SASL mechanism.
var kedaSASL = map[string]string{"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}

// checkKedaAuth checks, in every rendering, that KEDA reaches Kafka as the
// workers do: each trigger asks for SASL and TLS exactly when the Deployment
// uses them, and takes the username, password and CA from the very Secrets
// and keys the Deployment reads, through the TriggerAuthentication every
// trigger names.
func checkKedaAuth(t *testing.T, m manifests) {
	t.Helper()
	var so *scaledObject
	var ta *triggerAuthentication
	if o, ok := m.objects["ScaledObject"]; ok {
		so = o.(*scaledObject)
	}
	if o, ok := m.objects["TriggerAuthentication"]; ok {
		ta = o.(*triggerAuthentication)
	}
	if so == nil {
		if ta != nil {
			t.Error("a TriggerAuthentication without a ScaledObject")
		}
		return
	}
	pod := m.deployment.Spec.Template.Spec
	env := envOf(pod.Containers[0])
	secretRef := func(name string) string {
		if e := env[name]; e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			return e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		}
		return ""
	}
	// What the TriggerAuthentication must hand KEDA: what the pod reads.
	want := map[string]string{}
	if mech := env["FLEET_KAFKA_SASL_MECHANISM"].Value; mech != "" {
		want["username"], want["password"] = secretRef("FLEET_KAFKA_SASL_USERNAME"), secretRef("FLEET_KAFKA_SASL_PASSWORD")
	}
	if ca := env["FLEET_KAFKA_TLS_CA_FILE"].Value; ca != "" {
		for _, mount := range pod.Containers[0].VolumeMounts {
			if mount.MountPath == path.Dir(ca) {
				for _, v := range pod.Volumes {
					if v.Name == mount.Name && v.Secret != nil {
						want["ca"] = v.Secret.SecretName + "/" + path.Base(ca)
					}
				}
			}
		}
		if want["ca"] == "" {
			t.Errorf("FLEET_KAFKA_TLS_CA_FILE %s is not in a mounted Secret", ca)
		}
	}
	got := map[string]string{}
	if ta != nil {
		if ta.Name != m.deployment.Name+"-kafka" {
			t.Errorf("TriggerAuthentication %s, want %s-kafka", ta.Name, m.deployment.Name)
		}
		for _, ref := range ta.Spec.SecretTargetRef {
			if ref.Parameter == "" || ref.Name == "" || ref.Key == "" {
				t.Errorf("secretTargetRef %+v lacks a required field", ref)
			}
			if _, dup := got[ref.Parameter]; dup {
				t.Errorf("parameter %s twice", ref.Parameter)
			}
			got[ref.Parameter] = ref.Name + "/" + ref.Key
		}
		if len(got) == 0 {
			t.Error("an empty TriggerAuthentication")
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("TriggerAuthentication hands KEDA %v; the pod reads %v", got, want)
	}
	for i, tr := range so.Spec.Triggers {
		switch {
		case ta == nil && tr.AuthenticationRef != nil:
			t.Errorf("trigger %d names %+v, which is not rendered", i, tr.AuthenticationRef)
		case ta != nil && (tr.AuthenticationRef == nil || tr.AuthenticationRef.Name != ta.Name ||
			(tr.AuthenticationRef.Kind != "" && tr.AuthenticationRef.Kind != "TriggerAuthentication")):
			t.Errorf("trigger %d names %+v, not TriggerAuthentication %s", i, tr.AuthenticationRef, ta.Name)
		}
		if s, mech := tr.Metadata["sasl"], env["FLEET_KAFKA_SASL_MECHANISM"].Value; s != kedaSASL[mech] {
			t.Errorf("trigger %d: sasl %q, the pod uses %q", i, s, mech)
		}
		if tls, on := tr.Metadata["tls"], env["FLEET_KAFKA_TLS"].Value == "true"; (tls == "enable") != on || (tls != "" && tls != "enable") {
			t.Errorf("trigger %d: tls %q, the pod's FLEET_KAFKA_TLS %t", i, tls, on)
		}
	}
}

// TestKedaKafkaAuth renders every combination of SASL mechanism, TLS and a
// TLS CA Secret with KEDA on, and off: the triggers use what the workers
// use, with a TriggerAuthentication for the credentials and the CA.
func TestKedaKafkaAuth(t *testing.T) {
	defaults := filepath.Join(chartDir, "ci", "default-values.yaml")
	for _, keda := range []bool{true, false} {
		for _, mech := range []string{"", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
			for _, tls := range []string{"off", "system roots", "CA Secret"} {
				sets := []string{fmt.Sprintf("keda.enabled=%t", keda)}
				if mech != "" {
					sets = append(sets, "kafka.sasl.enabled=true", "kafka.sasl.mechanism="+mech,
						"kafka.sasl.existingSecret=creds", "kafka.sasl.usernameKey=u", "kafka.sasl.passwordKey=p")
				}
				if tls != "off" {
					sets = append(sets, "kafka.tls.enabled=true")
				} else if mech == "PLAIN" {
					sets = append(sets, "kafka.sasl.allowPlaintext=true") // refused otherwise
				}
				if tls == "CA Secret" {
					sets = append(sets, "kafka.tls.existingSecret=kafka-ca", "kafka.tls.caKey=ca.pem")
				}
				t.Run(fmt.Sprintf("keda=%t,sasl=%q,tls=%s", keda, mech, tls), func(t *testing.T) {
					out, err := render(t, []string{defaults}, sets...)
					if err != nil {
						t.Fatal(err)
					}
					m := decode(t, out)
					checkPod(t, m)
					ta, hasTA := m.objects["TriggerAuthentication"]
					if !keda {
						if hasTA {
							t.Error("a TriggerAuthentication without KEDA")
						}
						return
					}
					var want []authSecretTargetRef
					if mech != "" {
						want = append(want, authSecretTargetRef{"username", "creds", "u"}, authSecretTargetRef{"password", "creds", "p"})
					}
					if tls == "CA Secret" {
						want = append(want, authSecretTargetRef{"ca", "kafka-ca", "ca.pem"})
					}
					if want == nil {
						// Nothing to hand KEDA: TLS with the system roots
						// needs only tls: enable in the triggers.
						if hasTA {
							t.Errorf("TriggerAuthentication %+v with nothing to hand KEDA", ta)
						}
					} else if !hasTA || !reflect.DeepEqual(ta.(*triggerAuthentication).Spec.SecretTargetRef, want) {
						t.Errorf("TriggerAuthentication %+v, want secretTargetRef %+v", ta, want)
					}
					so := m.objects["ScaledObject"].(*scaledObject)
					var topics []string
					for _, tr := range so.Spec.Triggers {
						topics = append(topics, tr.Metadata["topic"])
						wantMeta := map[string]string{}
						if mech != "" {
							wantMeta["sasl"] = kedaSASL[mech]
						}
						if tls != "off" {
							wantMeta["tls"] = "enable"
						}
						gotMeta := map[string]string{}
						for _, k := range []string{"sasl", "tls"} {
							if v, ok := tr.Metadata[k]; ok {
								gotMeta[k] = v
							}
						}
						if !maps.Equal(gotMeta, wantMeta) {
							t.Errorf("trigger %s: %v, want %v", tr.Metadata["topic"], gotMeta, wantMeta)
						}
						if (tr.AuthenticationRef != nil) != (want != nil) || (want != nil && tr.AuthenticationRef.Name != "fleet-kafka") {
							t.Errorf("trigger %s: authenticationRef %+v", tr.Metadata["topic"], tr.AuthenticationRef)
						}
					}
					if !slices.Equal(topics, []string{"payments"}) {
						t.Errorf("triggers for %v", topics)
					}
				})
			}
		}
	}
}

// TestKedaCIValues: the ci file with SASL over TLS and a private CA hands
// KEDA the same Secrets, under their custom keys, as the Deployment reads.
func TestKedaCIValues(t *testing.T) {
	out, err := render(t, []string{filepath.Join(chartDir, "ci", "keda-kafka-auth-values.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, out)
	checkPod(t, m)
	ta, ok := m.objects["TriggerAuthentication"].(*triggerAuthentication)
	want := []authSecretTargetRef{
		{"username", "fleet-kafka-credentials", "user"},
		{"password", "fleet-kafka-credentials", "pass"},
		{"ca", "fleet-kafka-ca", "ca.pem"},
	}
	if !ok || !reflect.DeepEqual(ta.Spec.SecretTargetRef, want) {
		t.Fatalf("TriggerAuthentication %+v", ta)
	}
	so := m.objects["ScaledObject"].(*scaledObject)
	if len(so.Spec.Triggers) != 2 {
		t.Fatalf("%d triggers, want one per topic", len(so.Spec.Triggers))
	}
	for _, tr := range so.Spec.Triggers {
		if tr.Metadata["sasl"] != "scram_sha256" || tr.Metadata["tls"] != "enable" || tr.AuthenticationRef == nil || tr.AuthenticationRef.Name != "fleet-kafka" {
			t.Errorf("trigger %+v", tr)
		}
	}
	if env := envOf(m.deployment.Spec.Template.Spec.Containers[0]); env["FLEET_KAFKA_TLS_CA_FILE"].Value != "/etc/fleet/kafka-tls/ca.pem" {
		t.Errorf("FLEET_KAFKA_TLS_CA_FILE %q", env["FLEET_KAFKA_TLS_CA_FILE"].Value)
	}
}
