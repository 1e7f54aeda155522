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
// Tenancy (from the configuration file) says which Consul prefixes and Vault
// paths a PodPreset in a namespace, or a ClusterPodPreset, may read; the
// validating webhook and the controller both enforce it.
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
