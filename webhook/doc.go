// Package webhook holds podpreset's admission handlers, thin adapters around
// the presets engine:
//
//   - PodMutator (mutating, pods, CREATE): guard, read the caches, run
//     presets.Apply, answer with the insert-only JSON patch of
//     presets/patch (the pod's own entries, and fields our Go types do not
//     know, are never rewritten), every conflict as an admission warning, a
//     metric per outcome.
//   - PresetValidator (validating, PodPresets and ClusterPodPresets): the
//     checks that CEL in the CRD cannot do, each denial an apierrors Invalid
//     status that names the field.
//   - Store: the compiled, indexed presets the mutator reads, kept up to date
//     from informer events by one rebuild goroutine, so the admission path
//     makes no API call and takes no lock.
//
// Decisions:
//   - A request the mutator cannot serve (an undecodable pod, a namespace the
//     cache does not know) is answered with an error, never a panic; with the
//     default failurePolicy Ignore the pod is still created without presets,
//     and podpreset_admission_total{result="error"} counts it.
//   - Conflict warnings carry the kept and dropped values, shortened; logs
//     carry only field paths and preset names, never values.
//   - A malformed AdmissionReview is answered with HTTP 400 and a message
//     (controller-runtime answers 200 with the error inside the review).
package webhook
