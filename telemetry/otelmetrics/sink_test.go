package otelmetrics

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/protobuf/proto"
)

// sinkEnv makes the test binary an OTLP gRPC metrics receiver (runSink)
// instead of running tests: the export benchmarks send to it in a process
// of its own, so that their CPU figure is the sender's, as in production
// where the collector is another process.
const sinkEnv = "WORKERSCOPE_TEST_OTLP_SINK"

// otlpSink counts what it receives. Its codec counts the request bytes
// (after gzip) without decoding them; its listener counts the bytes on the
// wire (compressed, with gRPC's and HTTP/2's framing).
type otlpSink struct {
	collectormetrics.UnimplementedMetricsServiceServer
	requests, bytes, wire atomic.Int64
}

func (s *otlpSink) Export(context.Context, *collectormetrics.ExportMetricsServiceRequest) (*collectormetrics.ExportMetricsServiceResponse, error) {
	s.requests.Add(1)
	return &collectormetrics.ExportMetricsServiceResponse{}, nil
}

type countingCodec struct{ sink *otlpSink }

func (c countingCodec) Marshal(v any) ([]byte, error) { return proto.Marshal(v.(proto.Message)) }
func (c countingCodec) Unmarshal(data []byte, v any) error {
	c.sink.bytes.Add(int64(len(data)))
	return nil
}
func (c countingCodec) Name() string { return "proto" }

// countingListener counts what its connections read.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// runSink serves OTLP gRPC metrics on a loopback port, prints the address
// on stdout, then answers each line read from stdin with "requests bytes
// wire cpu-ns" (its own CPU time so far) until stdin closes.
func runSink() int {
	_ = gzip.Name // registers the gzip codec on the server side
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sink := &otlpSink{}
	srv := grpc.NewServer(grpc.ForceServerCodec(countingCodec{sink}))
	collectormetrics.RegisterMetricsServiceServer(srv, sink)
	go func() { _ = srv.Serve(countingListener{lis, &sink.wire}) }()
	fmt.Println(lis.Addr().String())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fmt.Println(sink.requests.Load(), sink.bytes.Load(), sink.wire.Load(), ProcessCPU().Nanoseconds())
	}
	srv.Stop()
	return 0
}

// ProcessCPU is this process's user+system CPU time (all threads). For
// the benchmarks (package otelmetrics_test).
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// SinkProc is an OTLP receiver in a child process (runSink), for the
// export benchmarks (package otelmetrics_test, so that they can build the
// pipeline with package workerseries, which imports this one).
type SinkProc struct {
	// Addr is the receiver's host:port.
	Addr string
	cmd  *exec.Cmd
	in   io.Writer
	out  *bufio.Scanner
}

// SinkStats is what the receiver counted: requests, their bytes after
// gzip, the bytes on the wire, and its CPU time so far.
type SinkStats struct {
	Requests, Bytes, Wire int64
	CPU                   time.Duration
}

// StartSink starts the receiver; it stops with tb.
func StartSink(tb testing.TB) *SinkProc {
	tb.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), sinkEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = in.Close(); _ = cmd.Wait() })
	s := &SinkProc{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	if !s.out.Scan() {
		tb.Fatalf("OTLP receiver did not start: %v", s.out.Err())
	}
	s.Addr = s.out.Text()
	return s
}

// Stats asks the receiver what it counted so far.
func (s *SinkProc) Stats(tb testing.TB) SinkStats {
	tb.Helper()
	var st SinkStats
	var cpu int64
	if _, err := fmt.Fprintln(s.in); err != nil {
		tb.Fatal(err)
	}
	if !s.out.Scan() {
		tb.Fatalf("OTLP receiver: %v", s.out.Err())
	}
	if _, err := fmt.Sscan(s.out.Text(), &st.Requests, &st.Bytes, &st.Wire, &cpu); err != nil {
		tb.Fatal(err)
	}
	st.CPU = time.Duration(cpu)
	return st
}
