package proxy

import "sync"

// registry is a set of what is open now (connections waiting for a
// request, tunnels), in shards under locks of their own: connections that
// open and close at once seldom wait for one another, and an entry costs
// no allocation beyond the maps' growth.
type registry[T comparable] struct {
	shards [16]struct {
		mu sync.Mutex
		m  map[T]struct{}
	}
}

// add puts v in the shard that key picks; remove takes the same key.
func (r *registry[T]) add(key uint64, v T) {
	sh := &r.shards[key%uint64(len(r.shards))]
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = make(map[T]struct{})
	}
	sh.m[v] = struct{}{}
	sh.mu.Unlock()
}

func (r *registry[T]) remove(key uint64, v T) {
	sh := &r.shards[key%uint64(len(r.shards))]
	sh.mu.Lock()
	delete(sh.m, v)
	sh.mu.Unlock()
}

// each calls fn for every entry, holding one shard's lock at a time: fn
// must be quick and must not add or remove.
func (r *registry[T]) each(fn func(T)) {
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for v := range sh.m {
			fn(v)
		}
		sh.mu.Unlock()
	}
}
