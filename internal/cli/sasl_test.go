package cli

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/scram"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/fleetworks/fleet/internal/redistest"
)

// TestKafkaSASL runs fleet against a broker that requires SASL
// SCRAM-SHA-512, with the credentials in FLEET_KAFKA_SASL_* as the chart
// sets them from a Secret: every event is applied once.
func TestKafkaSASL(t *testing.T) {
	mech, err := scram.Mechanism(scram.SHA512, "fleet", "s3cret-pw")
	if err != nil {
		t.Fatal(err)
	}
	c := newKafka(t, 2, &kafka.Transport{SASL: mech}, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "fleet", "s3cret-pw")).withRedis()
	msgs, want := ledgerStream(t, 500, 20, 0.2, 31)
	c.publish(msgs)
	logs := runFleet(t, []string{"FLEET_KAFKA_SASL_MECHANISM=SCRAM-SHA-512", "FLEET_KAFKA_SASL_USERNAME=fleet", "FLEET_KAFKA_SASL_PASSWORD=s3cret-pw"},
		"--brokers", strings.Join(c.brokers, ","), "--topics", e2eTopic, "--group", "ledger-sasl", "--redis", c.redis.URL())
	waitBalances(t, c.rdb, want)
	if strings.Contains(logs.String(), "s3cret-pw") {
		t.Error("the logs show the SASL password")
	}
}

// TestKafkaWrongPassword: a refused SASL password ends fleet run within
// seconds, with a non-zero exit and one clear line, not a retry loop.
func TestKafkaWrongPassword(t *testing.T) {
	k, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, e2eTopic),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "fleet", "s3cret-pw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	srv := redistest.Start(t)
	cmd := exec.Command(binary, "run", "--brokers", strings.Join(k.ListenAddrs(), ","), "--topics", e2eTopic, "--group", "g",
		"--redis", srv.URL(), "--http-addr", "127.0.0.1:0", "--log-format", "text")
	cmd.Env = append(os.Environ(), "FLEET_KAFKA_SASL_MECHANISM=SCRAM-SHA-512", "FLEET_KAFKA_SASL_USERNAME=fleet", "FLEET_KAFKA_SASL_PASSWORD=wrong-pw")
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("fleet run exited 0 with a wrong password")
		}
		t.Logf("exited %v after %v", err, time.Since(start).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("still running 20s after start with a wrong password:\n%s", stderr.String())
	}
	var last string
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		last = l
	}
	if !strings.HasPrefix(last, "fleet: ") || !strings.Contains(last, "SASL") || strings.Contains(stderr.String(), "wrong-pw") {
		t.Errorf("last line %q: want one clear fleet: line naming SASL, and no password anywhere", last)
	}
}
