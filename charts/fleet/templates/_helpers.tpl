{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "fleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name of the release's objects. */}}
{{- define "fleet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "fleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "fleet.labels" -}}
helm.sh/chart: {{ include "fleet.chart" . }}
{{ include "fleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "fleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "fleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fleet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image: <repository>@<digest> when a digest is given (the tag is then
not used), else <repository>:<tag or appVersion>. */}}
{{- define "fleet.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The HTTP handler sidecar's image, pinned by its digest when given. */}}
{{- define "fleet.sidecarImage" -}}
{{- $img := .Values.httpHandlers.sidecar.image }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository $img.tag }}
{{- end }}
{{- end }}

{{/* The port /status has to itself, or nothing when it is served on the http
port or not at all. */}}
{{- define "fleet.statusPort" -}}
{{- if and .Values.status.enabled .Values.status.port }}
{{- .Values.status.port | int }}
{{- end }}
{{- end }}

{{/* The consumer group and where it reads: FLEET_BROKERS, FLEET_TOPICS,
FLEET_GROUP (the workers' and the console's). */}}
{{- define "fleet.env.group" -}}
- name: FLEET_BROKERS
  value: {{ required "config.brokers: the Kafka bootstrap brokers" (join "," .Values.config.brokers | default "") | quote }}
- name: FLEET_TOPICS
  value: {{ required "config.topics: the source topics" (join "," .Values.config.topics | default "") | quote }}
- name: FLEET_GROUP
  value: {{ required "config.group: the consumer group" .Values.config.group | quote }}
{{- end }}

{{/* Redis: FLEET_REDIS_URL (from redis.existingSecret when set),
FLEET_REDIS_MODE and FLEET_REDIS_TLS_*; the CA is mounted by
fleet.tlsVolumeMounts. */}}
{{- define "fleet.env.redis" -}}
{{- if .Values.redis.existingSecret }}
- name: FLEET_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.existingSecretKey }}
{{- else }}
- name: FLEET_REDIS_URL
  value: {{ .Values.redis.url | quote }}
{{- end }}
- name: FLEET_REDIS_MODE
  value: {{ .Values.redis.mode | quote }}
- name: FLEET_REDIS_TLS_MIN_VERSION
  value: {{ .Values.redis.tls.minVersion | quote }}
{{- if .Values.redis.tls.insecureSkipVerify }}
- name: FLEET_REDIS_TLS_INSECURE_SKIP_VERIFY
  value: "true"
{{- end }}
{{- if .Values.redis.tls.existingSecret }}
- name: FLEET_REDIS_TLS_CA_FILE
  value: /etc/fleet/redis-tls/{{ .Values.redis.tls.caKey }}
{{- end }}
{{- end }}

{{/* Kafka's SASL (credentials from kafka.sasl.existingSecret) and TLS:
FLEET_KAFKA_SASL_* and FLEET_KAFKA_TLS*; the CA is mounted by
fleet.tlsVolumeMounts. Empty without either. */}}
{{- define "fleet.env.kafkaSecurity" -}}
{{- if .Values.kafka.sasl.enabled }}
- name: FLEET_KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.sasl.mechanism | quote }}
{{- if .Values.kafka.sasl.allowPlaintext }}
- name: FLEET_KAFKA_SASL_ALLOW_PLAINTEXT
  value: "true"
{{- end }}
- name: FLEET_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.usernameKey }}
- name: FLEET_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.passwordKey }}
{{- end }}
{{- if .Values.kafka.tls.enabled }}
- name: FLEET_KAFKA_TLS
  value: "true"
- name: FLEET_KAFKA_TLS_MIN_VERSION
  value: {{ .Values.kafka.tls.minVersion | quote }}
{{- if .Values.kafka.tls.existingSecret }}
- name: FLEET_KAFKA_TLS_CA_FILE
  value: /etc/fleet/kafka-tls/{{ .Values.kafka.tls.caKey }}
{{- end }}
{{- end }}
{{- end }}

{{/* The mounts of the Kafka and Redis CA Secrets that FLEET_KAFKA_TLS_CA_FILE
and FLEET_REDIS_TLS_CA_FILE point into; empty when neither is set. */}}
{{- define "fleet.tlsVolumeMounts" -}}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: /etc/fleet/kafka-tls
  readOnly: true
{{- end }}
{{- if .Values.redis.tls.existingSecret }}
- name: redis-tls
  mountPath: /etc/fleet/redis-tls
  readOnly: true
{{- end }}
{{- end }}

{{/* The volumes of fleet.tlsVolumeMounts. */}}
{{- define "fleet.tlsVolumes" -}}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret }}
{{- end }}
{{- if .Values.redis.tls.existingSecret }}
- name: redis-tls
  secret:
    secretName: {{ .Values.redis.tls.existingSecret }}
{{- end }}
{{- end }}

{{/* NetworkPolicy egress rules: DNS, then networkPolicy.egress.<name> for each
of .names (kafka, redis, handlers) that has ports. Takes (dict "np"
.Values.networkPolicy "names" (list ...)). */}}
{{- define "fleet.egressRules" -}}
{{- $np := .np }}
# DNS.
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
  {{- with $np.egress.dns.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- range $name := .names }}
{{- $rule := get $np.egress $name | default dict }}
{{- if $rule.ports }}
# {{ get (dict "kafka" "Kafka brokers." "redis" "Redis (and its Sentinels)." "handlers" "HTTP services the handlers call." "tracing" "The OTLP collector.") $name }}
- ports:
    {{- range $rule.ports }}
    - port: {{ . | int }}
      protocol: TCP
    {{- end }}
  {{- with $rule.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The console's objects: <fullname>-console. */}}
{{- define "fleet.console.fullname" -}}
{{- printf "%s-console" (include "fleet.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/* The console's pods are app.kubernetes.io/name <name>-console: the
workers' selector (name <name>) must not match them, or the workers'
Service, PodDisruptionBudget and NetworkPolicy would take them in. */}}
{{- define "fleet.console.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-console" (include "fleet.name" . | trunc 55 | trimSuffix "-") }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "fleet.console.labels" -}}
helm.sh/chart: {{ include "fleet.chart" . }}
{{ include "fleet.console.selectorLabels" . }}
app.kubernetes.io/component: console
app.kubernetes.io/part-of: {{ include "fleet.name" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The workers' port serving /status, as a number: status.port, or the
http port 8080 when status.port is 0. */}}
{{- define "fleet.workersStatusPort" -}}
{{- include "fleet.statusPort" . | default "8080" }}
{{- end }}

{{/* The container port named status when /status has one, else http. */}}
{{- define "fleet.workersStatusPortName" -}}
{{- if include "fleet.statusPort" . }}status{{ else }}http{{ end }}
{{- end }}

{{/* A checksum of the console's tokens, so that a change rolls the console:
the Secret's name and key, and the key's content when the Secret can be
read at install or upgrade (lookup; not under helm template or a GitOps
controller that does not run it, where renaming the Secret rolls it). */}}
{{- define "fleet.console.tokensChecksum" -}}
{{- $t := .Values.console.tokens }}
{{- $content := "" }}
{{- with $t.existingSecret }}
{{- $content = dig "data" $t.key "" (lookup "v1" "Secret" $.Release.Namespace .) }}
{{- end }}
{{- list $t.existingSecret $t.key $content | toJson | sha256sum }}
{{- end }}

{{/* The session cookie is Secure when asked for, or when the Ingress
serves TLS. */}}
{{- define "fleet.console.secureCookies" -}}
{{- $c := .Values.console }}
{{- if or $c.secureCookies (and $c.ingress.enabled $c.ingress.tls) }}true{{ else }}false{{ end }}
{{- end }}

{{/* Whether the KEDA triggers need a TriggerAuthentication: SASL credentials,
or the CA of a Kafka TLS Secret, to hand to KEDA. */}}
{{- define "fleet.kedaAuth" -}}
{{- if and .Values.keda.enabled (or .Values.kafka.sasl.enabled (and .Values.kafka.tls.enabled .Values.kafka.tls.existingSecret)) }}true{{ end }}
{{- end }}

{{/* KEDA's Kafka scaler name of kafka.sasl.mechanism. */}}
{{- define "fleet.kedaSasl" -}}
{{- get (dict "PLAIN" "plaintext" "SCRAM-SHA-256" "scram_sha256" "SCRAM-SHA-512" "scram_sha512") .Values.kafka.sasl.mechanism }}
{{- end }}

{{/* Seconds in a Go duration of whole seconds, minutes or hours ("10s", "1m"). */}}
{{- define "fleet.seconds" -}}
{{- $d := toString . }}
{{- if hasSuffix "ms" $d }}{{ div (trimSuffix "ms" $d | int) 1000 }}
{{- else if hasSuffix "h" $d }}{{ mul (trimSuffix "h" $d | int) 3600 }}
{{- else if hasSuffix "m" $d }}{{ mul (trimSuffix "m" $d | int) 60 }}
{{- else }}{{ trimSuffix "s" $d | int }}
{{- end }}
{{- end }}

{{/* The workers' tracing environment (tracing.*): FLEET_TRACING and the
standard OTEL_* variables, the pod's name and namespace as resource
attributes. Nothing with tracing off. */}}
{{- define "fleet.env.tracing" -}}
{{- with .Values.tracing }}
{{- if .enabled }}
- name: FLEET_TRACING
  value: "true"
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ required "tracing.enabled needs tracing.endpoint: the collector's OTLP endpoint, e.g. http://otel-collector.observability:4318" .endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ .protocol | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .sampler | quote }}
{{- if and (not (kindIs "invalid" .samplerArg)) (ne (toString .samplerArg) "") }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .samplerArg | toString | quote }}
{{- end }}
{{- with .serviceName }}
- name: OTEL_SERVICE_NAME
  value: {{ . | quote }}
{{- end }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE)%s" (.resourceAttributes | default "" | printf ",%s" | trimSuffix ",") | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Fails on settings that cannot work together. */}}
{{- define "fleet.validate" -}}
{{- if .Values.tracing.enabled }}
{{- range .Values.extraEnv }}
{{- if has .name (list "OTEL_RESOURCE_ATTRIBUTES" "POD_NAME" "POD_NAMESPACE") }}
{{- fail (printf "extraEnv sets %s, which tracing.enabled sets (the pod's name on every span): put more resource attributes in tracing.resourceAttributes" .name) }}
{{- end }}
{{- end }}
{{- end }}
{{- $sidecar := .Values.httpHandlers.sidecar }}
{{- if and $sidecar.enabled (not $sidecar.image.repository) }}
{{- fail "httpHandlers.sidecar.enabled needs httpHandlers.sidecar.image.repository (the handler's image)" }}
{{- end }}
{{- if and $sidecar.enabled (not (or $sidecar.image.tag $sidecar.image.digest)) }}
{{- fail "httpHandlers.sidecar.image needs a tag or a digest: what runs beside fleet must be a version you chose" }}
{{- end }}
{{- if and $sidecar.enabled (not .Values.httpHandlers.routes) }}
{{- fail "httpHandlers.sidecar.enabled needs httpHandlers.routes, such as \"inventory.*=http://127.0.0.1:8081/events\": which event types go to the sidecar" }}
{{- end }}
{{- if and $sidecar.enabled (or (eq (int $sidecar.port) 8080) (eq (int $sidecar.port) (int .Values.status.port))) }}
{{- fail (printf "httpHandlers.sidecar.port %d is fleet's own (8080, or status.port)" (int $sidecar.port)) }}
{{- end }}
{{- if and .Values.httpHandlers.header (not .Values.httpHandlers.token.existingSecret) }}
{{- fail "httpHandlers.header needs httpHandlers.token.existingSecret (the credential it carries)" }}
{{- end }}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled are alternatives: enable one" }}
{{- end }}
{{- $drain := include "fleet.seconds" .Values.config.drainTimeout | int }}
{{- if lt (int .Values.terminationGracePeriodSeconds) (add .Values.preStopSleepSeconds $drain 5 | int) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must cover preStopSleepSeconds (%d), config.drainTimeout (%ds) and 5s to leave the group" (int .Values.terminationGracePeriodSeconds) (int .Values.preStopSleepSeconds) $drain) }}
{{- end }}
{{- if and .Values.kafka.sasl.enabled (not .Values.kafka.sasl.existingSecret) }}
{{- fail "kafka.sasl.enabled needs kafka.sasl.existingSecret (a Secret with the username and password)" }}
{{- end }}
{{- if and .Values.kafka.sasl.enabled (eq .Values.kafka.sasl.mechanism "PLAIN") (not .Values.kafka.tls.enabled) (not .Values.kafka.sasl.allowPlaintext) }}
{{- fail "kafka.sasl.mechanism PLAIN without kafka.tls sends the password in clear: enable kafka.tls, use SCRAM, or set kafka.sasl.allowPlaintext" }}
{{- end }}
{{- $redisURL := .Values.redis.url | default "" }}
{{- if or (regexMatch "^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@" $redisURL) (regexMatch "(?i)[?&](username|password)=" $redisURL) }}
{{- fail "redis.url carries credentials (user:password@, user@, or a username or password parameter): they would be readable in the Deployment and the release. Put the whole URL in a Secret and name it in redis.existingSecret (its key in redis.existingSecretKey)" }}
{{- end }}
{{- $status := .Values.status }}
{{- if and $status.port (not $status.enabled) }}
{{- fail (printf "status.port (%d) is set but status.enabled is false: /status is served nowhere. Unset status.port, or enable status" (int $status.port)) }}
{{- end }}
{{- if eq (int $status.port) 8080 }}
{{- fail "status.port 8080 is the http port: leave status.port at 0 to serve /status there, or pick another port" }}
{{- end }}
{{- if and $status.service (not (include "fleet.statusPort" .)) }}
{{- fail "status.service needs status.port (a port of its own for /status); with status.port 0 /status is on the http port, which the Service already exposes" }}
{{- end }}
{{- if and $status.service (include "fleet.statusPort" .) (eq (int $status.port) (int .Values.service.port)) }}
{{- fail (printf "status.port (%d) is also service.port: the Service cannot have both on one port; pick another status.port" (int $status.port)) }}
{{- end }}
{{- $console := .Values.console }}
{{- if $console.enabled }}
{{- if not (or $console.tokens.existingSecret $console.trustedHeader) }}
{{- fail "console.enabled needs console.tokens.existingSecret (a Secret of lines \"<name> <role> <token>\") or console.trustedHeader (a header an authenticating proxy sets): the console never runs open" }}
{{- end }}
{{- if and $console.trustedOperators (not $console.trustedHeader) }}
{{- fail "console.trustedOperators needs console.trustedHeader: they are users that header names" }}
{{- end }}
{{- if and $console.trustedHeader (not .Values.networkPolicy.enabled) }}
{{- fail (printf "console.trustedHeader (%s) trusts whoever reaches the console's port to say who they are: it needs networkPolicy.enabled, with networkPolicy.consoleFrom naming only the proxy that sets the header" $console.trustedHeader) }}
{{- end }}
{{- if not .Values.status.enabled }}
{{- fail "console.enabled needs status.enabled: the console reads the workers' /status" }}
{{- end }}
{{- if and $console.ingress.enabled (not $console.ingress.hosts) }}
{{- fail "console.ingress.enabled needs console.ingress.hosts (host, and paths: path /, pathType Prefix)" }}
{{- end }}
{{- if and $console.ingress.enabled .Values.networkPolicy.enabled (not .Values.networkPolicy.consoleFrom) }}
{{- fail "console.ingress.enabled with networkPolicy.enabled needs networkPolicy.consoleFrom (the ingress controller's pods): with it empty nothing reaches the console" }}
{{- end }}
{{- end }}
{{- $np := .Values.networkPolicy }}
{{- if $np.enabled }}
{{- if not $np.metricsFrom }}
{{- fail "networkPolicy.metricsFrom is empty: an ingress rule without peers admits every source. Name who scrapes /metrics (the default is Prometheus: namespace monitoring, pods app.kubernetes.io/name=prometheus), or set networkPolicy.enabled=false" }}
{{- end }}
{{- if and $np.statusFrom (not (include "fleet.statusPort" .)) }}
{{- fail "networkPolicy.statusFrom needs status.port (a port of its own for /status); with status.port 0 /status is on the http port and reachable from networkPolicy.metricsFrom" }}
{{- end }}
{{- range $name := list "kafka" "redis" "handlers" "tracing" }}
{{- $rule := get $np.egress $name | default dict }}
{{- if and $rule.to (not $rule.ports) }}
{{- fail (printf "networkPolicy.egress.%s.to needs networkPolicy.egress.%s.ports: a rule without ports is not rendered" $name $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
