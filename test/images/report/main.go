// Command report is the node tests' workload: a container that says, in
// its own process, what it received. Every interval it prints its
// environment and the files under the given paths, and for a directory
// with tls.crt, tls.key and ca.crt, whether the certificate verifies
// against that CA and matches the key. Values that look secret (names with
// PASSWORD, SECRET, TOKEN or KEY; files named *.key) are printed as their
// SHA-256 only, so a test compares them with the Secret without printing
// them.
//
//	report [--interval 2s] [--path DIR]... [--mounts] [--once]
//	    (--mounts: every volume mounted into the container, found in
//	    /proc/self/mountinfo: what presets injected too)
//	report write FILE LINE...   (for init containers: write LINEs to FILE)
package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

func main() {
	if len(os.Args) > 2 && os.Args[1] == "write" {
		if err := os.WriteFile(os.Args[2], []byte(strings.Join(os.Args[3:], "\n")+"\n"), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "report:", err)
			os.Exit(1)
		}
		fmt.Printf("wrote %s at %s\n", os.Args[2], time.Now().UTC().Format(time.RFC3339Nano))
		return
	}
	interval := flag.Duration("interval", 2*time.Second, "how often to report")
	once := flag.Bool("once", false, "report once and exit")
	var paths []string
	flag.Func("path", "a file or directory to report (repeatable)", func(s string) error { paths = append(paths, s); return nil })
	mounts := flag.Bool("mounts", false, "report every volume mounted into the container")
	flag.Parse()
	for n := 1; ; n++ {
		all := paths
		if *mounts {
			all = append(slices.Clone(paths), volumeMounts()...)
		}
		report(n, all)
		if *once {
			return
		}
		time.Sleep(*interval)
	}
}

// secret says whether a name looks like it holds a secret.
func secret(name string) bool {
	u := strings.ToUpper(filepath.Base(name))
	return strings.HasSuffix(u, ".KEY") || slices.ContainsFunc([]string{"PASSWORD", "SECRET", "TOKEN", "KEY"}, func(s string) bool { return strings.Contains(u, s) })
}

func digest(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

func report(n int, paths []string) {
	fmt.Printf("report begin %d\n", n)
	env := os.Environ()
	slices.Sort(env)
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if secret(k) {
			v = digest([]byte(v))
		}
		fmt.Printf("env %s=%s\n", k, strconv.Quote(v))
	}
	for _, p := range paths {
		err := filepath.WalkDir(p, func(file string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			// Kubernetes' ..data link and timestamped directories: the
			// files are reported through their own links.
			if strings.HasPrefix(d.Name(), "..") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() {
				return nil
			}
			b, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			content := ""
			if !secret(file) && utf8.Valid(b) && len(b) <= 4096 {
				content = " text=" + strconv.Quote(string(b))
			}
			fmt.Printf("file %s size=%d %s%s\n", file, len(b), digest(b), content)
			return nil
		})
		if err != nil {
			fmt.Printf("path %s error=%s\n", p, strconv.Quote(err.Error()))
		}
		if msg, ok := verifyTLS(p); ok {
			fmt.Printf("tls %s %s\n", p, msg)
		}
	}
	fmt.Printf("report end %d\n", n)
}

// verifyTLS checks a directory's tls.crt against its ca.crt and its
// tls.key; ok is false when the directory holds no certificate.
func verifyTLS(dir string) (string, bool) {
	crt, err := os.ReadFile(filepath.Join(dir, "tls.crt"))
	if err != nil {
		return "", false
	}
	fail := func(err error) (string, bool) { return "failed=" + strconv.Quote(err.Error()), true }
	key, err := os.ReadFile(filepath.Join(dir, "tls.key"))
	if err != nil {
		return fail(err)
	}
	if _, err := tls.X509KeyPair(crt, key); err != nil {
		return fail(fmt.Errorf("the key does not match: %w", err))
	}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return fail(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return fail(errors.New("ca.crt holds no certificate"))
	}
	blk, _ := pem.Decode(crt)
	if blk == nil {
		return fail(errors.New("tls.crt holds no certificate"))
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return fail(err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fail(err)
	}
	return fmt.Sprintf("verified cn=%s serial=%x notAfter=%s", c.Subject.CommonName, c.SerialNumber, c.NotAfter.UTC().Format(time.RFC3339)), true
}

// volumeMounts lists the mount points of the container's volumes: every
// mount but the root, the kernel's file systems, the files the kubelet
// writes (hosts, hostname, resolv.conf, termination-log) and the service
// account token.
func volumeMounts() []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		p := f[4]
		switch {
		case p == "/", strings.HasPrefix(p, "/proc"), strings.HasPrefix(p, "/sys"), strings.HasPrefix(p, "/dev"),
			p == "/etc/hosts", p == "/etc/hostname", p == "/etc/resolv.conf",
			strings.HasPrefix(p, "/var/run/secrets/kubernetes.io"), strings.HasPrefix(p, "/run/secrets/kubernetes.io"):
			continue
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}
