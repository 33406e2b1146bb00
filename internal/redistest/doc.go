// Package redistest starts a real redis-server for a test: on a free port of
// the loopback interface, in the test's temporary directory, with no
// persistence and maxmemory-policy noeviction. The server is private to the
// test (never the shared one on 6379), so a test may stop and restart it to
// simulate an outage.
//
// Lifecycle: Start waits until the server answers PING and registers a
// cleanup that stops it; Stop kills it and waits for it to exit; Restart
// starts it again on the same port, empty. redis-server must be on the PATH
// (CI installs the Debian package); Start fails the test otherwise.
package redistest
