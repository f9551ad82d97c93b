//go:build !unix

package wire

import "io"

// newInput reads through r.Read (the buffer is held while it blocks).
func newInput(r io.Reader) input { return readerInput{r} }
