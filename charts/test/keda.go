package charttest

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// scaledObject mirrors KEDA's keda.sh/v1alpha1 ScaledObject as its CRD
// publishes it (KEDA 2.18): a field the chart renders that KEDA does not
// know fails the strict decoding. KEDA's own Go package is not imported:
// it pins a controller-runtime that does not build with the Kubernetes
// libraries used here.
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              scaledObjectSpec `json:"spec"`
}

type scaledObjectSpec struct {
	ScaleTargetRef   *scaleTarget   `json:"scaleTargetRef"`
	PollingInterval  *int32         `json:"pollingInterval,omitempty"`
	InitialCooldown  *int32         `json:"initialCooldownPeriod,omitempty"`
	CooldownPeriod   *int32         `json:"cooldownPeriod,omitempty"`
	IdleReplicaCount *int32         `json:"idleReplicaCount,omitempty"`
	MinReplicaCount  *int32         `json:"minReplicaCount,omitempty"`
	MaxReplicaCount  *int32         `json:"maxReplicaCount,omitempty"`
	Advanced         map[string]any `json:"advanced,omitempty"`
	Triggers         []scaleTrigger `json:"triggers"`
	Fallback         map[string]any `json:"fallback,omitempty"`
}

type scaleTarget struct {
	Name                   string `json:"name"`
	APIVersion             string `json:"apiVersion,omitempty"`
	Kind                   string `json:"kind,omitempty"`
	EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
}

type scaleTrigger struct {
	Type              string            `json:"type"`
	Name              string            `json:"name,omitempty"`
	UseCachedMetrics  bool              `json:"useCachedMetrics,omitempty"`
	Metadata          map[string]string `json:"metadata"`
	AuthenticationRef *struct {
		Name string `json:"name"`
		Kind string `json:"kind,omitempty"`
	} `json:"authenticationRef,omitempty"`
	MetricType string `json:"metricType,omitempty"`
}

// triggerAuthentication mirrors KEDA's keda.sh/v1alpha1 TriggerAuthentication
// as its CRD publishes it, with only the part the chart renders:
// spec.secretTargetRef, each entry a scaler parameter taken from a key of a
// Secret in the same namespace. Anything else the chart rendered would fail
// the strict decoding.
type triggerAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              triggerAuthenticationSpec `json:"spec"`
}

type triggerAuthenticationSpec struct {
	SecretTargetRef []authSecretTargetRef `json:"secretTargetRef,omitempty"`
}

// authSecretTargetRef: all three fields are required by the CRD.
type authSecretTargetRef struct {
	Parameter string `json:"parameter"`
	Name      string `json:"name"`
	Key       string `json:"key"`
}
