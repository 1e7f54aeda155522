// Package admissionpolicy compiles presets into a native
// MutatingAdmissionPolicy (admissionregistration.k8s.io/v1, stable in
// Kubernetes 1.36) and its binding, so that the API server applies them in
// process, with no webhook in the pod-creation path, and stores the pod the
// webhook would have stored (issue 14; the differential e2e test,
// test/e2e/admissionpolicy_test.go, is the proof). It is pure: no client,
// no I/O.
//
// # One policy, every preset of its namespaces, in order
//
// The engine's result depends on the order of the presets that match (the
// first to add a key wins; env and envFrom keep preset order), and the API
// server's order among several policies is not one podpreset controls. So
// a policy holds every preset that can match a pod of the namespaces it is
// bound to, in the engine's order (PodPresets by name, then
// ClusterPodPresets by name), and each preset is a matching condition in
// CEL: its selector on the pod's labels, a ClusterPodPreset's
// namespaceSelector on namespaceObject's labels (so a label change needs no
// recompilation). The merge is one JSON patch, computed in CEL as the
// engine computes it: per list and per container, the candidates the
// matching presets inject, the first of each key kept unless the list
// already has it, inserted before the container's own env and envFrom and
// after its own volumeMounts, volumes and imagePullSecrets; annotations
// when absent; podpreset.dev/applied as recordApplied writes it. The
// pod's own entries are never rewritten: every operation is an add, so
// fields unknown to our types survive.
//
// Each preset is two CEL variables: whether it matches, and what it injects
// as plain data (maps and lists with dyn() members, built from the
// compiled entries' JSON, so the API server decodes into the pod exactly
// what the webhook's patch carries). The variable matched holds the data
// of the matching presets, in order, found as the webhook's index finds
// them: a map from label pairs (key=value, one equality or In requirement
// of each preset's selector) to presets, so that only the presets the
// pod's labels can match have their selectors evaluated; the mutation is the same text for
// every policy and reads only matched. The API server allows 100,000
// characters per expression: this way a policy holds as many presets as its
// object's size allows (the compiler refuses one over 1 MiB; the
// benchmark's 1,000 presets take 0.9 MB). The API server's CEL has no
// cel.bind; [e].map(x, body)[0] binds x alike.

// # What is not compiled
//
// Check refuses, naming the field: presets with Consul or Vault values
// (their materialised objects are checked at admission) and with foreign
// objects in their status.
//
// # Conflicts: handed off to the webhook (a departure from issue 14)
//
// A mutating policy cannot warn. Issue 14 asked for a
// ValidatingAdmissionPolicy with warnings in the webhook's wording; that
// wording cannot be had from one: it sees only the merged pod, where a
// value the pod kept from its own spec and an equal one an earlier preset
// gave it look alike (the webhook says which), and its CEL has no JSON
// encoder for the kept value of a volume or a container, which the
// webhook quotes. So in the webhook's auto mode the policy does not merge
// a pod the engine could warn about (Options.HandOff: a key of a matching
// preset that the pod, another matching preset or an injected init
// container already has; a refused preset that matches): its patch is
// empty, and the webhook, which the API server calls after the policies,
// finds the pod without the presets applied, merges it and warns in its
// own words. Every other pod the policy merges, and the webhook answers
// at once. So in auto mode the warnings are the webhook's, byte for byte
// (the differential e2e test compares them), and the cost of the policy
// is spared only on pods without conflicts, most of them. A policy that
// kubectl podpreset compile writes has no webhook behind it: it merges
// every pod and reports nothing; "kubectl podpreset apply" shows the
// conflicts.
//
// # Injected init containers
//
// They go before the pod's own, in preset order, unless the pod has a
// container of the name or an earlier preset injects one; like the
// engine, every preset's entries reach them. The patch first adds to the
// pod's own init containers at their indices, then inserts the injected
// ones, then adds to those.
//
// # Serving a cluster (the webhook's --admission-mode=auto)
//
// Plan (and PlanServable, which leaves to the webhook the namespaces whose
// presets do not compile) writes one policy per namespace with PodPresets
// and one for the ClusterPodPresets everywhere else. Each policy and
// binding carries AnnotationInputs, a hash of what it was compiled from;
// Layout computes the same from the presets a webhook replica holds, so a
// replica leaves a namespace's pods to a policy only once it sees the
// policy compiled from its own presets (webhook.PolicyServing).
package admissionpolicy
