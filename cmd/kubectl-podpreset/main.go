// Command kubectl-podpreset is the companion of the podpreset webhook,
// usable as a kubectl plugin (`kubectl podpreset ...`):
//
//   - apply: shows exactly what the webhook would do to workloads, by running
//     the same engine (presets.Apply) over manifests, with no cluster;
//   - migrate: rewrites settings.k8s.io/v1alpha1 PodPresets (removed in
//     Kubernetes 1.20) to podpreset.dev/v1alpha1;
//   - explain: for one pod, in a cluster or from files, which presets select
//     it and why (not), what they inject, and what the pod got of them;
//   - status: the presets of a cluster with their pods' counts.
//
// Output goes to stdout only when every input document was read and checked:
// a bad document makes the command print every problem, naming the file and
// the document, and exit 1 with nothing on stdout, never a half result.
// Conflicts are warnings on stderr, as kubectl prints the webhook's.
package main

import (
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"
)

func main() {
	cmd := newRootCommand(genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	if err := cmd.Execute(); err != nil {
		os.Exit(exitCode(err))
	}
}
