{{/*
The chart name, or nameOverride.
*/}}
{{- define "identity.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The resource name prefix: fullnameOverride, else <release>-<chart> (or the release
name alone when it already contains the chart name). Kept at 63 characters minus room
for the "-mailer"/"-migrate"/"-headless" suffixes.
*/}}
{{- define "identity.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 53 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 53 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 53 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of the mailer's resources.
*/}}
{{- define "identity.mailerFullname" -}}
{{- printf "%s-mailer" (include "identity.fullname" .) }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "identity.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource. Call with (dict "ctx" $ "component" "server").
*/}}
{{- define "identity.labels" -}}
helm.sh/chart: {{ include "identity.chart" .ctx }}
{{ include "identity.selectorLabels" . }}
app.kubernetes.io/version: {{ include "identity.imageTag" .ctx | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: identity
{{- end }}

{{/*
Selector labels: stable across upgrades, distinct per component (server, mailer,
migration). Call with (dict "ctx" $ "component" "server").
*/}}
{{- define "identity.selectorLabels" -}}
app.kubernetes.io/name: {{ include "identity.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
The image tag: image.tag, else the chart's appVersion.
*/}}
{{- define "identity.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/*
The image reference; a digest, when given, pins it.
*/}}
{{- define "identity.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "identity.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
The ServiceAccount the server and mailer pods run as.
*/}}
{{- define "identity.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "identity.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
A value as the string an environment variable holds. Helm may hand numbers over as
float64; integral ones are printed without an exponent (65536, not 6.5536e+04).
*/}}
{{- define "identity.envString" -}}
{{- if kindIs "float64" . }}
{{- if eq . (floor .) }}{{ printf "%.0f" . }}{{ else }}{{ . }}{{ end }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/*
ConfigMap data from a dict of variable -> value, leaving out unset values (null or
empty string), so that the service applies its own default. Sorted by name.
*/}}
{{- define "identity.configData" -}}
{{- range $name, $value := . }}
{{- if not (or (kindIs "invalid" $value) (eq (toString $value) "")) }}
{{ $name }}: {{ include "identity.envString" $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Settings shared by the server and the mailer.
*/}}
{{- define "identity.commonEnv" -}}
{{- $c := .Values.config }}
{{- $env := dict
  "IDENTITY_LOG_FORMAT" $c.logFormat
  "RUST_LOG" $c.rustLog
  "IDENTITY_DATABASE_ACQUIRE_TIMEOUT" $c.database.acquireTimeout
  "IDENTITY_AUTO_MIGRATE" (ternary "false" "true" .Values.migration.enabled)
  "IDENTITY_METRICS_ADDR" "0.0.0.0:9464"
  "IDENTITY_AMQP_EXCHANGE" (ternary $c.amqp.exchange "" .Values.mailer.enabled)
  "IDENTITY_EVENTS_EXCHANGE" (ternary $c.amqp.eventsExchange "" .Values.mailer.enabled)
  "IDENTITY_EVENTS_SOURCE" (ternary $c.amqp.eventsSource "" .Values.mailer.enabled)
  "OTEL_EXPORTER_OTLP_ENDPOINT" $c.otel.endpoint
  "OTEL_TRACES_SAMPLER" $c.otel.tracesSampler
  "OTEL_TRACES_SAMPLER_ARG" $c.otel.tracesSamplerArg
}}
{{- toYaml $env }}
{{- end }}

{{/*
Email delivery settings: the mailer's when it is enabled, else the server's.
*/}}
{{- define "identity.emailEnv" -}}
{{- $e := .Values.config.email }}
{{- $env := dict
  "IDENTITY_EMAIL_PROVIDER" $e.provider
  "IDENTITY_EMAIL_FROM" $e.from
  "SENDGRID_BASE_URL" $e.sendgridBaseUrl
}}
{{- toYaml $env }}
{{- end }}

{{/*
An env entry read from an existing Secret. Call with (dict "env" "NAME" "ref" .Values.secrets.x "what" "description").
*/}}
{{- define "identity.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "secrets: a Secret name for %s is required" .what) .ref.name | quote }}
      key: {{ required (printf "secrets: a key for %s is required" .what) .ref.key | quote }}
{{- end }}

{{/*
The email provider's secret, if the provider needs one.
*/}}
{{- define "identity.emailSecretEnv" -}}
{{- $provider := .Values.config.email.provider }}
{{- if eq $provider "sendgrid" }}
{{- include "identity.secretEnv" (dict "env" "SENDGRID_API_KEY" "ref" .Values.secrets.sendgridApiKey "what" "the SendGrid API key (config.email.provider=sendgrid)") }}
{{- else if eq $provider "smtp" }}
{{- include "identity.secretEnv" (dict "env" "IDENTITY_SMTP_URL" "ref" .Values.secrets.smtpUrl "what" "the SMTP URL (config.email.provider=smtp)") }}
{{- end }}
{{- end }}

{{/*
A probe. Call with (dict "probe" .Values.server.probes.readiness "port" 50051 "tls" bool).
Kubelet's gRPC probe speaks plaintext only, so with TLS a grpc probe becomes tcpSocket.
*/}}
{{- define "identity.probe" -}}
{{- $p := .probe }}
{{- if and (eq $p.type "grpc") (not .tls) }}
grpc:
  port: {{ .port }}
  service: {{ $p.grpcService | default "" | quote }}
{{- else }}
tcpSocket:
  port: {{ .port }}
{{- end }}
periodSeconds: {{ $p.periodSeconds }}
timeoutSeconds: {{ $p.timeoutSeconds }}
failureThreshold: {{ $p.failureThreshold }}
{{- with $p.successThreshold }}
successThreshold: {{ . }}
{{- end }}
{{- end }}

{{/*
topologySpreadConstraints with the component's selector filled in where omitted.
Call with (dict "ctx" $ "component" "server" "constraints" list).
*/}}
{{- define "identity.topologySpread" -}}
{{- $selector := fromYaml (include "identity.selectorLabels" (dict "ctx" .ctx "component" .component)) }}
{{- $out := list }}
{{- range .constraints }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" $selector) }}
{{- end }}
{{- $out = append $out $c }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
A PodDisruptionBudget spec body. Call with the podDisruptionBudget values.
*/}}
{{- define "identity.pdbBudget" -}}
{{- if not (or (kindIs "invalid" .minAvailable) (eq (toString .minAvailable) "")) }}
minAvailable: {{ include "identity.intOrString" .minAvailable }}
{{- else }}
maxUnavailable: {{ include "identity.intOrString" .maxUnavailable }}
{{- end }}
{{- end }}

{{/*
An IntOrString field: a percentage stays a quoted string, a number stays a number.
*/}}
{{- define "identity.intOrString" -}}
{{- if kindIs "string" . }}{{ quote . }}{{ else }}{{ include "identity.envString" . }}{{ end }}
{{- end }}
