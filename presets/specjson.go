package presets

import "bytes"

// SpecJSON is a pod's spec as the API server sent it (Raw, the JSON of
// the review's object.spec) and where in it are the lists a merge adds to,
// as ScanSpec finds them. Given one, MergePatch writes the merged spec as
// one replace of /spec: Raw copied byte for byte, with the injected
// entries written into its lists, so that every field of the pod, known to
// our Go types or not, reaches the merged pod as the API server sent it.
type SpecJSON struct {
	Raw                        []byte
	InitContainers, Containers []ContainerJSON
	// The spec's own lists; a Span's End is 0 when the spec has no such
	// key.
	InitContainerList, Volumes, ImagePullSecrets Span
	// Close is the offset of the spec object's closing brace.
	Close int
}

// ContainerJSON is where a container's lists are in SpecJSON.Raw.
type ContainerJSON struct {
	Env, EnvFrom, VolumeMounts Span
	// Close is the offset of the container object's closing brace.
	Close int
}

// Span is where a value is in SpecJSON.Raw: Raw[Start:End], a JSON array
// or null. End is 0 when there is no such value.
type Span struct{ Start, End int }

// ScanSpec finds the lists in a pod spec's JSON (which a decoder has
// already read as valid JSON: ScanSpec checks only what it relies on)
// without decoding anything: one pass, no allocation but the result, and
// none for the containers of a pod with up to two init containers and four
// containers. It returns nil for JSON it does not expect: a key written
// with escapes, a list key twice in one object, a list that is neither an
// array nor null, an empty object, JSON cut short. MergePatch then writes
// the patch entry by entry, which needs none of it.
func ScanSpec(raw []byte) *SpecJSON {
	s := &specScanner{scanner: scanner{b: raw}}
	out := &s.out
	out.Raw = raw
	out.InitContainers, out.Containers = s.initRoom[:0], s.room[:0]
	var containersSeen bool
	members := 0
	ok := s.object(&out.Close, func(key []byte) bool {
		members++
		var span *Span
		switch string(key) {
		case "initContainers":
			span = &out.InitContainerList
		case "containers":
			if containersSeen {
				return false
			}
			containersSeen = true
			return s.containers(&out.Containers)
		case "volumes":
			span = &out.Volumes
		case "imagePullSecrets":
			span = &out.ImagePullSecrets
		default:
			return s.value()
		}
		if span.End != 0 {
			return false
		}
		if span == &out.InitContainerList {
			start := s.pos()
			if !s.containers(&out.InitContainers) {
				return false
			}
			*span = Span{start, s.i}
			return true
		}
		return s.list(span)
	})
	s.space()
	if !ok || members == 0 || s.i != len(raw) {
		return nil
	}
	return out
}

// specScanner is a scanner with room for its result, allocated once.
type specScanner struct {
	scanner
	out      SpecJSON
	initRoom [2]ContainerJSON
	room     [4]ContainerJSON
}

// list consumes an array or null and records where it is.
func (s *specScanner) list(into *Span) bool {
	start := s.pos()
	if bytes.HasPrefix(s.b[start:], []byte("null")) {
		s.i += 4
	} else if start >= len(s.b) || s.b[start] != '[' || !s.value() {
		return false
	}
	*into = Span{start, s.i}
	return true
}

// containers consumes an array (or null) of containers, recording each
// one's lists.
func (s *specScanner) containers(into *[]ContainerJSON) bool {
	if s.pos() < len(s.b) && bytes.HasPrefix(s.b[s.i:], []byte("null")) {
		s.i += 4
		return true
	}
	return s.array(func() bool {
		var c ContainerJSON
		members := 0
		ok := s.object(&c.Close, func(key []byte) bool {
			members++
			var span *Span
			switch string(key) {
			case "env":
				span = &c.Env
			case "envFrom":
				span = &c.EnvFrom
			case "volumeMounts":
				span = &c.VolumeMounts
			default:
				return s.value()
			}
			return span.End == 0 && s.list(span)
		})
		*into = append(*into, c)
		return ok && members > 0
	})
}

// scanner walks valid JSON.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// pos skips white space and returns where the next value starts.
func (s *scanner) pos() int { s.space(); return s.i }

// next skips white space and consumes c if it comes next.
func (s *scanner) next(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str consumes a string and returns its bytes between the quotes, as
// written (escapes not resolved).
func (s *scanner) str() ([]byte, bool) {
	if !s.next('"') {
		return nil, false
	}
	start := s.i
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '\\':
			s.i += 2
		case '"':
			s.i++
			return s.b[start : s.i-1], true
		default:
			s.i++
		}
	}
	return nil, false
}

// object consumes an object, calling member with each key to consume its
// value; closing, when not nil, gets the offset of its closing brace.
func (s *scanner) object(closing *int, member func(key []byte) bool) bool {
	if !s.next('{') {
		return false
	}
	if closing != nil {
		*closing = s.pos()
	}
	if s.next('}') {
		return true
	}
	for {
		key, ok := s.str()
		if !ok || bytes.IndexByte(key, '\\') >= 0 || !s.next(':') || !member(key) {
			return false
		}
		if s.next(',') {
			continue
		}
		if closing != nil {
			*closing = s.pos()
		}
		return s.next('}')
	}
}

// array consumes an array, calling elem to consume each element.
func (s *scanner) array(elem func() bool) bool {
	if !s.next('[') {
		return false
	}
	if s.next(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if s.next(',') {
			continue
		}
		return s.next(']')
	}
}

// value consumes any value.
func (s *scanner) value() bool {
	s.space()
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '{':
		return s.object(nil, func([]byte) bool { return s.value() })
	case '[':
		return s.array(s.value)
	case '"':
		_, ok := s.str()
		return ok
	default: // a number, true, false or null
		start := s.i
	scan:
		for ; s.i < len(s.b); s.i++ {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				break scan
			}
		}
		return s.i > start
	}
}
