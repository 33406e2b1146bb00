// Package charttest renders the fleet Helm chart with every values file of
// charts/fleet/ci and checks the result: each manifest decoded strictly
// into its Kubernetes API type (an unknown field fails), the custom
// resources into the Prometheus Operator's Go types and a mirror of KEDA's,
// the security context in every combination of toggles, and the schema
// refusing bad values. It is a module of its own so that the Kubernetes
// dependencies stay out of fleet's.
package charttest
