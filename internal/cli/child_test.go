package cli

import (
	"context"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
)

// child is a command a test runs: its output, and its result once it
// has exited.
type child struct {
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan error
}

// startChild starts cmd with its output in a buffer. The end of the test
// kills it, and shows the output when the test failed.
func startChild(t *testing.T, cmd *exec.Cmd) *child {
	t.Helper()
	p := &child{cmd: cmd, out: &lockedBuffer{}, exited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		close(done)
		p.exited <- err
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("output of %s:\n%s", cmd.Args[0], p.out.String())
		}
	})
	return p
}

// interrupt sends SIGINT and fails the test unless the child exits 0
// within 20 s.
func (p *child) interrupt(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit after SIGINT: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("still running 20s after SIGINT")
	}
}

// startBroker is a kfake broker with topic, closed at the end of the test.
func startBroker(t *testing.T, topic string, partitions int32) []string {
	t.Helper()
	cl, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl.ListenAddrs()
}

// warehouseEvent is a binary-mode JSON CloudEvent from the source
// warehouse, keyed by key (no key when it is empty).
func warehouseEvent(id, typ, key, data string) kafka.Message {
	m := kafka.Message{Value: []byte(data), Headers: []kafka.Header{
		{Key: "ce_specversion", Value: []byte("1.0")}, {Key: "ce_id", Value: []byte(id)},
		{Key: "ce_source", Value: []byte("warehouse")}, {Key: "ce_type", Value: []byte(typ)},
		{Key: "content-type", Value: []byte("application/json")}}}
	if key != "" {
		m.Key = []byte(key)
	}
	return m
}

// publishTo writes msgs to topic, acknowledged by every replica.
func publishTo(t *testing.T, brokers []string, topic string, msgs ...kafka.Message) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond}
	defer w.Close()
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

// metricSum sums the series of the metric name served at addr whose labels
// contain labels ("" for every series).
func metricSum(addr, name, labels string) int {
	_, body := get(addr, "/metrics")
	n := 0
	for _, m := range regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(name)+`\{([^}]*)\} (\S+)`).FindAllStringSubmatch(body, -1) {
		if strings.Contains(m[1], labels) {
			v, _ := strconv.ParseFloat(m[2], 64)
			n += int(v)
		}
	}
	return n
}
