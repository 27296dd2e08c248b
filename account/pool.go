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
	return cfg.Dial(ctx)
}

// Put gives c back for the next Get.
func (p *Pool) Put(c *Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

// CloseAll logs every idle connection out.
func (p *Pool) CloseAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Logout().Wait()
		c.Close()
	}
	p.conns = nil
}
