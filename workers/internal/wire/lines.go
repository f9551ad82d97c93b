package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// LineReader splits a worker's stdout into lines the way the pi RPC docs
// frame them: on '\n' only, with one trailing '\r' stripped. Lines longer
// than max are skipped whole and reported. A line is kept only as far as
// max: once it is longer, the rest is read through the 64 KiB read buffer
// and dropped, so one reader holds at most max bytes (plus that buffer)
// however long the line, and holds nothing between lines. A line within
// max that spans several reads is kept as a list of read-sized pieces and
// joined once at its end: no growing copies.
type LineReader struct {
	r      *bufio.Reader
	max    int
	pieces [][]byte // the line so far, when it spans several reads
	n      int      // bytes in pieces
	owned  bool     // the last line returned was allocated for the caller
}

// ReadBuffer is the size of a line reader's read buffer.
const ReadBuffer = 64 << 10

// NewLineReader reads lines of at most max bytes from r.
func NewLineReader(r io.Reader, max int) *LineReader {
	return &LineReader{r: bufio.NewReaderSize(r, ReadBuffer), max: max}
}

// Next returns the next line or oversize=true for a line whose length
// exceeded max. At EOF a final unterminated line is returned before io.EOF.
// The line is valid until the next call unless owned reports that it was
// allocated for the caller, who may then keep it.
func (lr *LineReader) Next() (line []byte, oversize bool, err error) {
	lr.owned = false
	lr.reset()
	discarding := false
	for {
		chunk, err := lr.r.ReadSlice('\n')
		switch {
		case err == nil:
			if discarding || lr.n+len(chunk)-1 > lr.max {
				lr.reset()
				return nil, true, nil
			}
			return trimEOL(lr.join(chunk)), false, nil
		case errors.Is(err, bufio.ErrBufferFull):
			// The line goes on: a line already longer than max is
			// oversize whatever follows.
			if discarding {
				continue
			}
			if lr.n+len(chunk) > lr.max {
				discarding = true
				lr.reset()
				continue
			}
			lr.pieces = append(lr.pieces, bytes.Clone(chunk))
			lr.n += len(chunk)
		default:
			if len(chunk) == 0 && lr.n == 0 {
				return nil, discarding, err
			}
			if discarding || lr.n+len(chunk) > lr.max {
				lr.reset()
				return nil, true, err
			}
			return trimEOL(lr.join(chunk)), false, err
		}
	}
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
