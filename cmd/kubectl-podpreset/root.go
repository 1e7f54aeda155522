package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// version is set at build time (make dist: -X main.version=...).
var version = "dev"

// exitError carries an exit code; its message has already been printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Exit codes.
const (
	exitInvalid  = 1 // bad input or flags
	exitConflict = 2 // --fail-on-conflict and a conflict was found
)

func exitCode(err error) int {
	if e, ok := errors.AsType[exitError](err); ok {
		return e.code
	}
	return exitInvalid
}

func newRootCommand(streams genericiooptions.IOStreams) *cobra.Command {
	root := &cobra.Command{
		Use:   "kubectl-podpreset",
		Short: "Work with podpreset.dev PodPresets",
		Long: `kubectl-podpreset shows what the podpreset webhook does to workloads,
migrates settings.k8s.io/v1alpha1 PodPresets and compiles presets into
MutatingAdmissionPolicies, without a cluster; against a
cluster, it explains what a pod got of each preset and lists the presets with
their pods' counts.

Install it on your PATH to use it as "kubectl podpreset".`,
		Annotations: map[string]string{
			cobra.CommandDisplayNameAnnotation: "kubectl podpreset",
		},
		SilenceUsage:  true,
		SilenceErrors: true,
		// --version prints it (make dist stamps it).
		Version: version,
	}
	root.SetVersionTemplate("kubectl-podpreset {{.Version}}\n")
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	root.AddCommand(newApplyCommand(streams), newMigrateCommand(streams), newExplainCommand(streams), newStatusCommand(streams), newCompileCommand(streams))
	return root
}
