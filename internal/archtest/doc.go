// Package archtest holds no code, only a test: every promise a package
// comment makes about what the package imports (or must not import) is
// checked against `go list -deps` for every platform the binary is built
// for, so a doc and the code cannot drift apart; and no build output is
// committed (tracked_test.go).
//
// It imports only the standard library.
package archtest
