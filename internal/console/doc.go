// Package console is fleet's operator console: web pages served from the
// binary that show one consumer group (its members, partitions, retry
// tiers, held keys and dead letters) and let an operator replay dead
// letters, forget an idempotency record and unblock a held key.
//
// The pages are rendered on the server (html/template, which escapes
// everything it prints) and read without JavaScript; assets are embedded.
// Every request is authenticated (access.go): a bearer token or a session
// made from one, with the role viewer (read) or operator (act), or a user
// named by a trusted header that an authenticating proxy sets. Every
// action is a POST that carries a CSRF token bound to the caller
// (csrf.go), needs the operator role, and is written to the audit log
// (audit.go) with who, what, when and the outcome, whether it was allowed
// or not.
//
// The console knows neither Kafka nor Redis: it reads and acts through a
// Backend (backend.go), which fleet console and fleet dev provide.
package console
