package sources

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/podpreset/podpreset/presets"
)

// MaxObjectBytes is the most data one materialised ConfigMap or Secret
// holds: the API server's 1 MiB object limit, less room for metadata.
const MaxObjectBytes = 1<<20 - 16<<10

// objectKey names a materialised object in a namespace.
type objectKey struct {
	Kind string // ConfigMap or Secret
	Name string
}

// desiredObject is what one planned object should hold.
type desiredObject struct {
	objectKey
	// TLS makes a Secret of type kubernetes.io/tls.
	TLS   bool
	Items []presets.Item
	// Data is the content; nil means "leave what is there": a source was
	// never read, or may not be read.
	Data map[string][]byte
}

// sourceState is what the status will say of one source.
type sourceState struct {
	version  string
	synced   time.Time
	errs     []string
	errSince time.Time
	pending  bool
}

// certResult is the certificate of one vaultPKI volume, as pki.go found
// or issued it.
type certResult struct {
	// data is tls.crt, tls.key and ca.crt; nil when there is none to serve.
	data    map[string][]byte
	version string    // the serial number
	synced  time.Time // when it was issued, zero when it was kept
	err     string
	// errSince is when issuance started failing.
	errSince time.Time
}

// materialiseInput is everything materialise needs, read beforehand.
type materialiseInput struct {
	// preset is the preset's name, which object names derive from.
	preset string
	plan   []presets.Object
	// denied maps an item's field to why it may not be read (validation or
	// tenancy); such an item is never read and its object is left alone.
	denied map[string][]string
	// snaps are the hub's snapshots, by source ID.
	snaps map[string]Snapshot
	// certs are the vaultPKI certificates, by item field.
	certs map[string]certResult
}

// materialise computes, from the plan and what is known of every source,
// what each object should hold and what the status should say of each
// source. It is pure: no client, no clock, no I/O.
func materialise(in materialiseInput) ([]desiredObject, map[string]*sourceState) {
	states := map[string]*sourceState{}
	state := func(s presets.Source) *sourceState {
		st := states[s.ID()]
		if st == nil {
			st = &sourceState{}
			states[s.ID()] = st
		}
		return st
	}
	for _, o := range in.plan {
		for _, it := range o.Items {
			st := state(it.Source)
			st.errs = append(st.errs, in.denied[it.Field]...)
			if snap, ok := in.snaps[it.ID()]; ok && len(in.denied[it.Field]) == 0 {
				st.version, st.synced, st.pending = snap.Version, snap.SyncedAt, !snap.Has
				if snap.Err != nil {
					st.errs = append(st.errs, snap.Err.Error())
					st.errSince = snap.ErrSince
				}
			}
		}
	}
	out := make([]desiredObject, 0, len(in.plan))
	for _, o := range in.plan {
		d := desiredObject{objectKey: objectKey{Kind: o.Kind(), Name: o.Name(in.preset)}, Items: o.Items}
		d.TLS = len(o.Items) == 1 && o.Items[0].Layout == presets.LayoutTLS
		d.Data = fill(o, in, state)
		out = append(out, d)
	}
	// Deduplicate errors that several items of one source reported.
	for _, st := range states {
		st.errs = slices.Compact(st.errs)
	}
	return out, states
}

// fill computes one object's data, or nil to leave the object as it is.
func fill(o presets.Object, in materialiseInput, state func(presets.Source) *sourceState) map[string][]byte {
	data := map[string][]byte{}
	from := map[string]string{} // data key -> the source key it came from
	ready := true
	put := func(st *sourceState, k, origin string, v []byte) {
		if prev, dup := from[k]; dup {
			st.errs = append(st.errs, fmt.Sprintf("%q and %q both become %q; %q is left out", prev, origin, k, origin))
			return
		}
		from[k] = origin
		data[k] = v
	}
	for _, it := range o.Items {
		st := state(it.Source)
		if len(in.denied[it.Field]) > 0 {
			ready = false
			continue
		}
		if it.Layout == presets.LayoutTLS {
			c := in.certs[it.Field]
			if c.version != "" {
				st.version = c.version
			}
			st.synced = c.synced
			if c.err != "" {
				st.errs = append(st.errs, c.err)
				st.errSince = c.errSince
			}
			if c.data == nil {
				ready = false
				continue
			}
			maps.Copy(data, c.data)
			continue
		}
		snap := in.snaps[it.ID()]
		if !snap.Has {
			ready = false
			continue
		}
		if !snap.Exists {
			if !it.Optional {
				what := "Consul key"
				switch it.Kind {
				case presets.SourceVault:
					what = "Vault secret"
				case presets.SourceConsulPrefix:
					what = "Consul prefix"
				}
				st.errs = append(st.errs, fmt.Sprintf("%s %s does not exist (%s)", what, it.Path, it.Field))
			}
			continue
		}
		switch it.Layout {
		case presets.LayoutKey:
			k := ""
			if it.Kind == presets.SourceVault {
				k = it.VaultField
			}
			v, found := snap.Data[k]
			if !found {
				if !it.Optional {
					st.errs = append(st.errs, fmt.Sprintf("the Vault secret %s has no field %q (%s)", it.Path, it.VaultField, it.Field))
				}
				continue
			}
			put(st, it.DataKey, it.Path, v)
		case presets.LayoutEnv:
			for _, rel := range slices.Sorted(maps.Keys(snap.Data)) {
				if name := presets.EnvName(rel); name != "" {
					put(st, name, joinKey(it.Path, rel), snap.Data[rel])
				}
			}
		case presets.LayoutFiles:
			for _, rel := range slices.Sorted(maps.Keys(snap.Data)) {
				name, valid := presets.FileName(rel)
				if !valid {
					st.errs = append(st.errs, fmt.Sprintf("key %q cannot be a file name (%s): left out", joinKey(it.Path, rel), it.Field))
					continue
				}
				put(st, name, joinKey(it.Path, rel), snap.Data[rel])
			}
		}
	}
	if !ready {
		return nil
	}
	if size, largest := sizeOf(data); size > MaxObjectBytes {
		origin := from[largest]
		if origin == "" {
			origin = largest
		}
		for _, it := range o.Items {
			state(it.Source).errs = append(state(it.Source).errs,
				fmt.Sprintf("%s %s would hold %d bytes, over the %d-byte limit (the largest value: %q, %d bytes): not updated",
					o.Kind(), o.Name(in.preset), size, MaxObjectBytes, origin, len(data[largest])))
		}
		return nil
	}
	return data
}

// sizeOf is the size of an object's data and its largest key.
func sizeOf(data map[string][]byte) (size int, largest string) {
	for _, k := range slices.Sorted(maps.Keys(data)) {
		size += len(k) + len(data[k])
		if largest == "" || len(data[k]) > len(data[largest]) {
			largest = k
		}
	}
	return size, largest
}

func joinKey(prefix, rel string) string {
	if prefix == "" || strings.HasSuffix(prefix, "/") {
		return prefix + rel
	}
	return prefix + "/" + rel
}
