package workers

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// lineReader splits a worker's stdout into lines the way the pi RPC docs
// frame them: on '\n' only, with one trailing '\r' stripped. Lines longer
// than max are skipped whole (reported, never buffered past max), so a
// worker that floods its stdout cannot grow the supervisor's memory.
type lineReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// next returns the next line (valid until the next call) or oversize=true
// for a line whose length exceeded max. At EOF a final unterminated line is
// returned before io.EOF.
func (lr *lineReader) next() (line []byte, oversize bool, err error) {
	lr.buf = lr.buf[:0]
	if cap(lr.buf) > 1<<20 {
		lr.buf = nil // do not pin the memory of one huge line
	}
	discarding := false
	for {
		chunk, err := lr.r.ReadSlice('\n')
		switch {
		case err == nil:
			if discarding || len(lr.buf)+len(chunk)-1 > lr.max {
				return nil, true, nil
			}
			if len(lr.buf) == 0 {
				line = chunk
			} else {
				lr.buf = append(lr.buf, chunk...)
				line = lr.buf
			}
			return trimEOL(line), false, nil
		case errors.Is(err, bufio.ErrBufferFull):
			if !discarding {
				if len(lr.buf)+len(chunk) > lr.max+1 {
					discarding = true
					lr.buf = lr.buf[:0]
				} else {
					lr.buf = append(lr.buf, chunk...)
				}
			}
		default:
			if len(chunk) > 0 || len(lr.buf) > 0 {
				if discarding || len(lr.buf)+len(chunk) > lr.max {
					return nil, true, err
				}
				lr.buf = append(lr.buf, chunk...)
				return trimEOL(lr.buf), false, err
			}
			return nil, discarding, err
		}
	}
}

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
