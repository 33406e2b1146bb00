package cli

import (
	"bytes"
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetworks/fleet/internal/redistest"
)

// TestBenchWorkerGetsRedisURLInEnvironment: a bench worker's command line,
// which every user of the machine can read, carries no Redis URL.
func TestBenchWorkerGetsRedisURLInEnvironment(t *testing.T) {
	url := "redis://fleet:bench-s3cret@127.0.0.1:6379/0"
	cmd := workerCommand(context.Background(), "/bin/fleet", []string{"bench-worker", "--mode", "fleet"}, url)
	for _, a := range cmd.Args {
		if strings.Contains(a, "s3cret") {
			t.Errorf("the command line holds the password: %q", cmd.Args)
		}
	}
	if !slices.Contains(cmd.Env, "FLEET_REDIS_URL="+url) {
		t.Error("the worker does not get the URL in its environment")
	}
}

// TestDevHidesRedisPassword runs fleet dev --keep-running on a Redis that
// needs a password: what it prints names the Redis without the password.
func TestDevHidesRedisPassword(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "dev-s3cret")
	cmd := exec.Command(binary, "dev", "--keep-running", "--events", "50", "--accounts", "5", "--http-addr", "127.0.0.1:0",
		"--redis", "redis://:dev-s3cret@"+srv.Addr()+"/0")
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	eventually(t, 60*time.Second, "still running", func() bool {
		select {
		case <-done:
			t.Fatalf("fleet dev exited:\n%s", out.String())
		default:
		}
		return strings.Contains(out.String(), "still running")
	})
	text := out.String()
	if strings.Contains(text, "dev-s3cret") {
		t.Errorf("fleet dev printed the Redis password:\n%s", text)
	}
	if !bytes.Contains([]byte(text), []byte("redis://:xxxxx@"+srv.Addr())) {
		t.Errorf("fleet dev does not name the Redis it uses:\n%s", text)
	}
}
