package account

import (
	"context"
	"sync"
)

// Pool keeps the idle logged-in connections of one account, so that a
// run's folders reuse them (the copy engine's source and sink alike).
type Pool struct {
	mu    sync.Mutex
	conns []*Conn
	// every connection handed out or given back, for Abort
	all  map[*Conn]bool
	kept *Conn
}

// Get returns an idle connection that is still open, or dials cfg.
func (p *Pool) Get(ctx context.Context, cfg *Config) (*Conn, error) {
	p.mu.Lock()
	for len(p.conns) > 0 {
		c := p.conns[len(p.conns)-1]
		p.conns = p.conns[:len(p.conns)-1]
		select {
		case <-c.Closed():
			c.Close()
			continue
		default:
		}
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	c, err := cfg.Dial(ctx)
	if err == nil {
		p.track(c)
	}
	return c, err
}

func (p *Pool) track(c *Conn) {
	p.mu.Lock()
	if p.all == nil {
		p.all = map[*Conn]bool{}
	}
	p.all[c] = true
	p.mu.Unlock()
}

// Keep marks c as the caller's own (a connection it lent): CloseAll and
// Abort leave it open.
func (p *Pool) Keep(c *Conn) {
	p.mu.Lock()
	p.kept = c
	p.mu.Unlock()
}

// Abort closes every connection of the pool, idle or in use, at once
// (Ctrl-C: whatever they wait for returns), but the one Keep names.
func (p *Pool) Abort() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.all {
		if c != p.kept {
			c.Close()
		}
	}
}

// Put gives c back for the next Get.
func (p *Pool) Put(c *Conn) {
	p.track(c)
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

// CloseAll logs every idle connection out (but the one Keep names).
func (p *Pool) CloseAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if c == p.kept {
			continue
		}
		c.Logout().Wait()
		c.Close()
	}
	p.conns = nil
	p.all = nil
}
