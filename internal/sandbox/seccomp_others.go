//go:build linux && !amd64 && !arm64 && !386

package sandbox

// seccompABIs: no table for this architecture; Multipath TCP is not refused.
var seccompABIs []seccompABI
