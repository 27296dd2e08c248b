package engine

import (
	"context"
	"sync"

	"github.com/mailmove/mailmove/account"
)

// connPool keeps the idle logged-in connections of one account, for the
// source and the sink alike.
type connPool struct {
	mu    sync.Mutex
	conns []*account.Conn
}

// get returns an idle connection that is still open, or dials cfg.
func (p *connPool) get(ctx context.Context, cfg *account.Config) (*account.Conn, error) {
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

// put gives c back for the next get.
func (p *connPool) put(c *account.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

// closeAll logs every idle connection out.
func (p *connPool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Logout().Wait()
		c.Close()
	}
	p.conns = nil
}
