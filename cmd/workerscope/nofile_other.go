//go:build !unix

package main

// nofileLimit is unknown here: the connection cap takes its default.
func nofileLimit() uint64 { return 0 }
