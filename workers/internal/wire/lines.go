package wire

import (
	"bytes"
	"io"
)

// LineReader splits a worker's stdout into lines the way the pi RPC docs
// frame them: on '\n' only, with one trailing '\r' stripped. Lines longer
// than max are skipped whole and reported. A line is kept only as far as
// max: once it is longer, the rest is read through the read buffer and
// dropped, so one reader holds at most max bytes (plus that buffer)
// however long the line. A line within max that spans several reads is
// kept as a list of read-sized pieces and joined once at its end: no
// growing copies.
//
// The read buffer (ReadBuffer bytes, from a BufferPool) is held only while
// lines flow. When the input has nothing more to read, the reader keeps
// the unfinished part of a line, if any, at its own size, hands the
// buffer back to the pool and waits for the input to become readable
// without one: an idle worker's reader holds no buffer (issue 22). That
// needs an input with a file descriptor the runtime polls (a pipe, a
// socket: see syscall.Conn); any other io.Reader is read into the buffer,
// which is then held while Read blocks.
type LineReader struct {
	in   input
	pool *BufferPool
	max  int

	buf  []byte // the read buffer while lines flow; nil while idle
	r, w int    // unread input is buf[r:w]
	err  error  // the input's error, returned once the lines before it are

	pieces     [][]byte // the line so far, when it spans several reads
	n          int      // bytes in pieces
	discarding bool     // the line so far is over max: drop the rest
	owned      bool     // the last line returned was allocated for the caller
}

// NewLineReader reads lines of at most max bytes from r, with read
// buffers from pool (nil: a pool of its own).
func NewLineReader(r io.Reader, max int, pool *BufferPool) *LineReader {
	if pool == nil {
		pool = new(BufferPool)
	}
	return &LineReader{in: newInput(r), pool: pool, max: max}
}

// Next returns the next line or oversize=true for a line whose length
// exceeded max. At EOF a final unterminated line is returned before io.EOF;
// the input's error is returned again by every later call.
// The line is valid until the next call unless owned reports that it was
// allocated for the caller, who may then keep it.
func (lr *LineReader) Next() (line []byte, oversize bool, err error) {
	lr.owned = false
	lr.reset()
	lr.discarding = false
	for {
		if i := bytes.IndexByte(lr.buf[lr.r:lr.w], '\n'); i >= 0 {
			chunk := lr.buf[lr.r : lr.r+i+1]
			lr.r += i + 1
			if lr.discarding || lr.n+len(chunk)-1 > lr.max {
				lr.reset()
				return nil, true, nil
			}
			return trimEOL(lr.join(chunk)), false, nil
		}
		if lr.err != nil {
			return lr.last()
		}
		lr.fill()
	}
}

// last returns the final unterminated line (the input has ended) and the
// input's error, and hands the read buffer back: the line is the
// caller's, not lent from it.
func (lr *LineReader) last() (line []byte, oversize bool, err error) {
	defer lr.release()
	chunk := lr.buf[lr.r:lr.w]
	lr.r = lr.w
	switch {
	case len(chunk) == 0 && lr.n == 0:
		return nil, lr.discarding, lr.err
	case lr.discarding || lr.n+len(chunk) > lr.max:
		lr.reset()
		return nil, true, lr.err
	}
	line = trimEOL(lr.join(chunk))
	if !lr.owned {
		line, lr.owned = bytes.Clone(line), true
	}
	return line, false, lr.err
}

// fill reads more input after buf[r:w], which holds no newline.
func (lr *LineReader) fill() {
	if lr.buf != nil {
		if lr.r == 0 && lr.w == len(lr.buf) {
			// A full buffer without a newline: the line goes on.
			lr.keep(lr.buf)
			lr.w = 0
		} else if lr.r > 0 {
			lr.w = copy(lr.buf, lr.buf[lr.r:lr.w])
			lr.r = 0
		}
	}
	lr.in.read(lr)
}

// acquire makes sure the reader holds a read buffer (for the input).
func (lr *LineReader) acquire() {
	if lr.buf == nil {
		lr.buf = lr.pool.get()
		lr.r, lr.w = 0, 0
	}
}

// idle hands the read buffer back to the pool before the reader waits for
// input: the unfinished part of a line in it is kept at its own size.
// Nothing is lent from the buffer any more (fill runs after the caller
// has taken the last line).
func (lr *LineReader) idle() {
	if lr.buf == nil {
		return
	}
	lr.keep(lr.buf[lr.r:lr.w])
	lr.release()
}

// release hands the read buffer back to the pool.
func (lr *LineReader) release() {
	if lr.buf != nil {
		lr.pool.put(lr.buf)
		lr.buf, lr.r, lr.w = nil, 0, 0
	}
}

// keep adds part of the line to its pieces, or drops it (and every piece
// so far) once the line is over max.
func (lr *LineReader) keep(part []byte) {
	if len(part) == 0 || lr.discarding {
		return
	}
	if lr.n+len(part) > lr.max {
		// A line already longer than max is oversize whatever follows.
		lr.discarding = true
		lr.reset()
		return
	}
	lr.pieces = append(lr.pieces, bytes.Clone(part))
	lr.n += len(part)
}

// join returns the pieces followed by last: last itself when there are no
// pieces, else one new slice (owned by the caller).
func (lr *LineReader) join(last []byte) []byte {
	if lr.n == 0 {
		return last
	}
	out := make([]byte, 0, lr.n+len(last))
	for _, p := range lr.pieces {
		out = append(out, p...)
	}
	out = append(out, last...)
	lr.reset()
	lr.owned = true
	return out
}

// reset drops the pieces of the line so far.
func (lr *LineReader) reset() {
	clear(lr.pieces)
	lr.pieces = lr.pieces[:0]
	lr.n = 0
}

// Owned reports whether the line last returned by Next was allocated
// for the caller (who may keep it) rather than lent from the read buffer.
func (lr *LineReader) Owned() bool { return lr.owned }

// Holding reports whether the reader holds a read buffer now (for tests
// and measurements: an idle reader holds none).
func (lr *LineReader) Holding() bool { return lr.buf != nil }

// space is the free part of the read buffer, taken from the pool if the
// reader holds none (reader).
func (lr *LineReader) space() []byte {
	lr.acquire()
	return lr.buf[lr.w:]
}

// filled records n bytes read into space, and the input's error.
func (lr *LineReader) filled(n int, err error) {
	lr.w += max(n, 0)
	if err != nil && lr.err == nil {
		lr.err = err
	}
}

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte{'\n'})
	return bytes.TrimSuffix(b, []byte{'\r'})
}

// TailBuffer keeps the last n bytes written to it: a crashed worker's
// stderr tail for error messages. It is not safe for concurrent use (the
// worker's lock guards it).
type TailBuffer struct {
	buf  []byte
	size int
}

// NewTailBuffer keeps the last size bytes.
func NewTailBuffer(size int) *TailBuffer { return &TailBuffer{size: size} }

// Write appends p, forgetting what no longer fits.
func (t *TailBuffer) Write(p []byte) {
	if len(p) >= t.size {
		t.buf = append(t.buf[:0], p[len(p)-t.size:]...)
		return
	}
	if over := len(t.buf) + len(p) - t.size; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, p...)
}

// String is the tail, invalid UTF-8 replaced.
func (t *TailBuffer) String() string { return string(bytes.ToValidUTF8(t.buf, []byte("\uFFFD"))) }
