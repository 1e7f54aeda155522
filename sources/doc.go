// Package sources materialises Consul KV and Vault values for presets.
//
// The admission path never calls Consul or Vault. Instead a controller
// (Controller; the leader of podpreset-webhook --role=sources, or of
// --role=all) reads every source a preset names and writes the values into
// ConfigMaps (Consul) and Secrets (Vault) in each namespace the preset
// serves; the engine (package presets) rewrites the preset's source
// references into native references to those objects, so a pod spec carries
// names, never values.
//
// A Hub keeps one loop per source, shared by every preset that reads it: a
// Consul blocking query (a change arrives in milliseconds) or a Vault read
// every refresh interval. Values survive errors: a source that goes down
// leaves the last good values in place, and its error, with since when, goes
// to the preset's status. The Consul and Vault interfaces are narrow (a key,
// a prefix, a secret, a certificate), with consul/api and vault/api behind
// them; Vault logs in lazily (token, AppRole or Kubernetes auth), renews its
// token at two thirds of its TTL and logs in again when renewal fails.
//
// Tenancy (from the configuration file) says which Consul folders and Vault
// paths a PodPreset in a namespace, or a ClusterPodPreset, may read,
// compared segment by segment after the paths pass the rules of
// presets.ValidateConsulKey and ValidateVaultPath; the validating webhook,
// the webhook's index and the controller all enforce it, and the hub refuses
// an invalid path once more before any request. The Consul client never
// follows a redirect.
//
// The controller is in pieces, one concern a file:
//
//	controller.go   wiring, Reconcile, reading the preset (presets.Load)
//	materialise.go  pure: plan + snapshots + certificates -> each object's data, each source's state
//	pki.go          Vault PKI certificates: issue, renew, keep in memory, verify before adopting
//	objects.go      writing objects (never taking one over), deleting stale ones
//	status.go       the status, pure, and its server-side apply
//	hub.go          one loop per source, shared
//	consul.go, vault.go, vault_auth.go   the clients
//	config.go, tenancy.go                the configuration file and the tenancy
//
// Materialised values are authentic: the controller writes what it read
// from Consul and Vault, and for certificates what it holds in memory, and
// overwrites a copy someone edited; it never copies key material from one
// namespace into another. An object of a planned name that the preset does
// not own is never written, and is reported in status.foreignObjects so that
// the webhook never points a pod at it.
//
// Departure from DESIGN.md: it names one object per preset,
// podpreset-<preset>. Kubernetes loads a whole ConfigMap or Secret into
// envFrom and into a volume, so an envFrom source and a volume source each
// get an object of their own (podpreset-<preset>-env-<hash>,
// podpreset-<preset>-vol-<volume>); single env values share
// podpreset-<preset>. One object per preset would export every value of the
// preset into every envFrom and every volume.
//
// The user-facing reference is docs/sources.md.
package sources
