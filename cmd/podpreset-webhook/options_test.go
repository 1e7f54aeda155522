package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseFlags(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "podpreset-system")
	got, err := parseFlags([]string{"--port", "10250", "--log-format", "text", "-v", "1", "--leader-elect"})
	if err != nil {
		t.Fatal(err)
	}
	want := defaultOptions()
	want.Namespace, want.Port, want.LogFormat, want.LogLevel, want.LeaderElect = "podpreset-system", 10250, "text", 1, true
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("options (-want +got):\n%s", diff)
	}
	if _, err := parseFlags([]string{"stray"}); err == nil || !strings.Contains(err.Error(), "stray") {
		t.Errorf("a stray argument gave %v, want an error naming it", err)
	}
}

func TestValidateNamesEachBadFlag(t *testing.T) {
	o := defaultOptions()
	o.Port, o.LogFormat, o.CertDir = 0, "xml", ""
	err := o.Validate()
	for _, want := range []string{"--port 0", `--log-format "xml"`, "--cert-dir"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %s", err, want)
		}
	}
	d := defaultOptions()
	if err := d.Validate(); err != nil {
		t.Errorf("the defaults do not validate: %v", err)
	}
}
