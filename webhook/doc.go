// Package webhook holds podpreset's admission handlers, thin adapters around
// the presets engine:
//
//   - PodMutator (mutating, pods, CREATE): guard, read the caches, match
//     (presets.Select) on the pod's metadata alone, and only when a preset
//     matches decode the spec (PodObject: of the containers, only what the
//     merge reads, unless a preset injects init containers) and answer with
//     presets.MergePatch's JSON patch: the annotations, and one replace of
//     /spec whose value is the request's own spec bytes with the injected
//     entries written into its lists (found by a one-pass scan,
//     presets.ScanSpec), so every field our Go types do not know survives;
//     one add per entry when the scan finds what it does not expect. Every
//     conflict, refused preset and left-out entry is an admission warning,
//     each outcome a metric.
//   - PresetValidator (validating, PodPresets and ClusterPodPresets):
//     presets.Load with the tenancy and the preset policy, each denial an
//     apierrors Invalid status that names the field and the rule.
//   - Store: the loaded, indexed presets the mutator reads, kept up to date
//     from informer events by one rebuild goroutine, so the admission path
//     makes no API call and takes no lock. A preset that fails a check stays
//     in the index, refused, so that pods are told why they did not get it.
//   - StatusController (leader): the Accepted condition of every preset.
//   - Serve: the HTTP side, shared by both handlers.
//
// Departure from STYLE.md (let controller-runtime decode the request):
// Serve is our own thin handler, not controller-runtime's admission.Webhook.
// It decodes the review and its object in one pass (controller-runtime
// decodes the review, then the pod again from its raw bytes; the pod
// mutator goes further and leaves the spec undecoded until a preset
// matches), answers a
// request that is no review with an HTTP error status rather than 200 with
// the error inside a review (which the API server reads as a denial), caps
// request bodies per endpoint, and bounds the requests and request bytes in
// flight, answering 429 at once beyond them, so that a flood of large
// reviews cannot take the process over its memory limit. It decodes with
// JSON v2 (decode.go: github.com/go-json-experiment/json, the package that
// becomes Go's encoding/json/v2), which validates while it decodes where
// encoding/json and sigs.k8s.io/json scan every input twice, configured to
// read exactly what the API server's decoder reads (a differential test and
// fuzz target hold it to that); request bodies and answers live in pooled
// buffers. In process, a review of the benchmark's pod costs 75
// allocations with 5 presets injected (390 before this design) and 22 when
// nothing matches.
// The patch's shape is for the API server: it applies the 11 operations of
// the benchmark pod's patch about three times faster than the 84 of one add
// per entry (README, Performance).
//
// Decisions:
//   - A request the mutator cannot serve (a namespace the cache cannot read,
//     a patch that cannot be computed) is answered with HTTP 500, never a
//     panic: the API server applies the failure policy (Ignore: the pod is
//     created without presets), and podpreset_admission_total{result="error"}
//     counts it. A review whose pod does not decode is denied with 400 (its
//     metadata at once; its spec only when a preset matches, since a pod
//     that matches nothing is never decoded further): the API server never
//     sends one.
//   - Conflict warnings carry the kept and dropped values, shortened; logs
//     carry only field paths and preset names, never values.
package webhook
