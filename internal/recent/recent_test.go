package recent

import "testing"

// TestMapForgetsTheOldest: past its bound the map forgets its oldest keys,
// a key put again counts as new, and a deleted key's old put never
// forgets the key put after it.
func TestMapForgetsTheOldest(t *testing.T) {
	m := New[int, string](3)
	for k := 1; k <= 3; k++ {
		m.Put(k, "v")
	}
	m.Put(1, "again") // now the newest
	m.Put(4, "v")     // forgets 2, the oldest
	if _, ok := m.Get(2); ok {
		t.Error("2 kept past the bound")
	}
	if v, ok := m.Get(1); !ok || v != "again" {
		t.Errorf("1 = %q, %v; want it kept, put again", v, ok)
	}
	m.Delete(3)
	m.Put(3, "new") // 3's first put, evicted next, must not take this one
	m.Put(5, "v")
	m.Put(6, "v")
	if v, ok := m.Get(3); !ok || v != "new" {
		t.Errorf("3 = %q, %v; want its newer put kept", v, ok)
	}
	if m.Len() > 3 {
		t.Errorf("%d keys, bound 3", m.Len())
	}
	for k := range 1000 {
		m.Put(k%7, "v")
		if k%3 == 0 {
			m.Delete(k % 7)
		}
	}
	if m.Len() > 3 || len(m.order) > 6 {
		t.Errorf("%d keys and %d puts kept, bound 3", m.Len(), len(m.order))
	}
}
