package otelmetrics

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
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
		fmt.Println(sink.requests.Load(), sink.bytes.Load(), sink.wire.Load(), processCPU().Nanoseconds())
	}
	srv.Stop()
	return 0
}

// processCPU is this process's user+system CPU time (all threads).
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
