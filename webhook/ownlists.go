package webhook

import "bytes"

// ownJSON is where a pod spec's lists are in its JSON: the env, envFrom
// and volumeMounts of each init container and container, and volumes.
type ownJSON struct {
	initContainers, containers [][3][]byte // env, envFrom, volumeMounts
	volumes                    []byte
	// room for the usual few containers, so that the lists above need no
	// allocation of their own
	initRoom [2][3][]byte
	room     [4][3][]byte
}

// containerFields are the container lists ownJSON keeps, in its order.
var containerFields = [3]string{"env", "envFrom", "volumeMounts"}

// scanOwnLists finds the lists in a pod spec's JSON, which the decoder has
// already read as valid JSON, without decoding anything: one pass, no
// allocation but the result. It returns nil when the JSON is not what it
// expects (a key written with escapes, say); the patch then inserts entry
// by entry, which needs no list's JSON.
func scanOwnLists(spec []byte) *ownJSON {
	s := &scanner{b: spec}
	out := &ownJSON{}
	out.initContainers, out.containers = out.initRoom[:0], out.room[:0]
	ok := s.object(func(key []byte) bool {
		switch string(key) {
		case "initContainers":
			return s.containers(&out.initContainers)
		case "containers":
			return s.containers(&out.containers)
		case "volumes":
			start := s.pos()
			if !s.value() {
				return false
			}
			out.volumes = spec[start:s.i]
			return true
		}
		return s.value()
	})
	if !ok {
		return nil
	}
	return out
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
// value.
func (s *scanner) object(member func(key []byte) bool) bool {
	if !s.next('{') {
		return false
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
		return s.object(func([]byte) bool { return s.value() })
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

// containers consumes an array of containers, keeping each one's lists.
func (s *scanner) containers(into *[][3][]byte) bool {
	return s.array(func() bool {
		var lists [3][]byte
		ok := s.object(func(key []byte) bool {
			for f, name := range containerFields {
				if string(key) == name {
					start := s.pos()
					if !s.value() {
						return false
					}
					lists[f] = s.b[start:s.i]
					return true
				}
			}
			return s.value()
		})
		*into = append(*into, lists)
		return ok
	})
}
