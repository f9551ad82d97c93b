package wire

import (
	"io"
	"sync"
	"sync/atomic"
)

// ReadBuffer is the size of a reader's read buffer.
const ReadBuffer = 64 << 10

// BufferPool holds read buffers of ReadBuffer bytes for the readers that
// share it (LineReader, ChunkReader), so that only the readers with input
// to read hold one. It is safe for concurrent use; the zero value is
// ready.
type BufferPool struct {
	p     sync.Pool
	inUse atomic.Int64
}

func (p *BufferPool) get() []byte {
	p.inUse.Add(1)
	if b, ok := p.p.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, ReadBuffer)
}

func (p *BufferPool) put(b []byte) {
	p.inUse.Add(-1)
	p.p.Put(&b)
}

// InUse is the number of buffers readers hold now: those with input to
// read, or blocked reading an input that is not polled.
func (p *BufferPool) InUse() int { return int(p.inUse.Load()) }

// reader is what an input reads into: a LineReader or a ChunkReader.
type reader interface {
	// space is where to read to: the free part of the reader's buffer,
	// taken from its pool if it holds none.
	space() []byte
	// filled records n bytes read into space, and the input's error.
	filled(n int, err error)
	// idle is called when the input has nothing to read, before waiting
	// for it: the reader hands its buffer back to the pool.
	idle()
}

// input is where a reader reads from (newInput).
type input interface {
	// read makes one read into r.space, waiting for input first.
	read(r reader)
}

// readerInput reads any io.Reader; the buffer is held while Read blocks.
type readerInput struct{ r io.Reader }

func (in readerInput) read(r reader) {
	n, err := in.r.Read(r.space())
	r.filled(n, err)
}

// ChunkReader reads an input in chunks of whatever each read returns, up
// to ReadBuffer bytes, into a buffer from a BufferPool that it holds only
// while input flows: waiting for input it holds none (as LineReader).
type ChunkReader struct {
	in   input
	pool *BufferPool
	buf  []byte
	n    int
	err  error
}

// NewChunkReader reads r with read buffers from pool (nil: a pool of its
// own).
func NewChunkReader(r io.Reader, pool *BufferPool) *ChunkReader {
	if pool == nil {
		pool = new(BufferPool)
	}
	return &ChunkReader{in: newInput(r), pool: pool}
}

// Next returns the next chunk read, valid until the next call, or the
// input's error (then again by every later call, and no buffer is held).
func (c *ChunkReader) Next() ([]byte, error) {
	c.n = 0
	for c.n == 0 && c.err == nil {
		c.in.read(c)
	}
	if c.n == 0 {
		c.idle()
		return nil, c.err
	}
	return c.buf[:c.n], nil
}

// Holding reports whether the reader holds a read buffer now.
func (c *ChunkReader) Holding() bool { return c.buf != nil }

func (c *ChunkReader) space() []byte {
	if c.buf == nil {
		c.buf = c.pool.get()
	}
	return c.buf
}

func (c *ChunkReader) filled(n int, err error) {
	c.n = max(n, 0)
	c.err = err
}

func (c *ChunkReader) idle() {
	if c.buf != nil {
		c.pool.put(c.buf)
		c.buf = nil
	}
}
