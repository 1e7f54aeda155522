// Package presets is the pure engine of podpreset: it matches pods against
// compiled PodPresets and ClusterPodPresets, orders them, and merges what they
// inject into a copy of the pod, recording every conflict. It does no I/O,
// takes no context and logs nothing; the webhook, the CLI and the controllers
// are thin adapters around it.
//
// # Compile once, apply many
//
// Presets are compiled (selectors parsed, values converted to core types) by
// Compile*, and gathered into a Set, which indexes them by one label pair of
// their selector: the pair that the fewest presets share. Apply looks up only
// the presets indexed under the pod's own labels, plus the few whose selector
// has no equality requirement (an empty selector, or only Exists/NotIn/
// DoesNotExist), so a request costs what its matches cost, not what the
// namespace holds. A Set is immutable; build a new one when presets change.
//
// What a Set holds is traced by the collector on every collection, so an
// admission pays for it in proportion to the presets held, whatever it
// matches: a compiled preset is kept to few objects (a matchLabels
// selector of up to two pairs, the usual, is held in the preset itself, and
// the index's lists are cut from one array), and Apply's merged pod gives
// containers whose lists come out the same one list between them.
//
// # The admission path
//
// A webhook needs a patch, not a merged pod. Select is Apply's first half
// (skip rules and matching, from the pod's metadata alone), so a pod that no
// preset matches costs no more than that; MergePatch is its second, which
// writes the JSON patch straight from the merge: no merged pod is built, no
// entry is copied, and each injected entry is encoded to JSON once per
// compiled preset (on first use) and then copied as bytes into every patch.
// Without the pod's own lists' JSON, the patch is byte for byte the one
// presets/patch computes from the pod and Apply's result (tested on every
// engine case and 2,000 generated ones): one add per entry. With the spec's
// JSON as the API server sent it (SpecJSON, from ScanSpec), the patch is the
// annotations and one replace of /spec: the API server's own bytes with the
// injected entries written into its lists, at the places and in the order
// the insert-only patch gives them. It is the same pod, every field our
// types do not know kept because nothing of the pod is re-encoded, and an
// API server applies it in about two thirds of the time of one operation
// per list (README, Performance). The engine cases and 500 of the generated
// ones prove that patch too, with the spec compact, indented and with null
// and [] lists, and a field our types do not know in the spec, in every
// container and in every own entry.
//
// Issue 13 asked both to keep the insert-only patch's protection of fields
// our types do not know and for a shape of patch the API server applies more
// cheaply. The replace of /spec keeps that protection another way: it
// writes back, byte for byte, what the API server sent, and what it adds is
// exactly what the insert-only patch inserts. The insert-only patch stays
// for callers without the spec's JSON and for JSON ScanSpec does not expect.
// WholeContainers says when the
// merge reads more of the pod's containers than their name, env, envFrom and
// volumeMounts (a preset injects init containers), so that the webhook can
// decode only those parts otherwise. Apply's result shares the injected
// entries' pointers with the compiled presets: it is read-only.
//
// # Precedence
//
// The pod's own spec always wins. Then PodPresets, then ClusterPodPresets (the
// more specific beats the more general); within a kind, by name. An earlier
// source wins over a later one. Every value that loses is a Conflict with the
// preset, the container, the field path, the kept and the dropped value; a
// conflict never stops the rest of the preset from applying.
//
// # Merge rules
//
//	field                 key                              rule
//	env                   name                             add when absent, before the container's own
//	envFrom               (configMap, secret, prefix)      add when absent, before the container's own
//	volumeMounts          mountPath                        add when absent, after the container's own
//	volumes               name                             add when absent, after the pod's own
//	initContainers        name                             add when absent, before the pod's own, in preset order
//	imagePullSecrets      name                             add when absent, after the pod's own
//	annotations           key                              add when absent
//
// Target containers are every init container and container of the pod,
// including init containers injected by any matching preset (they are all
// injected before anything else is merged), unless spec.containers names
// them. Injected env and envFrom entries keep preset order among themselves
// (the first preset's entries first), so $(VAR) references work in preset
// order too.
//
// Decisions the design left open:
//   - Identical entries are no-ops, not conflicts. An injected init container
//     that is already in the pod counts as identical when every field but env,
//     envFrom and volumeMounts is equal and those lists contain the preset's
//     own entries: that is what the container looks like after a first
//     application, which keeps a second application (reinvocation) silent.
//   - An envFrom entry with the same key but another `optional` is a conflict.
//   - Two mounts with the same mountPath but another subPath are a conflict.
//   - A name in spec.containers that the pod lacks is ignored.
//   - podpreset.dev/applied lists every preset that matched, even one whose
//     every entry was already present or lost a conflict; a re-application
//     updates an entry's generation in place and appends new presets.
//   - Mirror pods and pods annotated podpreset.dev/exclude: "true" (or the
//     legacy podpreset.admission.kubernetes.io/exclude) are left alone;
//     SkipNamespace says which namespaces are always out.
//
// # Consul and Vault sources
//
// Compile rewrites a source reference (env valueFrom.consulKV / .vault,
// envFrom consulKV / vault, volumes consulKV / vault / vaultPKI) into the
// native reference to the object that the sources controller materialises it
// into (SourcePlan lists them: podpreset-<preset>, podpreset-<preset>-env-
// <hash>, podpreset-<preset>-vol-<volume>), so Apply, the patch and the CLI
// see only core types and never a value. When a preset's status reports the
// versions it materialised, Merge writes podpreset.dev/sources-hash: a hash
// of those versions, kept on reinvocation.
//
// # Idempotency
//
// Applying the same presets to the result changes nothing: every entry is
// then present and identical. The webhook relies on this, as it is registered
// with reinvocationPolicy IfNeeded.
//
// # Known limit
//
// Kubernetes lets env override keys that arrive through envFrom, so a preset's
// env var beats a key of the same name in a ConfigMap that the pod loads with
// its own envFrom. The engine cannot see ConfigMap contents, so it cannot
// report that.
package presets
