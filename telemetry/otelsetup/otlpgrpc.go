package otelsetup

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// maxRequestSize is the OTLP gRPC exporter's default bound on one
// request's size (it refuses bigger ones).
const maxRequestSize = 64 << 20

// encodingExporter is the OTLP/gRPC metric exporter with the request
// encoded by an otlpEncoder instead of the exporter's own transform and
// marshalling (two thirds of an export's CPU at 1,000 workers). The
// exporter still does everything else: connection, TLS, headers, timeout,
// retries, compression, partial success. It is handed a ResourceMetrics
// with nothing in it, and the request bytes travel beside it, in the
// context, to the exporter's connection, whose interceptor
// (sendEncoded) sends them in place of the empty request.
type encodingExporter struct {
	*otlpmetricgrpc.Exporter
	mu  sync.Mutex // one export at a time: the encoder's buffer is reused
	enc *otlpEncoder
	// empty is what the exporter is given to export: its transform of it
	// is a request with an empty resource, which sendEncoded replaces.
	empty metricdata.ResourceMetrics
}

// newEncodingExporter builds the OTLP/gRPC exporter with opts and the
// interceptor that sends the encoded requests.
func newEncodingExporter(ctx context.Context, opts ...otlpmetricgrpc.Option) (*encodingExporter, error) {
	exp, err := otlpmetricgrpc.New(ctx, append(opts, otlpmetricgrpc.WithDialOption(grpc.WithChainUnaryInterceptor(sendEncoded)))...)
	if err != nil {
		return nil, err
	}
	return &encodingExporter{Exporter: exp, enc: newOTLPEncoder()}, nil
}

// Export encodes rm and sends it through the exporter. Metrics that
// cannot be encoded are left out and reported, the rest is sent, as the
// exporter itself does.
func (e *encodingExporter) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	req, encErr := e.enc.encode(rm)
	if len(req) > maxRequestSize {
		return fmt.Errorf("otelsetup: OTLP request of %d bytes exceeds %d bytes", len(req), maxRequestSize)
	}
	err := e.Exporter.Export(context.WithValue(ctx, encodedKey{}, encodedRequest(req)), &e.empty)
	if encErr != nil {
		return fmt.Errorf("otelsetup: OTLP export of incomplete metrics: %w", errors.Join(encErr, err))
	}
	return err
}

// encodedRequest is an encoded ExportMetricsServiceRequest.
type encodedRequest []byte

type encodedKey struct{}

// exportMethod is the OTLP metrics service's one method.
const exportMethod = collectormetrics.MetricsService_Export_FullMethodName

// sendEncoded sends the encoded request found in the call's context (put
// there by encodingExporter.Export) instead of the request the exporter
// built; calls without one go through untouched.
func sendEncoded(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if b, ok := ctx.Value(encodedKey{}).(encodedRequest); ok && method == exportMethod {
		return invoker(ctx, method, b, reply, cc, append(opts, grpc.ForceCodecV2(encodedCodec{}))...)
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// encodedCodec marshals an encodedRequest as the bytes it is, anything
// else (the response) as gRPC's protobuf codec does.
type encodedCodec struct{}

func (encodedCodec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.(encodedRequest); ok {
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return protoCodec().Marshal(v)
}

func (encodedCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return protoCodec().Unmarshal(data, v)
}

// Name is empty: a forced codec's name becomes the request's content
// subtype, and with none the request goes as application/grpc, exactly as
// the exporter's own (the receiver decodes it with its default, protobuf).
func (encodedCodec) Name() string { return "" }

func protoCodec() encoding.CodecV2 { return encoding.GetCodecV2(grpcproto.Name) }

var _ sdkmetric.Exporter = (*encodingExporter)(nil)
