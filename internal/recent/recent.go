// Package recent holds a map that keeps only its newest keys, for what a
// process remembers on the side and may forget under load: the traces of
// entries on their way through.
package recent

// Map is a map that forgets its oldest keys once it holds more than its
// bound. It is not safe for concurrent use.
type Map[K comparable, V any] struct {
	max   int
	byKey map[K]item[V]
	order []put[K] // puts, oldest first, some since deleted or put again
	n     uint64   // puts so far
}

type item[V any] struct {
	v V
	n uint64 // the put that stored v
}

type put[K comparable] struct {
	k K
	n uint64
}

// New returns an empty Map of at most max keys.
func New[K comparable, V any](max int) *Map[K, V] {
	return &Map[K, V]{max: max, byKey: make(map[K]item[V])}
}

// Put stores v under k, as the newest key, and forgets the oldest keys
// past the bound.
func (m *Map[K, V]) Put(k K, v V) {
	m.n++
	m.byKey[k] = item[V]{v, m.n}
	m.order = append(m.order, put[K]{k, m.n})
	for len(m.byKey) > m.max || len(m.order) > 2*m.max {
		p := m.order[0]
		m.order = m.order[1:]
		if it, ok := m.byKey[p.k]; ok && it.n == p.n {
			delete(m.byKey, p.k) // the oldest put still standing
		}
	}
}

// Get returns what k holds.
func (m *Map[K, V]) Get(k K) (V, bool) {
	it, ok := m.byKey[k]
	return it.v, ok
}

// Delete forgets k.
func (m *Map[K, V]) Delete(k K) { delete(m.byKey, k) }

// Len is how many keys it holds.
func (m *Map[K, V]) Len() int { return len(m.byKey) }
