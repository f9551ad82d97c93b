package otelsetup

import (
	"errors"
	"fmt"
	"math"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/protobuf/encoding/protowire"
)

// otlpEncoder writes metricdata as the protobuf bytes of an OTLP
// ExportMetricsServiceRequest (opentelemetry/proto/collector/metrics/v1),
// the same message the OTLP exporters build as protobuf structs and then
// marshal: the same fields, the same presence rules (proto3 zero values
// left out, oneofs and optional fields written when set), the same
// handling of invalid metrics (left out, reported in the error). It writes
// straight from metricdata into one reused buffer and keeps each
// attribute set's encoding from one export to the next, so an export
// allocates almost nothing: the exporters' transform allocates three
// structs per attribute per data point and marshals them by reflection,
// two thirds of the export's CPU at 1,000 workers.
//
// It is not safe for concurrent use.
type otlpEncoder struct {
	b []byte
	// attrs caches the encoded attributes of each set (with the field
	// number they were written under), by the set's Distinct, the key the
	// SDK's aggregators use too. An entry not used by an export is dropped
	// after it, so the cache holds the live series' sets only.
	attrs map[attrKey]*attrEnc
	gen   uint64
	errs  []error
}

type attrKey struct {
	set   attribute.Distinct
	field protowire.Number
}

type attrEnc struct {
	b   []byte
	gen uint64
}

func newOTLPEncoder() *otlpEncoder {
	return &otlpEncoder{attrs: make(map[attrKey]*attrEnc)}
}

// Field numbers of the OTLP protobuf messages written here.
const (
	fRequestResourceMetrics = 1 // ExportMetricsServiceRequest.resource_metrics

	fRMResource     = 1 // ResourceMetrics
	fRMScopeMetrics = 2
	fRMSchemaURL    = 3

	fResourceAttributes = 1 // Resource

	fSMScope     = 1 // ScopeMetrics
	fSMMetrics   = 2
	fSMSchemaURL = 3

	fScopeName       = 1 // InstrumentationScope
	fScopeVersion    = 2
	fScopeAttributes = 3

	fMetricName        = 1 // Metric
	fMetricDescription = 2
	fMetricUnit        = 3
	fMetricGauge       = 5
	fMetricSum         = 7
	fMetricHistogram   = 9
	fMetricExpHist     = 10
	fMetricSummary     = 11

	fDataPoints  = 1 // Gauge, Sum, Histogram, ExponentialHistogram, Summary
	fTemporality = 2 // Sum, Histogram, ExponentialHistogram
	fMonotonic   = 3 // Sum

	fNumAttributes = 7 // NumberDataPoint
	fStart         = 2 // every data point
	fTime          = 3
	fNumAsDouble   = 4
	fNumExemplars  = 5
	fNumAsInt      = 6

	fHistCount       = 4 // HistogramDataPoint
	fHistSum         = 5
	fHistBuckets     = 6
	fHistBounds      = 7
	fHistExemplars   = 8
	fHistAttributes  = 9
	fHistMin         = 11
	fHistMax         = 12
	fExpAttributes   = 1 // ExponentialHistogramDataPoint
	fExpCount        = 4
	fExpSum          = 5
	fExpScale        = 6
	fExpZeroCount    = 7
	fExpPositive     = 8
	fExpNegative     = 9
	fExpExemplars    = 11
	fExpMin          = 12
	fExpMax          = 13
	fExpZeroThresh   = 14
	fBucketsOffset   = 1 // ExponentialHistogramDataPoint.Buckets
	fBucketsCounts   = 2
	fSumAttributes   = 7 // SummaryDataPoint
	fSumCount        = 4
	fSumSum          = 5
	fSumQuantiles    = 6
	fQuantile        = 1 // SummaryDataPoint.ValueAtQuantile
	fQuantileValue   = 2
	fExTime          = 2 // Exemplar
	fExAsDouble      = 3
	fExSpanID        = 4
	fExTraceID       = 5
	fExAsInt         = 6
	fExFilteredAttrs = 7

	fKVKey   = 1 // KeyValue
	fKVValue = 2

	fAnyString = 1 // AnyValue
	fAnyBool   = 2
	fAnyInt    = 3
	fAnyDouble = 4
	fAnyArray  = 5
	fAnyKVList = 6
	fAnyBytes  = 7

	fListValues = 1 // ArrayValue, KeyValueList
)

// OTLP's AggregationTemporality.
const (
	otlpDelta      = 1
	otlpCumulative = 2
)

var (
	errUnknownAggregation = errors.New("unknown aggregation")
	errUnknownTemporality = errors.New("unknown temporality")
)

// encode returns rm as an ExportMetricsServiceRequest. The bytes are the
// encoder's, valid until the next call. Metrics that cannot be encoded
// (an unknown aggregation or temporality) are left out and named in the
// error; the rest is encoded all the same.
func (e *otlpEncoder) encode(rm *metricdata.ResourceMetrics) ([]byte, error) {
	e.b, e.errs = e.b[:0], e.errs[:0]
	e.gen++
	rms := e.begin(fRequestResourceMetrics)
	res := e.begin(fRMResource)
	e.attrSet(fResourceAttributes, rm.Resource.Set(), false)
	e.end(res)
	for i := range rm.ScopeMetrics {
		e.scopeMetrics(&rm.ScopeMetrics[i])
	}
	e.string(fRMSchemaURL, rm.Resource.SchemaURL())
	e.end(rms)
	for k, a := range e.attrs {
		if a.gen != e.gen {
			delete(e.attrs, k)
		}
	}
	return e.b, errors.Join(e.errs...)
}

func (e *otlpEncoder) scopeMetrics(sm *metricdata.ScopeMetrics) {
	s := e.begin(fRMScopeMetrics)
	scope := e.begin(fSMScope)
	e.string(fScopeName, sm.Scope.Name)
	e.string(fScopeVersion, sm.Scope.Version)
	e.attrSet(fScopeAttributes, &sm.Scope.Attributes, false)
	e.end(scope)
	for i := range sm.Metrics {
		e.metric(&sm.Metrics[i])
	}
	e.string(fSMSchemaURL, sm.Scope.SchemaURL)
	e.end(s)
}

func (e *otlpEncoder) metric(m *metricdata.Metrics) {
	mark := len(e.b)
	start := e.begin(fSMMetrics)
	e.string(fMetricName, m.Name)
	e.string(fMetricDescription, m.Description)
	e.string(fMetricUnit, m.Unit)
	var err error
	switch d := m.Data.(type) {
	case metricdata.Gauge[int64]:
		gauge(e, d)
	case metricdata.Gauge[float64]:
		gauge(e, d)
	case metricdata.Sum[int64]:
		err = sum(e, d)
	case metricdata.Sum[float64]:
		err = sum(e, d)
	case metricdata.Histogram[int64]:
		err = histogram(e, d)
	case metricdata.Histogram[float64]:
		err = histogram(e, d)
	case metricdata.ExponentialHistogram[int64]:
		err = expHistogram(e, d)
	case metricdata.ExponentialHistogram[float64]:
		err = expHistogram(e, d)
	case metricdata.Summary:
		e.summary(d)
	default:
		err = fmt.Errorf("%w: %T", errUnknownAggregation, d)
	}
	if err != nil {
		// Left out, as the OTLP exporters leave out a metric they cannot
		// transform.
		e.b = e.b[:mark]
		e.errs = append(e.errs, fmt.Errorf("invalid metric (name: %q, description: %q, unit: %q): %w", m.Name, m.Description, m.Unit, err))
		return
	}
	e.end(start)
}

func temporality(t metricdata.Temporality) (uint64, error) {
	switch t {
	case metricdata.DeltaTemporality:
		return otlpDelta, nil
	case metricdata.CumulativeTemporality:
		return otlpCumulative, nil
	}
	return 0, fmt.Errorf("%w: %s", errUnknownTemporality, t)
}

func gauge[N int64 | float64](e *otlpEncoder, g metricdata.Gauge[N]) {
	s := e.begin(fMetricGauge)
	numberPoints(e, g.DataPoints)
	e.end(s)
}

func sum[N int64 | float64](e *otlpEncoder, s metricdata.Sum[N]) error {
	t, err := temporality(s.Temporality)
	if err != nil {
		return err
	}
	start := e.begin(fMetricSum)
	numberPoints(e, s.DataPoints)
	e.varint(fTemporality, t)
	e.bool(fMonotonic, s.IsMonotonic)
	e.end(start)
	return nil
}

func numberPoints[N int64 | float64](e *otlpEncoder, pts []metricdata.DataPoint[N]) {
	for i := range pts {
		p := &pts[i]
		s := e.begin(fDataPoints)
		e.attrSet(fNumAttributes, &p.Attributes, true)
		e.fixed64(fStart, timeUnixNano(p.StartTime))
		e.fixed64(fTime, timeUnixNano(p.Time))
		number(e, fNumAsInt, fNumAsDouble, p.Value)
		exemplars(e, fNumExemplars, p.Exemplars)
		e.end(s)
	}
}

// number writes v as a oneof member (written even when zero): asInt for an
// int64, asDouble for a float64.
func number[N int64 | float64](e *otlpEncoder, asInt, asDouble protowire.Number, v N) {
	switch v := any(v).(type) {
	case int64:
		e.b = protowire.AppendTag(e.b, asInt, protowire.Fixed64Type)
		e.b = protowire.AppendFixed64(e.b, uint64(v))
	case float64:
		e.b = protowire.AppendTag(e.b, asDouble, protowire.Fixed64Type)
		e.b = protowire.AppendFixed64(e.b, math.Float64bits(v))
	}
}

func histogram[N int64 | float64](e *otlpEncoder, h metricdata.Histogram[N]) error {
	t, err := temporality(h.Temporality)
	if err != nil {
		return err
	}
	start := e.begin(fMetricHistogram)
	for i := range h.DataPoints {
		p := &h.DataPoints[i]
		s := e.begin(fDataPoints)
		e.fixed64(fStart, timeUnixNano(p.StartTime))
		e.fixed64(fTime, timeUnixNano(p.Time))
		e.fixed64(fHistCount, p.Count)
		e.double(fHistSum, float64(p.Sum))
		if len(p.BucketCounts) > 0 {
			b := e.begin(fHistBuckets)
			for _, c := range p.BucketCounts {
				e.b = protowire.AppendFixed64(e.b, c)
			}
			e.end(b)
		}
		if len(p.Bounds) > 0 {
			b := e.begin(fHistBounds)
			for _, v := range p.Bounds {
				e.b = protowire.AppendFixed64(e.b, math.Float64bits(v))
			}
			e.end(b)
		}
		exemplars(e, fHistExemplars, p.Exemplars)
		e.attrSet(fHistAttributes, &p.Attributes, true)
		if v, ok := p.Min.Value(); ok {
			e.double(fHistMin, float64(v))
		}
		if v, ok := p.Max.Value(); ok {
			e.double(fHistMax, float64(v))
		}
		e.end(s)
	}
	e.varint(fTemporality, t)
	e.end(start)
	return nil
}

func expHistogram[N int64 | float64](e *otlpEncoder, h metricdata.ExponentialHistogram[N]) error {
	t, err := temporality(h.Temporality)
	if err != nil {
		return err
	}
	start := e.begin(fMetricExpHist)
	for i := range h.DataPoints {
		p := &h.DataPoints[i]
		s := e.begin(fDataPoints)
		e.attrSet(fExpAttributes, &p.Attributes, true)
		e.fixed64(fStart, timeUnixNano(p.StartTime))
		e.fixed64(fTime, timeUnixNano(p.Time))
		e.fixed64(fExpCount, p.Count)
		e.double(fExpSum, float64(p.Sum))
		if p.Scale != 0 {
			e.b = protowire.AppendTag(e.b, fExpScale, protowire.VarintType)
			e.b = protowire.AppendVarint(e.b, protowire.EncodeZigZag(int64(p.Scale)))
		}
		e.fixed64(fExpZeroCount, p.ZeroCount)
		e.buckets(fExpPositive, p.PositiveBucket)
		e.buckets(fExpNegative, p.NegativeBucket)
		exemplars(e, fExpExemplars, p.Exemplars)
		if v, ok := p.Min.Value(); ok {
			e.double(fExpMin, float64(v))
		}
		if v, ok := p.Max.Value(); ok {
			e.double(fExpMax, float64(v))
		}
		if math.Float64bits(p.ZeroThreshold) != 0 {
			e.double(fExpZeroThresh, p.ZeroThreshold)
		}
		e.end(s)
	}
	e.varint(fTemporality, t)
	e.end(start)
	return nil
}

// buckets writes an exponential histogram's bucket message (always, as
// the exporters set it even when empty).
func (e *otlpEncoder) buckets(field protowire.Number, b metricdata.ExponentialBucket) {
	s := e.begin(field)
	if b.Offset != 0 {
		e.b = protowire.AppendTag(e.b, fBucketsOffset, protowire.VarintType)
		e.b = protowire.AppendVarint(e.b, protowire.EncodeZigZag(int64(b.Offset)))
	}
	if len(b.Counts) > 0 {
		c := e.begin(fBucketsCounts)
		for _, n := range b.Counts {
			e.b = protowire.AppendVarint(e.b, n)
		}
		e.end(c)
	}
	e.end(s)
}

func (e *otlpEncoder) summary(sm metricdata.Summary) {
	start := e.begin(fMetricSummary)
	for i := range sm.DataPoints {
		p := &sm.DataPoints[i]
		s := e.begin(fDataPoints)
		e.fixed64(fStart, timeUnixNano(p.StartTime))
		e.fixed64(fTime, timeUnixNano(p.Time))
		e.fixed64(fSumCount, p.Count)
		if math.Float64bits(p.Sum) != 0 {
			e.double(fSumSum, p.Sum)
		}
		for _, q := range p.QuantileValues {
			qs := e.begin(fSumQuantiles)
			if math.Float64bits(q.Quantile) != 0 {
				e.double(fQuantile, q.Quantile)
			}
			if math.Float64bits(q.Value) != 0 {
				e.double(fQuantileValue, q.Value)
			}
			e.end(qs)
		}
		e.attrSet(fSumAttributes, &p.Attributes, true)
		e.end(s)
	}
	e.end(start)
}

func exemplars[N int64 | float64](e *otlpEncoder, field protowire.Number, exs []metricdata.Exemplar[N]) {
	for i := range exs {
		x := &exs[i]
		s := e.begin(field)
		e.fixed64(fExTime, timeUnixNano(x.Time))
		number(e, fExAsInt, fExAsDouble, x.Value)
		e.bytes(fExSpanID, x.SpanID)
		e.bytes(fExTraceID, x.TraceID)
		for _, kv := range x.FilteredAttributes {
			e.keyValue(fExFilteredAttrs, kv)
		}
		e.end(s)
	}
}

// attrSet writes set's attributes as repeated KeyValue under field. With
// cache, the encoding is kept for the next export.
func (e *otlpEncoder) attrSet(field protowire.Number, set *attribute.Set, cache bool) {
	if set.Len() == 0 {
		return
	}
	if !cache {
		for iter := set.Iter(); iter.Next(); {
			e.keyValue(field, iter.Attribute())
		}
		return
	}
	k := attrKey{set.Equivalent(), field}
	a := e.attrs[k]
	if a == nil {
		mark := len(e.b)
		for iter := set.Iter(); iter.Next(); {
			e.keyValue(field, iter.Attribute())
		}
		a = &attrEnc{b: append([]byte(nil), e.b[mark:]...)}
		e.attrs[k] = a
	} else {
		e.b = append(e.b, a.b...)
	}
	a.gen = e.gen
}

func (e *otlpEncoder) keyValue(field protowire.Number, kv attribute.KeyValue) {
	s := e.begin(field)
	e.string(fKVKey, string(kv.Key))
	v := e.begin(fKVValue)
	e.anyValue(kv.Value)
	e.end(v)
	e.end(s)
}

// anyValue writes the fields of an AnyValue for v, as the exporters
// convert attribute values (an EMPTY value has none, an unknown type
// becomes the string "INVALID").
func (e *otlpEncoder) anyValue(v attribute.Value) {
	switch v.Type() {
	case attribute.BOOL:
		e.b = protowire.AppendTag(e.b, fAnyBool, protowire.VarintType)
		e.b = protowire.AppendVarint(e.b, protowire.EncodeBool(v.AsBool()))
	case attribute.INT64:
		e.b = protowire.AppendTag(e.b, fAnyInt, protowire.VarintType)
		e.b = protowire.AppendVarint(e.b, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		e.b = protowire.AppendTag(e.b, fAnyDouble, protowire.Fixed64Type)
		e.b = protowire.AppendFixed64(e.b, math.Float64bits(v.AsFloat64()))
	case attribute.STRING:
		e.b = protowire.AppendTag(e.b, fAnyString, protowire.BytesType)
		e.b = protowire.AppendString(e.b, v.AsString())
	case attribute.BYTESLICE:
		e.b = protowire.AppendTag(e.b, fAnyBytes, protowire.BytesType)
		e.b = protowire.AppendBytes(e.b, v.AsByteSlice())
	case attribute.BOOLSLICE:
		e.array(len(v.AsBoolSlice()), func(i int) attribute.Value { return attribute.BoolValue(v.AsBoolSlice()[i]) })
	case attribute.INT64SLICE:
		e.array(len(v.AsInt64Slice()), func(i int) attribute.Value { return attribute.Int64Value(v.AsInt64Slice()[i]) })
	case attribute.FLOAT64SLICE:
		e.array(len(v.AsFloat64Slice()), func(i int) attribute.Value { return attribute.Float64Value(v.AsFloat64Slice()[i]) })
	case attribute.STRINGSLICE:
		e.array(len(v.AsStringSlice()), func(i int) attribute.Value { return attribute.StringValue(v.AsStringSlice()[i]) })
	case attribute.SLICE:
		vals := v.AsSlice()
		e.array(len(vals), func(i int) attribute.Value { return vals[i] })
	case attribute.MAP:
		s := e.begin(fAnyKVList)
		for _, kv := range v.AsMap() {
			e.keyValue(fListValues, kv)
		}
		e.end(s)
	case attribute.EMPTY:
	default:
		e.b = protowire.AppendTag(e.b, fAnyString, protowire.BytesType)
		e.b = protowire.AppendString(e.b, "INVALID")
	}
}

// array writes an ArrayValue of n values (the message is written even
// when empty, as the exporters set it).
func (e *otlpEncoder) array(n int, at func(int) attribute.Value) {
	s := e.begin(fAnyArray)
	for i := range n {
		v := e.begin(fListValues)
		e.anyValue(at(i))
		e.end(v)
	}
	e.end(s)
}

// begin starts a length-delimited field: its tag and a one-byte
// placeholder for the length, which end fills in. It returns where the
// field's content starts.
func (e *otlpEncoder) begin(field protowire.Number) int {
	e.b = protowire.AppendTag(e.b, field, protowire.BytesType)
	e.b = append(e.b, 0)
	return len(e.b)
}

// end writes the length of the field begun at start, moving its content
// when the length takes more than the one byte reserved.
func (e *otlpEncoder) end(start int) {
	n := len(e.b) - start
	if n < 0x80 {
		e.b[start-1] = byte(n)
		return
	}
	k := protowire.SizeVarint(uint64(n))
	var room [9]byte
	e.b = append(e.b, room[:k-1]...)
	copy(e.b[start+k-1:], e.b[start:start+n])
	protowire.AppendVarint(e.b[:start-1], uint64(n))
}

// proto3 scalars: a zero value is left out.

func (e *otlpEncoder) string(field protowire.Number, s string) {
	if s == "" {
		return
	}
	e.b = protowire.AppendTag(e.b, field, protowire.BytesType)
	e.b = protowire.AppendString(e.b, s)
}

func (e *otlpEncoder) bytes(field protowire.Number, b []byte) {
	if len(b) == 0 {
		return
	}
	e.b = protowire.AppendTag(e.b, field, protowire.BytesType)
	e.b = protowire.AppendBytes(e.b, b)
}

func (e *otlpEncoder) fixed64(field protowire.Number, v uint64) {
	if v == 0 {
		return
	}
	e.b = protowire.AppendTag(e.b, field, protowire.Fixed64Type)
	e.b = protowire.AppendFixed64(e.b, v)
}

func (e *otlpEncoder) varint(field protowire.Number, v uint64) {
	if v == 0 {
		return
	}
	e.b = protowire.AppendTag(e.b, field, protowire.VarintType)
	e.b = protowire.AppendVarint(e.b, v)
}

func (e *otlpEncoder) bool(field protowire.Number, v bool) {
	if v {
		e.varint(field, 1)
	}
}

// double writes an optional double (presence: written even when zero).
func (e *otlpEncoder) double(field protowire.Number, v float64) {
	e.b = protowire.AppendTag(e.b, field, protowire.Fixed64Type)
	e.b = protowire.AppendFixed64(e.b, math.Float64bits(v))
}

// timeUnixNano is t in nanoseconds since the Unix epoch, 0 for the zero
// time (and any time before 1970), as the exporters write it.
func timeUnixNano(t time.Time) uint64 {
	return uint64(max(0, t.UnixNano())) //nolint:gosec // not negative
}
