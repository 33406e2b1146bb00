package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/fleetworks/fleet/handlers/ledger"
	"github.com/fleetworks/fleet/internal/redistest"
)

// testPKI is a private CA and a certificate it signed for 127.0.0.1 and
// localhost, written as PEM files into a test directory.
type testPKI struct {
	dir                       string
	caFile, certFile, keyFile string
	pool                      *x509.CertPool
	server                    tls.Certificate
}

func newPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fleet test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{dir: dir, caFile: filepath.Join(dir, "ca.pem"), certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem"),
		pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	write := func(path, typ string, b []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(p.caFile, "CERTIFICATE", caDER)
	write(p.certFile, "CERTIFICATE", der)
	write(p.keyFile, "EC PRIVATE KEY", keyDER)
	p.server, err = tls.LoadX509KeyPair(p.certFile, p.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// runFleet starts fleet run with args and env, returning its logs; it is
// killed when the test ends.
func runFleet(t *testing.T, env []string, args ...string) *lockedBuffer {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"run", "--http-addr", "127.0.0.1:0", "--log-format", "text",
		"--session-timeout", "6s", "--heartbeat-interval", "500ms", "--drain-timeout", "3s"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	return startChild(t, cmd).out
}

// waitBalances waits until every balance in Redis is exact.
func waitBalances(t *testing.T, rdb redis.UniversalClient, want map[string]int64) {
	t.Helper()
	eventually(t, 60*time.Second, "every balance exact", func() bool {
		for acct, v := range want {
			got, err := rdb.Get(context.Background(), ledger.BalanceKey(acct)).Int64()
			if (err != nil && err != redis.Nil) || got != v {
				return false
			}
		}
		return true
	})
}

// TestKafkaTLSAndSASL runs fleet against a broker that takes only TLS
// connections (certificates from a private CA) and SASL PLAIN on them.
func TestKafkaTLSAndSASL(t *testing.T) {
	pki := newPKI(t)
	tr := &kafka.Transport{TLS: &tls.Config{RootCAs: pki.pool, MinVersion: tls.VersionTLS12},
		SASL: plain.Mechanism{Username: "fleet", Password: "tls-s3cret"}}
	c := newKafka(t, 2, tr, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{pki.server}, MinVersion: tls.VersionTLS12}),
		kfake.EnableSASL(), kfake.Superuser("PLAIN", "fleet", "tls-s3cret")).withRedis()
	msgs, want := ledgerStream(t, 400, 20, 0.2, 33)
	c.publish(msgs)
	logs := runFleet(t, []string{"FLEET_KAFKA_SASL_PASSWORD=tls-s3cret"},
		"--brokers", strings.Join(c.brokers, ","), "--topics", e2eTopic, "--group", "ledger-tls", "--redis", c.redis.URL(),
		"--kafka-tls", "--kafka-tls-ca-file", pki.caFile, "--kafka-sasl-mechanism", "PLAIN", "--kafka-sasl-username", "fleet")
	waitBalances(t, c.rdb, want)
	if strings.Contains(logs.String(), "tls-s3cret") {
		t.Error("the logs show the SASL password")
	}
	// fleet dlq takes the same settings.
	cmd := exec.Command(binary, "dlq", "list", "--brokers", strings.Join(c.brokers, ","), "--topic", e2eTopic,
		"--kafka-tls", "--kafka-tls-ca-file", pki.caFile, "--kafka-sasl-mechanism", "PLAIN", "--kafka-sasl-username", "fleet")
	cmd.Env = append(os.Environ(), "FLEET_KAFKA_SASL_PASSWORD=tls-s3cret")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "0 dead letters in payments.dlq") {
		t.Errorf("fleet dlq list over TLS and SASL: %v\n%s", err, out)
	}
}

// redisACL is the minimal rule set of docs/security.md for the ledger.
var redisACL = []string{"--user", "fleet", "on", ">acl-s3cret", "~fleet:idem:*", "~fleet:order:*", "~rate:fleet:*", "~ledger:*",
	"+@read", "+@write", "+@scripting", "+@connection", "+time", "+info", "+config|get", "-@dangerous"}

// TestRedisTLSAndACL runs fleet against a Redis that takes only TLS (its
// certificate from a private CA) as a user limited to the documented ACL:
// every balance is exact, and neither the logs nor /status show the
// password.
func TestRedisTLSAndACL(t *testing.T) {
	pki := newPKI(t)
	srv := redistest.StartTLS(t, pki.certFile, pki.keyFile, pki.caFile, redisACL...)
	c := newCluster(t, 2)
	msgs, want := ledgerStream(t, 600, 20, 0.2, 34)
	c.publish(msgs)
	addr := freeHTTPAddr(t)
	url := "rediss://fleet:acl-s3cret@" + srv.Addr() + "/0"
	logs := runFleet(t, []string{"FLEET_REDIS_URL=" + url},
		"--brokers", strings.Join(c.brokers, ","), "--topics", e2eTopic, "--group", "ledger-acl",
		"--redis-tls-ca-file", pki.caFile, "--http-addr", addr, "--rate-limits", "payment.captured=100000/s")
	waitBalances(t, srv.Client(t), want)
	_, status := httpGet(t, "http://"+addr+"/status")
	_, metrics := httpGet(t, "http://"+addr+"/metrics")
	for what, text := range map[string]string{"logs": logs.String(), "/status": status, "/metrics": metrics} {
		if strings.Contains(text, "acl-s3cret") {
			t.Errorf("%s show the Redis password", what)
		}
	}
	// A user without the rights is refused at start-up, at once.
	cmd := exec.Command(binary, "run", "--brokers", strings.Join(c.brokers, ","), "--topics", e2eTopic, "--group", "g",
		"--redis", "rediss://fleet:wrong@"+srv.Addr()+"/0", "--redis-tls-ca-file", pki.caFile, "--http-addr", "127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "redis denied access") || strings.Contains(string(out), "wrong@") {
		t.Errorf("wrong password: %v\n%s", err, out)
	}
}
