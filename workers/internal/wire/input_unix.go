//go:build unix

package wire

import (
	"errors"
	"io"
	"os"
	"syscall"
)

// newInput reads from r's file descriptor through the runtime's poller
// when it has one (pipes, sockets), so that a reader waits for input
// without a buffer; otherwise through r.Read.
func newInput(r io.Reader) input {
	if sc, ok := r.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			in := &pollInput{rc: rc}
			in.readyFn = in.ready // one closure, not one per read
			return in
		}
	}
	return readerInput{r}
}

// pollInput reads a descriptor that the runtime polls. The reader takes a
// buffer from its pool only once the descriptor has input, and hands it
// back before it waits.
type pollInput struct {
	rc      syscall.RawConn
	readyFn func(fd uintptr) bool // ready
	r       reader                // the reader of the current read call
}

func (in *pollInput) read(r reader) {
	in.r = r
	// Read calls ready at once and again each time the poller reports the
	// descriptor readable, until ready returns true. It fails when the
	// file is closed or cannot be polled.
	if err := in.rc.Read(in.readyFn); err != nil {
		r.filled(0, err)
	}
	in.r = nil
}

func (in *pollInput) ready(fd uintptr) bool {
	r := in.r
	for {
		n, err := syscall.Read(int(fd), r.space())
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EAGAIN):
			r.idle() // nothing to read: wait without the buffer
			return false
		case err != nil:
			r.filled(0, os.NewSyscallError("read", err))
		case n == 0:
			r.filled(0, io.EOF)
		default:
			r.filled(n, nil)
		}
		return true
	}
}
