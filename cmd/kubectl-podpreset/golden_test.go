package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ (make golden)")

// TestGolden runs the CLI on every case under testdata/<command>/<case>/:
// the arguments are the lines of "args", run in the case directory, with
// "stdin" (if present) as standard input. The output must equal
// stdout.golden and stderr.golden, and the exit code the one in "exit"
// (0 when absent).
func TestGolden(t *testing.T) {
	dirs, err := filepath.Glob("testdata/*/*")
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatal("no golden cases under testdata/")
	}
	for _, dir := range dirs {
		if info, err := os.Stat(dir); err != nil || !info.IsDir() {
			continue
		}
		t.Run(dir[len("testdata/"):], func(t *testing.T) {
			argsFile, err := os.ReadFile(filepath.Join(dir, "args"))
			if err != nil {
				t.Fatalf("every case needs an args file: %v", err)
			}
			args := strings.Split(strings.TrimSpace(string(argsFile)), "\n")
			var stdin []byte
			if b, err := os.ReadFile(filepath.Join(dir, "stdin")); err == nil {
				stdin = b
			}
			t.Chdir(dir)
			var stdout, stderr bytes.Buffer
			cmd := newRootCommand(genericiooptions.IOStreams{In: bytes.NewReader(stdin), Out: &stdout, ErrOut: &stderr})
			cmd.SetArgs(args)
			code := 0
			if err := cmd.Execute(); err != nil {
				code = exitCode(err)
			}
			check(t, "stdout.golden", stdout.String())
			check(t, "stderr.golden", stderr.String())
			check(t, "exit", exitFile(code))
			if code != 0 && stdout.Len() > 0 && code != exitConflict {
				t.Errorf("exit %d with output on stdout: a failed run must not print a half result", code)
			}
		})
	}
}

func exitFile(code int) string {
	if code == 0 {
		return ""
	}
	return strconv.Itoa(code) + "\n"
}

// check compares got with a golden file (absent means empty), or rewrites it
// with -update.
func check(t *testing.T, name, got string) {
	t.Helper()
	if *update {
		if got == "" {
			if err := os.Remove(name); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			return
		}
		if err := os.WriteFile(name, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(name)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}

// TestApplyOutputIsAFixedPoint checks that applying the presets again to
// apply's own output changes nothing, as the webhook does when it sees pods
// of a workload that was already mutated offline: reading the case's files
// and then the first output must print the first output twice.
func TestApplyOutputIsAFixedPoint(t *testing.T) {
	for _, dir := range []string{"testdata/apply/workloads", "testdata/apply/mysql", "testdata/apply/conflicts"} {
		t.Run(dir, func(t *testing.T) {
			t.Chdir(dir)
			files, _ := filepath.Glob("*.yaml")
			var args []string
			for _, f := range files {
				args = append(args, "-f", f)
			}
			args = append(args, "--namespace-labels", "team=ops")
			first := runCLI(t, nil, append([]string{"apply"}, args...))
			second := runCLI(t, []byte(first), append([]string{"apply", "-f", "-"}, args...))
			if diff := cmp.Diff(first+"---\n"+first, second); diff != "" {
				t.Errorf("a second apply changed the output (-want +got):\n%s", diff)
			}
		})
	}
}

func runCLI(t *testing.T, stdin []byte, args []string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := newRootCommand(genericiooptions.IOStreams{In: bytes.NewReader(stdin), Out: &stdout, ErrOut: &stderr})
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, stderr.String())
	}
	return stdout.String()
}
