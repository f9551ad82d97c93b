package workers

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// lineReader splits a worker's stdout into lines the way the pi RPC docs
// frame them: on '\n' only, with one trailing '\r' stripped. Lines longer
// than max are skipped whole and reported. A line is kept only as far as
// max: once it is longer, the rest is read through the 64 KiB read buffer
// and dropped, so one reader holds at most max bytes (plus that buffer)
// however long the line, and holds nothing between lines. A line within
// max that spans several reads is kept as a list of read-sized pieces and
// joined once at its end: no growing copies.
type lineReader struct {
	r      *bufio.Reader
	max    int
	pieces [][]byte // the line so far, when it spans several reads
	n      int      // bytes in pieces
	owned  bool     // the last line returned was allocated for the caller
}

// lineReadBuffer is the size of a line reader's read buffer.
const lineReadBuffer = 64 << 10

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, lineReadBuffer), max: max}
}

// next returns the next line or oversize=true for a line whose length
// exceeded max. At EOF a final unterminated line is returned before io.EOF.
// The line is valid until the next call unless owned reports that it was
// allocated for the caller, who may then keep it.
func (lr *lineReader) next() (line []byte, oversize bool, err error) {
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
func (lr *lineReader) join(last []byte) []byte {
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
func (lr *lineReader) reset() {
	clear(lr.pieces)
	lr.pieces = lr.pieces[:0]
	lr.n = 0
}

// lineOwned reports whether the line last returned by next was allocated
// for the caller (who may keep it) rather than lent from the read buffer.
func (lr *lineReader) lineOwned() bool { return lr.owned }

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte{'\n'})
	return bytes.TrimSuffix(b, []byte{'\r'})
}

// tailBuffer keeps the last n bytes written to it: a crashed worker's
// stderr tail for error messages. Safe for concurrent use via the worker's
// lock held by callers.
type tailBuffer struct {
	buf  []byte
	size int
}

func newTailBuffer(size int) *tailBuffer { return &tailBuffer{size: size} }

func (t *tailBuffer) Write(p []byte) {
	if len(p) >= t.size {
		t.buf = append(t.buf[:0], p[len(p)-t.size:]...)
		return
	}
	if over := len(t.buf) + len(p) - t.size; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, p...)
}

func (t *tailBuffer) String() string { return string(bytes.ToValidUTF8(t.buf, []byte("\uFFFD"))) }
