package otelsetup

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/workerscope/workerscope/internal/testutil"
)

// TestEncodingExporterSendsWhatTheExporterWould: through the exporter's own
// connection (gzip, headers), the request that arrives is the one the OTLP
// exporter sends by itself, for every kind of metric, export after export.
func TestEncodingExporterSendsWhatTheExporterWould(t *testing.T) {
	rm := everyKind()
	want, _ := upstreamRequest(t, rm)

	var gotMD metadata.MD
	lis := newListener(t)
	r := &capturingReceiver{}
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		gotMD, _ = metadata.FromIncomingContext(ctx)
		return h(ctx, req)
	}))
	collectormetrics.RegisterMetricsServiceServer(srv, r)
	var wire atomic.Int64
	go func() { _ = srv.Serve(countingListener{lis, &wire}) }()
	t.Cleanup(srv.Stop)

	exp, err := newEncodingExporter(context.Background(), otlpmetricgrpc.WithEndpoint(lis.Addr().String()), otlpmetricgrpc.WithInsecure(),
		otlpmetricgrpc.WithCompressor("gzip"), otlpmetricgrpc.WithHeaders(map[string]string{"authorization": "Bearer x"}))
	if err != nil {
		t.Fatal(err)
	}
	defer exp.Shutdown(context.Background())
	for round := range 3 {
		err := exp.Export(context.Background(), rm)
		if err == nil || !strings.Contains(err.Error(), "sum.invalid") {
			t.Errorf("round %d: error %v, want the invalid metrics named", round, err)
		}
		if got := r.take(t); !proto.Equal(want, got) {
			t.Fatalf("round %d: the request differs from the OTLP exporter's\nupstream:\n%s\nours:\n%s", round, prototext.Format(want), prototext.Format(got))
		}
	}
	if v := gotMD.Get("authorization"); len(v) != 1 || v[0] != "Bearer x" {
		t.Errorf("authorization header %q", v)
	}
	if v := gotMD.Get("content-type"); len(v) != 1 || v[0] != "application/grpc" {
		t.Errorf("content-type %q, want the exporter's application/grpc", v)
	}
	if size := proto.Size(want); wire.Load() > int64(3*size/2) {
		t.Errorf("%d bytes on the wire for three requests of %d bytes: not compressed", wire.Load(), size)
	}
}

// TestProviderExportsOverGRPC: the provider's OTLP gRPC export (the
// binary's default) delivers the instruments' points with the resource.
func TestProviderExportsOverGRPC(t *testing.T) {
	r, addr := startReceiver(t)
	p, err := NewProvider(context.Background(), ProviderOptions{InstanceID: "inst-1", Getenv: testutil.Env(
		"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://"+addr, "OTEL_TRACES_EXPORTER", "none", "OTEL_LOGS_EXPORTER", "none")})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	c, _ := p.Meter.Int64Counter("workerscope.test.things")
	c.Add(context.Background(), 3)
	if err := p.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := p.ExportErrors(); n != 0 {
		t.Fatalf("%d export errors", n)
	}
	req := r.take(t)
	var things int64 = -1
	var instance string
	for _, rm := range req.ResourceMetrics {
		for _, kv := range rm.GetResource().GetAttributes() {
			if kv.Key == "service.instance.id" {
				instance = kv.GetValue().GetStringValue()
			}
		}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if m.Name == "workerscope.test.things" {
					things = m.GetSum().GetDataPoints()[0].GetAsInt()
				}
			}
		}
	}
	if things != 3 || instance != "inst-1" {
		t.Fatalf("things = %d, service.instance.id %q; request:\n%s", things, instance, prototext.Format(req))
	}
}

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
