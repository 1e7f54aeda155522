// Package certs gives the webhook serving certificates that look after
// themselves.
//
// Self-managed mode (the default): the leader (Rotator) keeps a CA and a
// serving certificate for the webhook Service's DNS names in a Secret in the
// webhook's namespace, and writes the CA bundle into the caBundle of the
// webhook configurations it owns, repairing it when someone edits it. Every
// replica (Loader) watches that Secret through the API and serves its
// current certificate from memory, so a rotation reaches every replica in
// moments, with no restart and no wait for the kubelet to refresh a mounted
// volume. External mode serves whatever is in --cert-dir (cert-manager's
// Secret, mounted), reloading it when the files change, and writes nothing.
//
// Rotation is safe because of the overlap:
//
//  1. The serving certificate lives LeafLifetime (90 days by default) and is
//     renewed once less than Lookahead (20%) of its life is left: about 18
//     days before it expires. The new one is signed by the current CA, which
//     every caBundle already trusts, so it can be served at once.
//  2. The CA lives CALifetime (a year) and is replaced once less than
//     Lookahead of its life is left (73 days before expiry): first the next
//     CA is added to the bundle and the bundle is written into the webhook
//     configurations; only when it has been there for Propagation (2
//     minutes) is it promoted and a serving certificate signed by it issued.
//     So no replica serves a certificate that the API server cannot verify.
//  3. A CA stays in the bundle until it expires: a serving certificate never
//     outlives the CA that signed it (its NotAfter is clamped to the CA's), so
//     no certificate signed by an old CA can still be served once it is gone.
//
// On expiry: if the leader is gone for longer than the Lookahead window the
// certificate expires; with failurePolicy Ignore pods are then created
// without presets, with Fail they are refused. /readyz fails on a replica
// whose certificate is expired or not trusted by the caBundle, and the
// podpreset_certificate_expiry_timestamp_seconds metric lets you alert well
// before.
//
// Why not open-policy-agent/cert-controller: its rotator replaces the CA and
// the serving certificate together and writes only the new CA into the
// bundle (no overlap, so the API server and the replicas disagree for a
// while), and other replicas learn of a new certificate only when the
// kubelet refreshes the mounted Secret, up to a minute or more later. Both
// are the failures this package exists to prevent; the code that does it
// right is small.
package certs
